"""Collections, data RPCs, filters and bad input, through a real retriever process."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import numpy as np
import pytest

from facesearch.errors import field_violations
from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_contract.v1 import retriever_service_pb2_grpc as pb_grpc
from harness.service_process import start_service
from tests.retriever.conftest import (
    DIM,
    MODEL,
    Client,
    code_of,
    eq,
    point,
    retriever_env,
    unit,
)


def brute_force(x: np.ndarray, ids: list[str], q: np.ndarray, k: int) -> list[list[str]]:
    scores = q @ x.T
    return [[ids[j] for j in np.argsort(-row)[:k]] for row in scores]


def test_create_list_describe_drop(alpha: Client) -> None:
    info = alpha.create("lifecycle", shards=2, metadata_fields=[("camera", pb.FIELD_TYPE_INT)])
    assert info.shard_count == 2 and info.points == 0
    assert info.vector_fields[0].index.kind == pb.INDEX_KIND_FLAT
    assert {m.name: m.type for m in info.metadata_fields}["camera"] == pb.FIELD_TYPE_INT
    names = [c.name for c in alpha.ListCollections(pb.ListCollectionsRequest()).collections]
    assert "lifecycle" in names
    assert code_of(lambda: alpha.create("lifecycle")) == grpc.StatusCode.ALREADY_EXISTS
    alpha.DropCollection(pb.DropCollectionRequest(collection="lifecycle"))
    assert (
        code_of(
            lambda: alpha.DescribeCollection(pb.DescribeCollectionRequest(collection="lifecycle"))
        )
        == grpc.StatusCode.NOT_FOUND
    )


@pytest.mark.parametrize(
    "req, field",
    [
        (pb.CreateCollectionRequest(name="Bad Name"), "name"),
        (pb.CreateCollectionRequest(name="nofields"), "vector_fields"),
        (
            pb.CreateCollectionRequest(
                name="baddim",
                vector_fields=[pb.VectorFieldSpec(name="face", dimension=0, model_id=MODEL)],
            ),
            "vector_fields[0].dimension",
        ),
        (
            pb.CreateCollectionRequest(
                name="badpq",
                vector_fields=[
                    pb.VectorFieldSpec(
                        name="face",
                        dimension=10,
                        model_id=MODEL,
                        index=pb.IndexParams(kind=pb.INDEX_KIND_IVF_PQ, pq_m=3),
                    )
                ],
            ),
            "vector_fields[0].index.pq_m",
        ),
        *(
            (
                pb.CreateCollectionRequest(
                    name="badtarget",
                    vector_fields=[
                        pb.VectorFieldSpec(
                            name="face",
                            dimension=16,
                            model_id=MODEL,
                            index=pb.IndexParams(kind=pb.INDEX_KIND_HNSW, target_recall=t),
                        )
                    ],
                ),
                "vector_fields[0].index.target_recall",
            )
            for t in (1.5, -0.1, float("nan"))
        ),
    ],
)
def test_create_refuses_bad_specs(
    alpha: Client, req: pb.CreateCollectionRequest, field: str
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        alpha.CreateCollection(req)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(err.value)[0][0] == field


def test_search_matches_brute_force_over_shards(alpha: Client, rng: np.random.Generator) -> None:
    alpha.create("exact3", shards=3)
    x = unit(rng, 300)
    ids = [f"f{i}" for i in range(300)]
    for start in range(0, 300, 100):
        alpha.upsert("exact3", [point(ids[i], x[i]) for i in range(start, start + 100)])
    q = unit(rng, 8)
    assert alpha.ids("exact3", q, k=10) == brute_force(x, ids, q, 10)
    info = alpha.DescribeCollection(pb.DescribeCollectionRequest(collection="exact3")).collection
    assert info.points == 300
    assert len(info.shards) == 3 and sum(s.points for s in info.shards) == 300
    assert all(s.points > 50 for s in info.shards)  # ids are spread by hash
    hit = alpha.search("exact3", x[5], k=1).results[0].hits[0]
    assert hit.id == "f5" and hit.score == pytest.approx(1.0, abs=1e-5)


def test_l2_scores_are_negated_distances(alpha: Client, rng: np.random.Generator) -> None:
    alpha.create("l2", metric=pb.METRIC_L2)
    x = unit(rng, 20)
    alpha.upsert("l2", [point(f"v{i}", x[i]) for i in range(20)])
    hits = alpha.search("l2", x[3], k=3).results[0].hits
    assert hits[0].id == "v3" and hits[0].score == pytest.approx(0.0, abs=1e-5)
    d = ((x - x[3]) ** 2).sum(axis=1)
    assert hits[1].score == pytest.approx(-np.sort(d)[1], rel=1e-4)


def test_get_replace_and_metadata_round_trip(alpha: Client, rng: np.random.Generator) -> None:
    alpha.create("getter")
    x = unit(rng, 3)
    p = point("a", x[0], person_id="ann", tags=["x", "y"], quality=0.5, frame=7, enrolled=True)
    p.metadata["time"].time_value.seconds = 1_700_000_000
    r = alpha.upsert("getter", [p, point("b", x[1])])
    assert (r.upserted, r.replaced) == (2, 0)
    got = alpha.Get(pb.GetRequest(collection="getter", ids=["a", "missing"], with_vectors=True))
    assert [g.id for g in got.points] == ["a"]
    g = got.points[0]
    assert g.metadata["person_id"].string_value == "ann"
    assert list(g.metadata["tags"].string_list_value.values) == ["x", "y"]
    assert g.metadata["quality"].double_value == 0.5 and g.metadata["frame"].int_value == 7
    assert (
        g.metadata["enrolled"].bool_value and g.metadata["time"].time_value.seconds == 1_700_000_000
    )
    assert np.allclose(g.vectors["face"].values, x[0]) and g.model_ids["face"] == MODEL
    plain = alpha.Get(pb.GetRequest(collection="getter", ids=["a"])).points[0]
    assert not plain.vectors
    r = alpha.upsert("getter", [point("a", x[2], person_id="bob")])
    assert (r.upserted, r.replaced) == (1, 1)
    g = alpha.Get(pb.GetRequest(collection="getter", ids=["a"], with_vectors=True)).points[0]
    assert np.allclose(g.vectors["face"].values, x[2]) and "tags" not in g.metadata
    # the replaced vector is gone: searching with the old vector scores it as the new one
    hits = {h.id: h.score for h in alpha.search("getter", x[0], k=5).results[0].hits}
    assert hits["a"] == pytest.approx(float(x[0] @ x[2]), abs=1e-5)
    assert (
        alpha.DescribeCollection(
            pb.DescribeCollectionRequest(collection="getter")
        ).collection.points
        == 2
    )


def test_deletes_by_ids_filter_and_person_never_come_back(
    alpha: Client, rng: np.random.Generator
) -> None:
    alpha.create("deletes", shards=2)
    x = unit(rng, 60)
    alpha.upsert(
        "deletes",
        [
            point(f"d{i}", x[i], person_id=f"per{i % 6}", media_id=f"m{i % 4}", n=i)
            for i in range(60)
        ],
    )
    assert (
        alpha.Delete(
            pb.DeleteRequest(collection="deletes", ids=pb.IdList(ids=["d0", "d1", "zz"]))
        ).deleted
        == 2
    )
    assert alpha.Delete(pb.DeleteRequest(collection="deletes", person_id="per2")).deleted == 10
    flt = cpb.Filter(must=[eq("media_id", string_value="m3")])
    assert alpha.Delete(pb.DeleteRequest(collection="deletes", filter=flt)).deleted == 15
    gone = {"d0", "d1"} | {f"d{i}" for i in range(60) if i % 6 == 2 or i % 4 == 3}
    found = {i for row in alpha.ids("deletes", x, k=60) for i in row}
    assert found == {f"d{i}" for i in range(60)} - gone
    assert not alpha.Get(pb.GetRequest(collection="deletes", ids=sorted(gone))).points
    assert alpha.DescribeCollection(
        pb.DescribeCollectionRequest(collection="deletes")
    ).collection.points == 60 - len(gone)
    empty = cpb.Filter()
    assert code_of(lambda: alpha.Delete(pb.DeleteRequest(collection="deletes", filter=empty))) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )


def test_filters(alpha: Client, rng: np.random.Generator) -> None:
    alpha.create("filters", shards=2)
    x = unit(rng, 40)
    pts = []
    for i in range(40):
        p = point(f"r{i}", x[i], source="cctv" if i % 2 else "tv", n=i, tags=[f"t{i % 3}", "all"])
        p.metadata["time"].time_value.seconds = 1_000 + i
        pts.append(p)
    alpha.upsert("filters", pts)

    def found(*must: cpb.FieldCondition, any_of: list[cpb.Filter] | None = None) -> set[int]:
        flt = cpb.Filter(must=list(must), any_of=any_of or [])
        rows = alpha.ids("filters", x[:1], k=40, flt=flt)
        return {int(i[1:]) for i in rows[0]}

    everyone = set(range(40))
    assert found(eq("source", string_value="tv")) == {i for i in everyone if i % 2 == 0}
    assert found(eq("tags", string_value="t1")) == {i for i in everyone if i % 3 == 1}
    in_set = cpb.FieldCondition(
        field="n",
        in_set=cpb.MetadataValueList(values=[cpb.MetadataValue(int_value=v) for v in (3, 5, 99)]),
    )
    assert found(in_set) == {3, 5}
    rng_cond = cpb.FieldCondition(
        field="n",
        range=cpb.Range(gte=cpb.MetadataValue(int_value=10), lt=cpb.MetadataValue(int_value=13)),
    )
    assert found(rng_cond) == {10, 11, 12}
    t = cpb.MetadataValue()
    t.time_value.seconds = 1_035
    assert found(cpb.FieldCondition(field="time", range=cpb.Range(gt=t))) == set(range(36, 40))
    neg = cpb.FieldCondition(
        field="source", equals=cpb.MetadataValue(string_value="tv"), negate=True
    )
    assert found(neg) == {i for i in everyone if i % 2}
    assert found(cpb.FieldCondition(field="person_id", exists=True)) == set()
    ors = [cpb.Filter(must=[eq("n", int_value=1)]), cpb.Filter(must=[eq("n", int_value=2)])]
    assert found(eq("tags", string_value="all"), any_of=ors) == {1, 2}


@pytest.mark.parametrize(
    "cond, field",
    [
        (eq("nosuchfield", string_value="x"), "queries[0].filter.must[0].field"),
        (eq("n", string_value="7"), "queries[0].filter.must[0].equals"),
        (
            cpb.FieldCondition(field="source", range=cpb.Range(gt=cpb.MetadataValue(int_value=1))),
            "queries[0].filter.must[0].range",
        ),
    ],
)
def test_bad_filters_name_the_field(
    alpha: Client, rng: np.random.Generator, cond: cpb.FieldCondition, field: str
) -> None:
    if not any(
        c.name == "badfilters"
        for c in alpha.ListCollections(pb.ListCollectionsRequest()).collections
    ):
        alpha.create("badfilters")
        alpha.upsert("badfilters", [point("a", unit(rng, 1)[0], n=1)])
    with pytest.raises(grpc.RpcError) as err:
        alpha.search("badfilters", unit(rng, 1), flt=cpb.Filter(must=[cond]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(err.value)[0][0] == field


def test_bad_writes_store_nothing(alpha: Client, rng: np.random.Generator) -> None:
    alpha.create("strict")
    x = unit(rng, 5)
    alpha.upsert("strict", [point("keep", x[0])])
    nan = x[1].copy()
    nan[3] = np.nan
    wrong_model = point("m", x[2])
    wrong_model.model_ids["face"] = "arcface-r100"
    bad_meta = point("t", x[3], n=1)
    bad_meta.metadata["n"].string_value = "one"  # n is an int once "typed" below
    alpha.upsert("strict", [point("typed", x[4], n=5)])
    cases = [
        ([point("ok1", x[1]), point("short", x[1][:5])], "points[1].vectors[face]"),
        ([point("ok1", x[1]), point("nan", nan)], "points[1].vectors[face]"),
        ([point("ok1", x[1]), point("ok1", x[2])], "points[1].id"),
        ([point("ok1", x[1]), wrong_model], "points[1].model_ids[face]"),
        ([point("ok1", x[1]), bad_meta], "points[1].metadata[n]"),
    ]
    for batch, field in cases:
        with pytest.raises(grpc.RpcError) as err:
            alpha.upsert("strict", batch)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field_violations(err.value)[0][0] == field
    over = [point(f"o{i}", x[0]) for i in range(1025)]
    assert code_of(lambda: alpha.upsert("strict", over)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert code_of(lambda: alpha.upsert("nosuch", [point("a", x[0])])) == grpc.StatusCode.NOT_FOUND
    got = alpha.Get(pb.GetRequest(collection="strict", ids=["ok1", "o0", "keep", "typed"]))
    assert sorted(p.id for p in got.points) == ["keep", "typed"]


def test_bad_searches(alpha: Client, rng: np.random.Generator) -> None:
    alpha.create("badsearch")
    alpha.upsert("badsearch", [point("a", unit(rng, 1)[0])])
    q = unit(rng, 1)
    assert code_of(lambda: alpha.search("badsearch", q, k=0)) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: alpha.search("badsearch", q, k=101)) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: alpha.search("badsearch", q[:, :4])) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: alpha.search("nosuch", q)) == grpc.StatusCode.NOT_FOUND
    big = unit(rng, 257)
    assert code_of(lambda: alpha.search("badsearch", big)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    req = pb.SearchRequest(collection="badsearch")
    req.queries.add(k=1).terms.add(model_id="other-model").vector.values.extend(q[0].tolist())
    assert code_of(lambda: alpha.Search(req)) == grpc.StatusCode.INVALID_ARGUMENT
    unknown = pb.SearchRequest(collection="badsearch")
    unknown.queries.add(k=1).terms.add(point_id="nobody")
    assert code_of(lambda: alpha.Search(unknown)) == grpc.StatusCode.NOT_FOUND


def test_exclude_ids_and_min_score(alpha: Client, rng: np.random.Generator) -> None:
    alpha.create("exclude")
    x = unit(rng, 10)
    alpha.upsert("exclude", [point(f"e{i}", x[i]) for i in range(10)])
    req = pb.SearchRequest(collection="exclude")
    q = req.queries.add(k=3, exclude_ids=["e4"], min_score=0.99)
    q.terms.add(model_id=MODEL).vector.values.extend(x[4].tolist())
    assert [h.id for h in alpha.Search(req).results[0].hits] == []
    q.ClearField("min_score")
    assert "e4" not in [h.id for h in alpha.Search(req).results[0].hits]


def test_aliases_swap_without_failed_reads(alpha: Client, rng: np.random.Generator) -> None:
    x = unit(rng, 10)
    for name in ("gallery-v1", "gallery-v2"):
        alpha.create(name)
        alpha.upsert(name, [point(f"{name}-{i}", x[i]) for i in range(10)])
    assert (
        alpha.SetAlias(
            pb.SetAliasRequest(alias="gallery", collection="gallery-v1")
        ).previous_collection
        == ""
    )
    assert alpha.ids("gallery", x[0], k=1) == [["gallery-v1-0"]]
    errors: list[Exception] = []
    seen: set[str] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.add(alpha.ids("gallery", x[0], k=1)[0][0])
            except Exception as exc:  # any failed read is the bug under test
                errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(20):
            target = "gallery-v2" if i % 2 == 0 else "gallery-v1"
            alpha.SetAlias(pb.SetAliasRequest(alias="gallery", collection=target))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not errors
    assert seen <= {"gallery-v1-0", "gallery-v2-0"} and seen
    listed = alpha.ListAliases(pb.ListAliasesRequest()).aliases
    assert [(a.alias, a.collection) for a in listed if a.alias == "gallery"] == [
        ("gallery", "gallery-v1")
    ]
    drop = pb.DropCollectionRequest(collection="gallery-v1")
    assert code_of(lambda: alpha.DropCollection(drop)) == grpc.StatusCode.FAILED_PRECONDITION
    alpha.create("gallery-other", model="arcface-r100")
    other = pb.SetAliasRequest(alias="gallery", collection="gallery-other")
    assert code_of(lambda: alpha.SetAlias(other)) == grpc.StatusCode.INVALID_ARGUMENT
    clash = pb.SetAliasRequest(alias="gallery-v2", collection="gallery-v1")
    assert code_of(lambda: alpha.SetAlias(clash)) == grpc.StatusCode.INVALID_ARGUMENT
    alpha.DropCollection(pb.DropCollectionRequest(collection="gallery-v1", force=True))
    assert code_of(lambda: alpha.ids("gallery", x[0])) == grpc.StatusCode.NOT_FOUND


def test_upsert_stream_acks_each_batch(alpha: Client, rng: np.random.Generator) -> None:
    alpha.create("stream")
    x = unit(rng, 30)

    def batches():  # type: ignore[no-untyped-def]
        yield pb.UpsertRequest(
            collection="stream", points=[point(f"s{i}", x[i]) for i in range(10)]
        )
        yield pb.UpsertRequest(collection="stream", points=[point("bad", x[0][:3])])
        yield pb.UpsertRequest(
            collection="stream", points=[point(f"s{i}", x[i]) for i in range(10, 30)]
        )

    acks = list(alpha.stub.UpsertStream(batches(), metadata=alpha.md, timeout=30))
    assert [a.sequence for a in acks] == [0, 1, 2]
    assert acks[0].result.upserted == 10 and acks[2].result.upserted == 20
    assert acks[1].error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "points[0].vectors[face]" in acks[1].error_message
    assert alpha.Stats(pb.StatsRequest(collection="stream")).points == 30


def test_stats_totals(alpha: Client, beta: Client, rng: np.random.Generator) -> None:
    beta.create("statsonly")
    beta.upsert("statsonly", [point(f"z{i}", v) for i, v in enumerate(unit(rng, 7))])
    s = beta.Stats(pb.StatsRequest())
    assert s.collections == 1 and s.points == 7
    assert s.memory_bytes >= 7 * DIM * 4 and s.disk_bytes > 0


def test_metadata_limits(alpha: Client, rng: np.random.Generator) -> None:
    alpha.create("byfilter")
    x = unit(rng, 6)
    alpha.upsert("byfilter", [point(f"b{i}", x[i], person_id=f"p{i % 2}") for i in range(6)])
    # Get by filter was the router's own workaround; the router now has RetrieverShard.GetShard.
    assert "filter" not in pb.GetRequest.DESCRIPTOR.fields_by_name
    crowded = point("crowded", x[0], **{f"k{i}": i for i in range(65)})
    with pytest.raises(grpc.RpcError) as err:
        alpha.upsert("byfilter", [crowded])
    assert field_violations(err.value)[0][0] == "points[0].metadata"
    huge = point("huge", x[0], caption="x" * 5000)
    assert code_of(lambda: alpha.upsert("byfilter", [huge])) == grpc.StatusCode.INVALID_ARGUMENT


def test_deadline_is_honoured_and_server_survives(alpha: Client, rng: np.random.Generator) -> None:
    alpha.create("deadline")
    x = unit(rng, 2000)
    alpha.upsert("deadline", [point(f"t{i}", x[i]) for i in range(1000)])
    alpha.upsert("deadline", [point(f"t{i}", x[i]) for i in range(1000, 2000)])
    flt = cpb.Filter(must=[cpb.FieldCondition(field="person_id", exists=False)])
    with pytest.raises(grpc.RpcError) as err:
        alpha.search("deadline", unit(rng, 256), k=100, flt=flt, timeout=0.001)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert len(alpha.ids("deadline", x[:2], k=1)) == 2


def test_calls_without_a_deadline_are_not_cut_by_the_downstream_timeout(tmp_path: Path) -> None:
    """``downstream_timeout_s`` bounds calls to other processes; shards in this process are
    bounded by the caller's deadline only (none here: their work runs to the end)."""
    env = retriever_env(tmp_path / "data", downstream_timeout_s="0.000001")
    svc = start_service("retriever", env)
    try:
        stub = pb_grpc.RetrieverStub(svc.channel())
        c = Client(svc.channel(), None)
        c.create("nodeadline", shards=2)
        x = unit(np.random.default_rng(13), 1000)
        req = pb.UpsertRequest(
            collection="nodeadline", points=[point(f"n{i}", x[i]) for i in range(1000)]
        )
        assert stub.Upsert(req).upserted == 1000  # no timeout= : the client set no deadline
        search = pb.SearchRequest(collection="nodeadline")
        search.queries.add(k=3).terms.add(model_id=MODEL).vector.values.extend(x[5].tolist())
        assert stub.Search(search).results[0].hits[0].id == "n5"
    finally:
        svc.stop()


