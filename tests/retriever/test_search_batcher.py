"""Coalesced searches (search_batcher): concurrent callers get the rows each would get alone,
whatever path their group takes (on the loop, on a worker thread); filters stay per caller; a
cancelled, expired or failing caller leaves the others their answers; the setting off restores
the path without coalescing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest

from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import search_batcher
from facesearch_server.retriever.filters import compile_filter
from facesearch_server.retriever.index_build import resolve_params
from facesearch_server.retriever.records import BUILTIN_FIELDS
from facesearch_server.retriever.shard import LocalShard
from facesearch_server.retriever.shard_search import FieldSearch
from tests.retriever.conftest import MODEL, eq, point, unit

DIM = 16
N = 600
PEOPLE = 4


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalShard]:
    spec = pb.VectorFieldSpec(
        name="face",
        dimension=DIM,
        metric=pb.METRIC_INNER_PRODUCT,
        model_id=MODEL,
        index=resolve_params(
            DIM, pb.IndexParams(kind=pb.INDEX_KIND_HNSW, train_threshold=300, hnsw_m=16)
        ),
    )
    s = LocalShard(tmp_path_factory.mktemp("batcher") / "s", [spec], lambda s, name: None)
    x = unit(np.random.default_rng(5), N)
    s.upsert([point(f"v{i}", x[i], person_id=f"p{i % PEOPLE}") for i in range(N)])
    s.build_now("face")
    assert s.field_stats()[0].indexed_vectors == N
    yield s
    s.close()


@pytest.fixture(autouse=True)
def coalescing_on() -> Iterator[None]:
    was = search_batcher.enabled()
    search_batcher.configure(True, 64)
    yield
    search_batcher.configure(was, 64)


# One request of a test: (queries, person filtered on or None).
Request = tuple[np.ndarray, str | None]


def requests(n: int, seed: int, people: bool) -> list[Request]:
    rng = np.random.default_rng(seed)
    out: list[Request] = []
    for i in range(n):
        who = f"p{i % PEOPLE}" if people and i % 3 else None
        out.append((unit(rng, 1 + i % 2), who))
    return out


def _filter(who: str | None) -> cpb.Filter | None:
    return None if who is None else cpb.Filter(must=[eq("person_id", string_value=who)])


def search(r: Request, params: pb.SearchParams, field: str = "face") -> FieldSearch:
    q, who = r
    flt = _filter(who)
    pred = None if flt is None else compile_filter(flt, BUILTIN_FIELDS)
    return FieldSearch(field, q, 10, pred, [], params, True, False)


def key(r: Request) -> bytes:
    flt = _filter(r[1])
    return b"" if flt is None else flt.SerializeToString(deterministic=True)


def rows(found: list[list[tuple[float, pb.Point]]]) -> list[list[tuple[float, str, str]]]:
    return [[(s, p.id, p.metadata["person_id"].string_value) for s, p in row] for row in found]


async def together(
    shard: LocalShard, reqs: list[Request], params: pb.SearchParams
) -> list[list[list[tuple[float, pb.Point]]]]:
    return await asyncio.gather(
        *(shard.batcher.search(search(r, params), filter_key=key(r)) for r in reqs)
    )


@pytest.mark.parametrize("busy", [False, True], ids=["idle-loop", "busy-loop"])
@pytest.mark.parametrize("exact", [False, True], ids=["hnsw", "exact"])
def test_coalesced_searches_answer_as_each_alone(
    shard: LocalShard, exact: bool, busy: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # busy: as under load, groups wait a turn and run on a worker thread.
    monkeypatch.setattr(search_batcher, "_loop_busy", lambda loop: busy)
    params = pb.SearchParams(exact=exact)
    reqs = requests(24, seed=1, people=True)
    groups, callers = shard.batcher.groups, shard.batcher.callers
    got = asyncio.run(together(shard, reqs, params))
    for r, found in zip(reqs, got, strict=True):
        alone = shard.search(search(r, params))
        assert rows(found) == rows(alone)
        assert len(found) == len(r[0])
        if r[1] is not None:
            assert {p for row in rows(found) for _s, _i, p in row} == {r[1]}
    assert shard.batcher.callers - callers == len(reqs)
    assert shard.batcher.groups - groups < len(reqs)  # some callers shared a FAISS search


def test_a_cancelled_or_expired_caller_leaves_the_others_their_rows(shard: LocalShard) -> None:
    params = pb.SearchParams()
    reqs = requests(6, seed=2, people=False)

    async def run() -> list[object]:
        tasks = [
            asyncio.ensure_future(shard.batcher.search(search(r, params), filter_key=b""))
            for r in reqs[:5]
        ]
        expired = asyncio.wait_for(
            shard.batcher.search(search(reqs[5], params), filter_key=b""),
            timeout=0,
        )
        await asyncio.sleep(0)  # every task has joined the group by now
        tasks[1].cancel()
        return await asyncio.gather(*tasks, expired, return_exceptions=True)

    callers = shard.batcher.callers
    got = asyncio.run(run())
    assert isinstance(got[1], asyncio.CancelledError)
    assert isinstance(got[5], TimeoutError)
    for i in (0, 2, 3, 4):
        assert rows(got[i]) == rows(shard.search(search(reqs[i], params)))
    assert shard.batcher.callers - callers == 4  # the cancelled one was not searched


def test_a_failing_group_fails_its_callers_only(shard: LocalShard) -> None:
    params = pb.SearchParams()
    good, bad = requests(2, seed=3, people=False)

    async def run() -> list[object]:
        return await asyncio.gather(
            shard.batcher.search(search(good, params), filter_key=b""),
            shard.batcher.search(search(bad, params, field="nope"), filter_key=b""),
            shard.batcher.search(search(bad, params, field="nope"), filter_key=b""),
            return_exceptions=True,
        )

    got = asyncio.run(run())
    assert rows(got[0]) == rows(shard.search(search(good, params)))
    assert isinstance(got[1], KeyError) and isinstance(got[2], KeyError)


def test_the_setting_off_searches_each_alone(shard: LocalShard) -> None:
    search_batcher.configure(False, 64)
    params = pb.SearchParams()
    reqs = requests(8, seed=4, people=True)
    groups = shard.batcher.groups
    got = asyncio.run(together(shard, reqs, params))
    assert shard.batcher.groups == groups  # no group ran
    for r, found in zip(reqs, got, strict=True):
        assert rows(found) == rows(shard.search(search(r, params)))
