"""A vector field added to an existing collection (AddVectorField), back-filled with vectors
added to the stored points (UpsertRequest.mode ADD_VECTORS), against a real retriever process:
coverage is reported, never silent; the field and its vectors survive a restart (snapshot and
log); bad requests get clear statuses."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from facesearch_contract.v1 import retriever_pb2 as pb
from harness.service_process import start_service
from tests.retriever.conftest import MODEL, Client, code_of, point, retriever_env, unit

ATTR_MODEL = "attr-test-v1"
ATTR_DIM = 6


def attr_field(dim: int = ATTR_DIM, model: str = ATTR_MODEL) -> pb.VectorFieldSpec:
    return pb.VectorFieldSpec(
        name="attributes",
        dimension=dim,
        model_id=model,
        index=pb.IndexParams(kind=pb.INDEX_KIND_FLAT),
    )


def add_field(c: Client, collection: str, spec: pb.VectorFieldSpec) -> pb.AddVectorFieldResponse:
    return c.AddVectorField(pb.AddVectorFieldRequest(collection=collection, field=spec))


def additions(vectors: dict[str, np.ndarray], field: str = "attributes") -> list[pb.Point]:
    out = []
    for pid, v in vectors.items():
        p = pb.Point(id=pid)
        p.vectors[field].values.extend(np.asarray(v, np.float32).tolist())
        p.model_ids[field] = ATTR_MODEL
        out.append(p)
    return out


def add_vectors(c: Client, collection: str, points: list[pb.Point]) -> pb.UpsertResponse:
    return c.Upsert(
        pb.UpsertRequest(collection=collection, points=points, mode=pb.UPSERT_MODE_ADD_VECTORS)
    )


def stats(c: Client, collection: str) -> dict[str, pb.VectorFieldStats]:
    info = c.DescribeCollection(pb.DescribeCollectionRequest(collection=collection)).collection
    return {s.name: s for s in info.field_stats}


def attr_search(c: Client, collection: str, q: np.ndarray, k: int = 10) -> pb.SearchResponse:
    req = pb.SearchRequest(collection=collection)
    term = req.queries.add(k=k).terms.add(field="attributes", model_id=ATTR_MODEL)
    term.vector.values.extend(q.tolist())
    return c.Search(req)


def test_added_field_is_filled_by_add_vectors_and_partial_coverage_is_reported(
    alpha: Client, rng: np.random.Generator
) -> None:
    faces = unit(rng, 10)
    alpha.create("avf-basic", shards=2)
    alpha.upsert("avf-basic", [point(f"p{i}", faces[i], media_id=f"m{i}.jpg") for i in range(10)])

    reply = add_field(alpha, "avf-basic", attr_field())
    assert reply.added
    assert [f.name for f in reply.collection.vector_fields] == ["face", "attributes"]
    s = stats(alpha, "avf-basic")["attributes"]
    assert (s.vectors, s.points_without) == (0, 10)
    assert stats(alpha, "avf-basic")["face"].points_without == 0

    # Nothing stored in it yet: a term on it is refused, saying what to do.
    with pytest.raises(grpc.RpcError) as err:
        attr_search(alpha, "avf-basic", np.ones(ATTR_DIM, np.float32))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    assert "facesearch backfill" in err.value.details()  # type: ignore[attr-defined]

    attrs = unit(rng, 6, ATTR_DIM)
    sent = additions({f"p{i}": attrs[i] for i in range(6)} | {"ghost": attrs[0]})
    done = add_vectors(alpha, "avf-basic", sent)
    assert (done.upserted, done.replaced, done.skipped) == (6, 0, 1)  # "ghost" is not created
    s = stats(alpha, "avf-basic")["attributes"]
    assert (s.vectors, s.points_without) == (6, 4)
    assert not alpha.Get(pb.GetRequest(collection="avf-basic", ids=["ghost"])).points

    # A search on the partly filled field says how much it covers; a face search does not.
    found = attr_search(alpha, "avf-basic", attrs[2])
    assert list(found.partial_fields) == [
        pb.FieldCoverage(field="attributes", points=10, points_without=4)
    ]
    assert found.results[0].hits[0].id == "p2"
    assert {h.id for h in found.results[0].hits} <= {f"p{i}" for i in range(6)}
    plain = alpha.search("avf-basic", faces[7], k=3)
    assert plain.results[0].hits[0].id == "p7" and not plain.partial_fields

    # The rest of each point is as it was: its face vector and its metadata.
    (got,) = alpha.Get(pb.GetRequest(collection="avf-basic", ids=["p3"], with_vectors=True)).points
    np.testing.assert_allclose(got.vectors["face"].values, faces[3], rtol=1e-6)
    np.testing.assert_allclose(got.vectors["attributes"].values, attrs[3], rtol=1e-6)
    assert got.metadata["media_id"].string_value == "m3.jpg"

    # A vector of a field the point has already is kept, not replaced: skipped.
    again = add_vectors(alpha, "avf-basic", additions({"p3": attrs[5]}))
    assert (again.upserted, again.skipped) == (0, 1)
    (kept,) = alpha.Get(pb.GetRequest(collection="avf-basic", ids=["p3"], with_vectors=True)).points
    np.testing.assert_allclose(kept.vectors["attributes"].values, attrs[3], rtol=1e-6)


def test_a_deleted_point_is_not_brought_back_by_a_late_back_fill(
    alpha: Client, rng: np.random.Generator
) -> None:
    faces = unit(rng, 3)
    alpha.create("avf-forget")
    alpha.upsert("avf-forget", [point(f"p{i}", faces[i], person_id="x") for i in range(3)])
    add_field(alpha, "avf-forget", attr_field())
    alpha.Delete(pb.DeleteRequest(collection="avf-forget", person_id="x"))
    done = add_vectors(alpha, "avf-forget", additions({"p0": unit(rng, 1, ATTR_DIM)[0]}))
    assert (done.upserted, done.skipped) == (0, 1)
    info = alpha.DescribeCollection(pb.DescribeCollectionRequest(collection="avf-forget"))
    assert info.collection.points == 0


def test_add_vector_field_statuses(alpha: Client, beta: Client) -> None:
    alpha.create("avf-errors")
    assert add_field(alpha, "avf-errors", attr_field()).added
    # The same field again: a retry, not an error.
    assert not add_field(alpha, "avf-errors", attr_field()).added

    def status(c: Client, collection: str, spec: pb.VectorFieldSpec) -> tuple[object, str]:
        with pytest.raises(grpc.RpcError) as err:
            add_field(c, collection, spec)
        return err.value.code(), err.value.details()  # type: ignore[attr-defined]

    code, why = status(alpha, "avf-errors", attr_field(dim=ATTR_DIM + 1))
    assert code == grpc.StatusCode.ALREADY_EXISTS and "attributes" in why, why
    code, why = status(alpha, "avf-errors", attr_field(model="other-model"))
    assert code == grpc.StatusCode.ALREADY_EXISTS, why
    for dim in (0, 5000):
        code, why = status(
            alpha, "avf-errors", pb.VectorFieldSpec(name="x", dimension=dim, model_id="m")
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "field.dimension" in why, why
    code, why = status(
        alpha, "avf-errors", pb.VectorFieldSpec(name="Bad-Name", dimension=4, model_id="m")
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "field.name" in why, why
    code, why = status(alpha, "avf-errors", pb.VectorFieldSpec(name="nomodel", dimension=4))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "model_id" in why, why
    code, why = status(alpha, "no-such-collection", attr_field())
    assert code == grpc.StatusCode.NOT_FOUND, why
    # Another tenant's collection is simply not there.
    code, why = status(beta, "avf-errors", attr_field())
    assert code == grpc.StatusCode.NOT_FOUND, why
    assert (
        code_of(lambda: alpha.AddVectorField(pb.AddVectorFieldRequest(collection="avf-errors")))
        == grpc.StatusCode.INVALID_ARGUMENT
    )

    # At most 32 vector fields per collection.
    for i in range(30):
        add_field(alpha, "avf-errors", pb.VectorFieldSpec(name=f"f{i}", dimension=2, model_id="m"))
    code, why = status(
        alpha, "avf-errors", pb.VectorFieldSpec(name="one_more", dimension=2, model_id="m")
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "32" in why, why


def test_add_vectors_statuses(alpha: Client, rng: np.random.Generator) -> None:
    alpha.create("avf-add-errors")
    alpha.upsert("avf-add-errors", [point("p0", unit(rng, 1)[0])])
    add_field(alpha, "avf-add-errors", attr_field())
    good = additions({"p0": unit(rng, 1, ATTR_DIM)[0]})[0]

    def status(p: pb.Point, mode: int = pb.UPSERT_MODE_ADD_VECTORS) -> tuple[object, str]:
        req = pb.UpsertRequest(collection="avf-add-errors", points=[p], mode=mode)  # type: ignore[arg-type]
        with pytest.raises(grpc.RpcError) as err:
            alpha.Upsert(req)
        return err.value.code(), err.value.details()  # type: ignore[attr-defined]

    with_meta = pb.Point()
    with_meta.CopyFrom(good)
    with_meta.metadata["source"].string_value = "x"
    code, why = status(with_meta)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "points[0].metadata" in why, why
    short = additions({"p0": np.ones(ATTR_DIM - 1)})[0]
    code, why = status(short)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "dimension" in why, why
    code, why = status(pb.Point(id="p0"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "points[0].vectors" in why, why
    wrong_model = pb.Point()
    wrong_model.CopyFrom(good)
    wrong_model.model_ids["attributes"] = "other"
    code, why = status(wrong_model)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "model" in why, why
    code, why = status(good, mode=7)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "mode" in why, why
    # Nothing of the refused batches was stored.
    assert stats(alpha, "avf-add-errors")["attributes"].vectors == 0


def test_an_added_field_keeps_the_built_face_index(alpha: Client, rng: np.random.Generator) -> None:
    """ADD_VECTORS keeps each point's label: the face field's built HNSW index has no tombstone
    and nothing to rebuild after a whole collection is back-filled."""
    n = 300
    faces = unit(rng, n)
    alpha.create(
        "avf-hnsw",
        index=pb.IndexParams(kind=pb.INDEX_KIND_HNSW, train_threshold=64),
    )
    alpha.upsert("avf-hnsw", [point(f"p{i}", faces[i]) for i in range(n)])
    deadline = time.monotonic() + 60
    while stats(alpha, "avf-hnsw")["face"].indexed_vectors < n:
        assert time.monotonic() < deadline, stats(alpha, "avf-hnsw")["face"]
        time.sleep(0.2)
    add_field(alpha, "avf-hnsw", attr_field())
    attrs = unit(rng, n, ATTR_DIM)
    done = add_vectors(alpha, "avf-hnsw", additions({f"p{i}": attrs[i] for i in range(n)}))
    assert done.upserted == n
    face = stats(alpha, "avf-hnsw")["face"]
    assert (face.build_state, face.tombstones, face.indexed_vectors) == (
        pb.BUILD_STATE_READY,
        0,
        n,
    )
    assert stats(alpha, "avf-hnsw")["attributes"].points_without == 0


def _describe(c: Client, name: str) -> pb.CollectionInfo:
    return c.DescribeCollection(pb.DescribeCollectionRequest(collection=name)).collection


def test_the_field_and_its_vectors_survive_restarts(tmp_path: Path) -> None:
    """The field is in the collection's catalog file; vectors added before a snapshot come back
    from it, those after it from the log, a kill -9 included."""
    env = retriever_env(tmp_path / "data")
    rng = np.random.default_rng(5)
    faces, attrs = unit(rng, 8), unit(rng, 8, ATTR_DIM)
    svc = start_service("retriever", env)
    try:
        c = Client(svc.channel(), None)
        c.create("kept", shards=2)
        c.upsert("kept", [point(f"p{i}", faces[i]) for i in range(8)])
        add_field(c, "kept", attr_field())
        add_vectors(c, "kept", additions({f"p{i}": attrs[i] for i in range(3)}))
        c.Snapshot(pb.SnapshotRequest(collection="kept", wait=True))
        add_vectors(c, "kept", additions({f"p{i}": attrs[i] for i in range(3, 6)}))
    finally:
        svc.signal(signal.SIGKILL)
        svc.wait()
        svc.stop()
    svc = start_service("retriever", env)
    try:
        c = Client(svc.channel(), None)
        info = _describe(c, "kept")
        assert [f.name for f in info.vector_fields] == ["face", "attributes"]
        s = {x.name: x for x in info.field_stats}["attributes"]
        assert (s.vectors, s.points_without) == (6, 2)
        got = c.Get(pb.GetRequest(collection="kept", ids=["p1", "p4", "p7"], with_vectors=True))
        by_id = {p.id: p for p in got.points}
        np.testing.assert_allclose(by_id["p1"].vectors["attributes"].values, attrs[1], rtol=1e-6)
        np.testing.assert_allclose(by_id["p4"].vectors["attributes"].values, attrs[4], rtol=1e-6)
        assert "attributes" not in by_id["p7"].vectors
        np.testing.assert_allclose(by_id["p7"].vectors["face"].values, faces[7], rtol=1e-6)
        assert attr_search(c, "kept", attrs[4]).results[0].hits[0].id == "p4"
        # It goes on after the restart: fill the rest.
        assert add_vectors(c, "kept", additions({"p6": attrs[6], "p7": attrs[7]})).upserted == 2
    finally:
        svc.stop()


def test_search_on_a_model_id_of_the_added_field_is_checked(
    alpha: Client, rng: np.random.Generator
) -> None:
    alpha.create("avf-model")
    alpha.upsert("avf-model", [point("p0", unit(rng, 1)[0])])
    add_field(alpha, "avf-model", attr_field())
    add_vectors(alpha, "avf-model", additions({"p0": unit(rng, 1, ATTR_DIM)[0]}))
    req = pb.SearchRequest(collection="avf-model")
    term = req.queries.add(k=1).terms.add(field="attributes", model_id=MODEL)
    term.vector.values.extend([0.1] * ATTR_DIM)
    assert code_of(lambda: alpha.Search(req)) == grpc.StatusCode.INVALID_ARGUMENT
