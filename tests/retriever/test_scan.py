"""Scan (a collection's points a page at a time), media roots and alias moves across models,
over gRPC against real retriever processes: one embedded, one router with two shard servers."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_contract.v1 import retriever_pb2 as pb
from harness.service_process import ServiceProcess, start_service
from tests.retriever.conftest import Client, code_of, point, retriever_env, unit


def scan_all(
    client: Client, collection: str, size: int, with_vectors: bool = False
) -> list[pb.Point]:
    out: list[pb.Point] = []
    token = ""
    while True:
        reply = client.Scan(
            pb.ScanRequest(
                collection=collection,
                page=cpb.PageRequest(page_size=size, page_token=token),
                with_vectors=with_vectors,
            )
        )
        assert len(reply.points) <= size
        out.extend(reply.points)
        token = reply.page.next_page_token
        if not token:
            return out


def fill(client: Client, name: str, n: int, rng: np.random.Generator, shards: int = 4) -> None:
    client.create(name, shards=shards)
    vecs = unit(rng, n)
    for lo in range(0, n, 100):
        client.upsert(
            name,
            [
                point(f"p{i}", vecs[i], media_id=f"m{i // 3}", n=i)
                for i in range(lo, min(n, lo + 100))
            ],
        )


def test_scan_pages_every_point_once_across_shards(alpha: Client, rng: np.random.Generator) -> None:
    fill(alpha, "scan-all", 250, rng)
    got = scan_all(alpha, "scan-all", 7)
    assert sorted(p.id for p in got) == sorted(f"p{i}" for i in range(250))
    by_id = {p.id: p for p in got}
    assert by_id["p31"].metadata["media_id"].string_value == "m10"
    assert by_id["p31"].metadata["n"].int_value == 31
    assert not by_id["p31"].vectors  # metadata only unless asked
    # The default page is 100 points; the most a page may hold, 1,000, takes them all.
    first = alpha.Scan(pb.ScanRequest(collection="scan-all"))
    assert len(first.points) == 100 and first.page.next_page_token
    assert len(scan_all(alpha, "scan-all", 1000)) == 250


def test_scan_with_vectors_returns_them_with_their_model(
    alpha: Client, rng: np.random.Generator
) -> None:
    vec = unit(rng, 1)[0]
    alpha.create("scan-vectors")
    alpha.upsert("scan-vectors", [point("only", vec, media_id="a.jpg")])
    (p,) = scan_all(alpha, "scan-vectors", 10, with_vectors=True)
    assert p.model_ids["face"] == "sface-2021dec"
    np.testing.assert_allclose(p.vectors["face"].values, vec, rtol=1e-6)


def test_scan_while_points_are_written(alpha: Client, rng: np.random.Generator) -> None:
    """Points stored throughout come exactly once; a point written meanwhile may come again
    (newest last); a point deleted before its turn does not come."""
    fill(alpha, "scan-live", 60, rng, shards=1)
    first = alpha.Scan(pb.ScanRequest(collection="scan-live", page=cpb.PageRequest(page_size=20)))
    seen = [p.id for p in first.points]
    # Replace one already returned, delete one still to come, add a new one.
    alpha.upsert("scan-live", [point(seen[0], unit(rng, 1)[0], media_id="moved")])
    alpha.Delete(pb.DeleteRequest(collection="scan-live", ids=pb.IdList(ids=["p59"])))
    alpha.upsert("scan-live", [point("late", unit(rng, 1)[0])])
    token = first.page.next_page_token
    rest: list[pb.Point] = []
    while token:
        reply = alpha.Scan(
            pb.ScanRequest(collection="scan-live", page=cpb.PageRequest(page_token=token))
        )
        rest.extend(reply.points)
        token = reply.page.next_page_token
    ids = seen + [p.id for p in rest]
    assert "p59" not in ids and "late" in ids
    for i in range(1, 59):
        assert ids.count(f"p{i}") == 1
    again = [p for p in rest if p.id == seen[0]]
    assert len(again) == 1 and again[0].metadata["media_id"].string_value == "moved"


def test_scan_refuses_tokens_it_did_not_issue_for_this_collection(
    alpha: Client, beta: Client, rng: np.random.Generator
) -> None:
    fill(alpha, "scan-tok-a", 30, rng, shards=2)
    fill(alpha, "scan-tok-b", 30, rng, shards=2)
    page = cpb.PageRequest(page_size=5)
    token = alpha.Scan(pb.ScanRequest(collection="scan-tok-a", page=page)).page.next_page_token
    other = cpb.PageRequest(page_size=5, page_token=token)
    with pytest.raises(grpc.RpcError) as err:
        alpha.Scan(pb.ScanRequest(collection="scan-tok-b", page=other))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "scan again from the first page" in err.value.details()
    for bad in ("garbage", token + "0" * 30, token.replace(".0.", ".9."), "s1.zz.0.1"):
        req = pb.ScanRequest(collection="scan-tok-a", page=cpb.PageRequest(page_token=bad))
        with pytest.raises(grpc.RpcError) as err:
            alpha.Scan(req)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
        assert "page.page_token" in err.value.details()
    big = pb.ScanRequest(collection="scan-tok-a", page=cpb.PageRequest(page_size=1001))
    assert code_of(lambda: alpha.Scan(big)) == grpc.StatusCode.INVALID_ARGUMENT
    # Through an alias that moves mid-scan: the token names the old collection.
    alpha.SetAlias(pb.SetAliasRequest(alias="scan-tok", collection="scan-tok-a"))
    token = alpha.Scan(pb.ScanRequest(collection="scan-tok", page=page)).page.next_page_token
    alpha.SetAlias(pb.SetAliasRequest(alias="scan-tok", collection="scan-tok-b"))
    req = pb.ScanRequest(collection="scan-tok", page=cpb.PageRequest(page_token=token))
    assert code_of(lambda: alpha.Scan(req)) == grpc.StatusCode.FAILED_PRECONDITION
    # Another tenant's collection is not there.
    req = pb.ScanRequest(collection="scan-tok-a")
    assert code_of(lambda: beta.Scan(req)) == grpc.StatusCode.NOT_FOUND


def test_alias_moves_to_another_model_only_when_the_caller_says_so(alpha: Client) -> None:
    alpha.create("alias-old")
    alpha.create("alias-new", model="sface-test-v1")
    alpha.SetAlias(pb.SetAliasRequest(alias="alias-live", collection="alias-old"))
    with pytest.raises(grpc.RpcError) as err:
        alpha.SetAlias(pb.SetAliasRequest(alias="alias-live", collection="alias-new"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "allow_model_change" in err.value.details()
    reply = alpha.SetAlias(
        pb.SetAliasRequest(alias="alias-live", collection="alias-new", allow_model_change=True)
    )
    assert reply.previous_collection == "alias-old"
    info = alpha.DescribeCollection(pb.DescribeCollectionRequest(collection="alias-live"))
    assert info.collection.name == "alias-new"
    # The retriever never stores one model's vectors in a field bound to another.
    with pytest.raises(grpc.RpcError) as err:
        alpha.upsert("alias-old", [_of_model("sface-test-v1")])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sface-test-v1" in err.value.details() and "sface-2021dec" in err.value.details()


def _of_model(model: str) -> pb.Point:
    p = point("x", np.full(16, 0.25, np.float32))
    p.model_ids["face"] = model
    return p


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[ServiceProcess], Path]]:
    """A retriever of this module's own (no auth), to be restarted on the same data."""
    data = tmp_path_factory.mktemp("roots") / "data"
    holder = [start_service("retriever", retriever_env(data))]
    yield holder, data
    holder[0].stop()


