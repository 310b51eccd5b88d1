"""AddVectorField and back-fill (ADD_VECTORS) through a router in front of two shard server
processes: every shard gets the field before the router commits it; a shard server restarted
(kill -9) reopens its shards with the field and its vectors (fields.pb, log); a shard server
down during AddVectorField leaves the collection as it was, and the retry completes it."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import grpc
import numpy as np
import pytest

from facesearch_contract.v1 import retriever_pb2 as pb
from harness.service_process import ServiceProcess, free_port, start_service
from tests.retriever.conftest import Client, point, retriever_env, unit
from tests.retriever.test_add_vector_field import (
    ATTR_DIM,
    add_field,
    add_vectors,
    additions,
    attr_field,
    attr_search,
    stats,
)

pytestmark = pytest.mark.slow
T = TypeVar("T")


class Cluster:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.ports = [free_port(), free_port()]
        self.shards: list[ServiceProcess | None] = [self.start_shard(i) for i in range(2)]
        servers = "[" + ", ".join(f"127.0.0.1:{p}" for p in self.ports) + "]"
        self.router_env = retriever_env(
            base / "router", shard_servers=servers, downstream_timeout_s="5"
        )
        self.router = start_service("retriever", self.router_env)

    def start_shard(self, i: int) -> ServiceProcess:
        return start_service(
            "retriever", retriever_env(self.base / f"shard{i}", port=str(self.ports[i]))
        )

    def kill_shard(self, i: int) -> None:
        svc = self.shards[i]
        assert svc is not None
        svc.signal(signal.SIGKILL)
        svc.wait()
        svc.stop()
        self.shards[i] = None

    def restart_router(self) -> None:
        self.router.stop()
        self.router = start_service("retriever", self.router_env)

    def client(self) -> Client:
        return Client(self.router.channel(), None)

    def stop(self) -> None:
        self.router.stop()
        for s in self.shards:
            if s is not None:
                s.stop()


def retry_unavailable(call: Callable[[], T], for_s: float = 30.0) -> T:
    """As the SDK retries an IDEMPOTENT call: the router's channel to a restarted shard
    server reconnects with backoff, and writes are not retried by the channel itself."""
    deadline = time.monotonic() + for_s
    while True:
        try:
            return call()
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:  # type: ignore[attr-defined]
                raise
            time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("avf-cluster"))
    yield c
    c.stop()


def test_routed_field_is_added_on_every_shard_and_survives_restarts(cluster: Cluster) -> None:
    rng = np.random.default_rng(21)
    faces, attrs = unit(rng, 20), unit(rng, 20, ATTR_DIM)
    c = cluster.client()
    c.create("routed", shards=0)
    c.upsert("routed", [point(f"p{i}", faces[i]) for i in range(20)])
    assert add_field(c, "routed", attr_field()).added
    assert (
        add_vectors(c, "routed", additions({f"p{i}": attrs[i] for i in range(12)})).upserted == 12
    )
    s = stats(c, "routed")["attributes"]
    assert (s.vectors, s.points_without) == (12, 8)

    cluster.kill_shard(1)
    cluster.shards[1] = cluster.start_shard(1)
    cluster.restart_router()
    c = cluster.client()
    s = stats(c, "routed")["attributes"]
    assert (s.vectors, s.points_without) == (12, 8)
    found = attr_search(c, "routed", attrs[9])
    assert found.results[0].hits[0].id == "p9"
    assert [(f.field, f.points, f.points_without) for f in found.partial_fields] == [
        ("attributes", 20, 8)
    ]
    done = add_vectors(c, "routed", additions({f"p{i}": attrs[i] for i in range(10, 20)}))
    assert (done.upserted, done.skipped) == (8, 2)
    assert stats(c, "routed")["attributes"].points_without == 0


def test_a_shard_server_down_leaves_the_collection_unchanged_until_the_retry(
    cluster: Cluster,
) -> None:
    c = cluster.client()
    c.create("routed-down", shards=0)
    c.upsert(
        "routed-down", [point(f"p{i}", v) for i, v in enumerate(unit(np.random.default_rng(3), 6))]
    )
    cluster.kill_shard(0)
    try:
        with pytest.raises(grpc.RpcError) as err:
            add_field(c, "routed-down", attr_field())
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    finally:
        cluster.shards[0] = cluster.start_shard(0)
    info = c.DescribeCollection(pb.DescribeCollectionRequest(collection="routed-down"))
    assert [f.name for f in info.collection.vector_fields] == ["face"]
    # The shard that got it holds an empty field the router never committed: the retry adopts
    # it; a retry with another spec would replace it, since it holds nothing.
    other = attr_field(dim=ATTR_DIM + 2)
    assert retry_unavailable(lambda: add_field(c, "routed-down", other)).added
    s = stats(c, "routed-down")["attributes"]
    assert (s.vectors, s.points_without) == (0, 6)
