"""Candidate persons kept up to date over a real retriever process: faces that arrive later
join the clusters already listed (their ids stay), faces that leave drop out, a user merges
and splits, the clusters survive a restart, and recluster groups everything afresh."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from facesearch_contract.v1 import persons_pb2 as ppb
from facesearch_contract.v1 import retriever_pb2 as pb
from harness.service_process import ServiceProcess, start_service
from tests.retriever.conftest import Client, point, retriever_env, write_keys
from tests.retriever.test_persons import D, People, Persons, code, synthetic_calibration

COLL = "archive"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clusters")


def start(base: Path) -> ServiceProcess:
    keys = write_keys(base / "keys.yaml")
    return start_service("retriever", retriever_env(base / "data", keys))


@pytest.fixture(scope="module")
def world(base: Path) -> Iterator[tuple[Client, Persons, People, ServiceProcess]]:
    svc = start(base)
    alpha, persons = Client(svc.channel(), "key-alpha"), Persons(svc.channel(), "key-alpha")
    alpha.create(COLL, dim=D)
    persons.ConfigureIdentification(
        ppb.ConfigureIdentificationRequest(collection=COLL, settings=synthetic_calibration())
    )
    yield alpha, persons, People(seed=7), svc
    svc.stop()


def listing(persons: Persons, **kw) -> ppb.ListClustersResponse:  # type: ignore[no-untyped-def]
    return persons.ListClusters(ppb.ListClustersRequest(collection=COLL, **kw))


def by_person(reply: ppb.ListClustersResponse) -> dict[str, ppb.FaceCluster]:
    """Person tag (face ids are '<person>-<n>') -> its cluster; fails if a cluster mixes."""
    out = {}
    for c in reply.clusters:
        tags = {f.split("-")[0] for f in c.face_ids}
        assert len(tags) == 1, f"cluster {c.cluster_id} mixes {sorted(tags)}"
        out[tags.pop()] = c
    return out


def add(alpha: Client, people: People, faces: dict[str, range]) -> None:
    alpha.upsert(
        COLL,
        [
            point(f"{who}-{n}", people.face(who), quality=0.9)
            for who, ns in faces.items()
            for n in ns
        ],
    )


def test_clusters_keep_their_ids_while_faces_arrive_and_leave(world) -> None:  # type: ignore[no-untyped-def]
    alpha, persons, people, _ = world
    add(alpha, people, {"a": range(3), "b": range(3), **{f"x{i}": range(1) for i in range(5)}})
    first = listing(persons)
    assert first.new_faces == 11 and first.departed_faces == 0 and first.unlabelled_faces == 11
    assert first.total_clusters == 2 + 5  # strangers stay singletons (not listed)
    clusters = by_person(first)
    assert sorted(clusters) == ["a", "b"]
    a_id, b_id = clusters["a"].cluster_id, clusters["b"].cluster_id

    # Later arrivals: two more of a, three of a new person c, one look-alike of stranger x0.
    add(alpha, people, {"a": range(3, 5), "c": range(3), "x0": range(1, 2)})
    second = listing(persons)
    assert second.new_faces == 6 and second.unlabelled_faces == 17
    clusters = by_person(second)
    assert clusters["a"].cluster_id == a_id and len(clusters["a"].face_ids) == 5
    assert clusters["b"].cluster_id == b_id and len(clusters["b"].face_ids) == 3
    assert len(clusters["c"].face_ids) == 3 and clusters["c"].cluster_id not in (a_id, b_id)
    assert sorted(clusters["x0"].face_ids) == ["x0-0", "x0-1"]  # a singleton grew into a pair

    # A face deleted from the collection leaves its cluster; the id stays.
    alpha.Delete(pb.DeleteRequest(collection=COLL, ids=pb.IdList(ids=["b-0"])))
    third = listing(persons)
    assert third.departed_faces == 1 and third.new_faces == 0
    assert by_person(third)["b"].cluster_id == b_id
    assert sorted(by_person(third)["b"].face_ids) == ["b-1", "b-2"]


def test_merge_and_split_clusters(world) -> None:  # type: ignore[no-untyped-def]
    _, persons, _, _ = world
    clusters = by_person(listing(persons))
    a, c = clusters["a"].cluster_id, clusters["c"].cluster_id

    def merge(*ids: str) -> ppb.MergeClustersResponse:
        return persons.MergeClusters(ppb.MergeClustersRequest(collection=COLL, cluster_ids=ids))

    def split(cid: str, faces: list[str]) -> ppb.SplitClusterResponse:
        req = ppb.SplitClusterRequest(collection=COLL, cluster_id=cid, face_ids=faces)
        return persons.SplitCluster(req)

    # Refusals change nothing.
    assert code(lambda: merge(a)) == grpc.StatusCode.INVALID_ARGUMENT
    assert code(lambda: merge(a, a)) == grpc.StatusCode.INVALID_ARGUMENT
    assert code(lambda: merge(a, "c-0000000000000000")) == grpc.StatusCode.NOT_FOUND
    assert code(lambda: split(a, [])) == grpc.StatusCode.INVALID_ARGUMENT
    assert code(lambda: split(a, ["c-0"])) == grpc.StatusCode.INVALID_ARGUMENT
    assert code(lambda: split(a, [f"a-{n}" for n in range(5)])) == grpc.StatusCode.INVALID_ARGUMENT
    assert code(lambda: split("c-nope", ["a-0"])) == grpc.StatusCode.NOT_FOUND
    assert by_person(listing(persons))["a"].cluster_id == a

    merged = merge(a, c).cluster
    assert merged.cluster_id == a and len(merged.face_ids) == 8
    now = listing(persons)
    assert [len(x.face_ids) for x in now.clusters if x.cluster_id == a] == [8]
    assert c not in {x.cluster_id for x in now.clusters}

    parted = split(a, ["c-0", "c-1", "c-2"])
    assert parted.kept.cluster_id == a and sorted(parted.kept.face_ids) == [
        f"a-{n}" for n in range(5)
    ]
    assert sorted(parted.split.face_ids) == ["c-0", "c-1", "c-2"]
    assert by_person(listing(persons))["c"].cluster_id == parted.split.cluster_id


def test_clusters_survive_a_restart_and_recluster_starts_afresh(world, base: Path) -> None:  # type: ignore[no-untyped-def]
    _, persons, _, svc = world
    before = {c.cluster_id: sorted(c.face_ids) for c in listing(persons).clusters}
    svc.stop()
    again = start(base)
    try:
        persons = Persons(again.channel(), "key-alpha")
        after = listing(persons)
        assert after.new_faces == 0 and after.departed_faces == 0
        assert {c.cluster_id: sorted(c.face_ids) for c in after.clusters} == before
        fresh = listing(persons, recluster=True)
        assert fresh.new_faces == fresh.unlabelled_faces == 16
        assert sorted(sorted(c.face_ids) for c in fresh.clusters) == sorted(before.values())
        assert not {c.cluster_id for c in fresh.clusters} & set(before)
    finally:
        again.stop()