def test_media_roots_are_checked_kept_and_survive_a_restart(
    own: tuple[list[ServiceProcess], Path], rng: np.random.Generator
) -> None:
    holder, data = own
    c = Client(holder[0].channel(), None)
    c.CreateCollection(
        pb.CreateCollectionRequest(
            name="roots",
            vector_fields=[pb.VectorFieldSpec(name="face", dimension=16, model_id="m")],
            media_roots=["/archive/a"],
        )
    )
    add = c.AddMediaRoots(
        pb.AddMediaRootsRequest(collection="roots", media_roots=["/archive/b", "/archive/a"])
    )
    assert list(add.media_roots) == ["/archive/a", "/archive/b"]
    again = c.AddMediaRoots(pb.AddMediaRootsRequest(collection="roots", media_roots=["/archive/b"]))
    assert list(again.media_roots) == ["/archive/a", "/archive/b"]  # a retry changes nothing
    for bad, code, words in (
        (["photos/2020"], grpc.StatusCode.INVALID_ARGUMENT, "not an absolute path"),
        (["/" + "x" * 4096], grpc.StatusCode.INVALID_ARGUMENT, "4,096 bytes"),
        ([], grpc.StatusCode.INVALID_ARGUMENT, "media_roots"),
        ([f"/r/{i}" for i in range(255)], grpc.StatusCode.FAILED_PRECONDITION, "one parent"),
    ):
        with pytest.raises(grpc.RpcError) as err:
            c.AddMediaRoots(pb.AddMediaRootsRequest(collection="roots", media_roots=bad))
        assert err.value.code() == code and words in err.value.details(), err.value.details()
    c.upsert("roots", [_roots_point(i, rng) for i in range(40)])
    token = c.Scan(
        pb.ScanRequest(collection="roots", page=cpb.PageRequest(page_size=15))
    ).page.next_page_token
    # A restart keeps the roots, and a scan goes on where it was (positions are stored).
    holder[0].signal(signal.SIGKILL)
    holder[0].wait()
    holder[0] = start_service("retriever", retriever_env(data))
    c = Client(holder[0].channel(), None)
    info = c.DescribeCollection(pb.DescribeCollectionRequest(collection="roots")).collection
    assert list(info.media_roots) == ["/archive/a", "/archive/b"]
    rest: list[str] = []
    while token:
        reply = c.Scan(pb.ScanRequest(collection="roots", page=cpb.PageRequest(page_token=token)))
        rest.extend(p.id for p in reply.points)
        token = reply.page.next_page_token
    assert len(rest) == 25 and len(set(rest)) == 25


def _roots_point(i: int, rng: np.random.Generator) -> pb.Point:
    p = point(f"r{i}", unit(rng, 1)[0])
    p.model_ids["face"] = "m"
    return p


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    base: Path = tmp_path_factory.mktemp("scan-cluster")
    shards = [start_service("retriever", retriever_env(base / f"s{i}")) for i in range(2)]
    servers = "[" + ", ".join(s.address for s in shards) + "]"
    front = start_service("retriever", retriever_env(base / "router", shard_servers=servers))
    yield front
    front.stop()
    for s in shards:
        s.stop()


@pytest.mark.slow
def test_scan_through_a_router_reads_every_shard_server(
    router: ServiceProcess, rng: np.random.Generator
) -> None:
    c = Client(router.channel(), None)
    fill(c, "routed", 120, rng, shards=0)
    got = scan_all(c, "routed", 13, with_vectors=True)
    assert sorted(p.id for p in got) == sorted(f"p{i}" for i in range(120))
    assert all(p.model_ids["face"] == "sface-2021dec" for p in got)
    info = c.DescribeCollection(pb.DescribeCollectionRequest(collection="routed")).collection
    assert info.shard_count == 2 and all(s.points for s in info.shards)