def test_a_term_on_a_field_without_vectors_is_refused_not_ignored(
    alpha: Client, rng: np.random.Generator
) -> None:
    # A collection with a caption field in which nothing was ever stored (indexed without
    # captions): a text term can find nothing, alone or fused, and says what to index.
    caption = pb.VectorFieldSpec(name="caption", dimension=8, model_id="minilm-l6-v2")
    alpha.create("no-captions", extra_fields=[caption])
    alpha.upsert("no-captions", [point(f"p{i}", v) for i, v in enumerate(unit(rng, 5))])
    text = pb.QueryTerm(
        field="caption", model_id="minilm-l6-v2", vector=cpb.Vector(values=[0.1] * 8)
    )
    face = pb.QueryTerm(field="face", model_id=MODEL, vector=cpb.Vector(values=unit(rng, 1)[0]))
    for terms in ([text], [face, text]):
        req = pb.SearchRequest(collection="no-captions", queries=[pb.Query(terms=terms, k=3)])
        with pytest.raises(grpc.RpcError) as err:
            alpha.Search(req)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "'caption'" in err.value.details() and "index" in err.value.details()
    # Once one face has a caption vector the same fused query answers.
    with_caption = point("p9", unit(rng, 1)[0])
    with_caption.vectors["caption"].values.extend([0.1] * 8)
    with_caption.model_ids["caption"] = "minilm-l6-v2"
    alpha.upsert("no-captions", [with_caption])
    req = pb.SearchRequest(collection="no-captions", queries=[pb.Query(terms=[face, text], k=3)])
    assert alpha.Search(req).results[0].hits
