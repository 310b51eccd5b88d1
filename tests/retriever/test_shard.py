"""One shard in-process: the person / media index stays in step with replaces, deletes,
snapshots and log replay (a stale entry would make "forget this person" miss faces)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever.filters import compile_filter
from facesearch_server.retriever.records import BUILTIN_FIELDS
from facesearch_server.retriever.shard import LocalShard
from facesearch_server.retriever.shard_search import FieldSearch
from tests.retriever.conftest import DIM, MODEL, point, unit


def person(pid: str):  # type: ignore[no-untyped-def]
    flt = cpb.Filter(
        must=[cpb.FieldCondition(field="person_id", equals=cpb.MetadataValue(string_value=pid))]
    )
    return compile_filter(flt, BUILTIN_FIELDS)


def faces_of(shard: LocalShard, pid: str) -> list[str]:
    return sorted(p.id for p in shard.get_matching(person(pid), "", 100))


def test_person_index_follows_replaces_deletes_and_restarts(tmp_path: Path) -> None:
    spec = pb.VectorFieldSpec(name="face", dimension=DIM, model_id=MODEL)
    x = unit(np.random.default_rng(1), 6)
    shard = LocalShard(tmp_path / "s", [spec])
    shard.upsert([point(f"a{i}", x[i], person_id="ann" if i < 3 else "bob") for i in range(6)])
    assert faces_of(shard, "ann") == ["a0", "a1", "a2"]
    shard.upsert([point("a1", x[1], person_id="bob")])  # moved to another person
    assert faces_of(shard, "ann") == ["a0", "a2"]
    assert faces_of(shard, "bob") == ["a1", "a3", "a4", "a5"]
    shard.snapshot()
    assert shard.delete_matching(person("ann")) == 2
    shard.upsert([point("a9", x[0], person_id="cy")])
    shard.close()

    again = LocalShard(tmp_path / "s", [spec])  # snapshot + replayed log
    assert faces_of(again, "ann") == []
    assert faces_of(again, "cy") == ["a9"]
    rows = again.search(
        FieldSearch("face", x[:1], 6, person("bob"), [], pb.SearchParams(), False, False)
    )
    assert sorted(p.id for _s, p in rows[0]) == ["a1", "a3", "a4", "a5"]
    # A negated condition cannot use the index and still filters correctly.
    not_bob = cpb.Filter(
        must=[
            cpb.FieldCondition(
                field="person_id", equals=cpb.MetadataValue(string_value="bob"), negate=True
            )
        ]
    )
    pred = compile_filter(not_bob, BUILTIN_FIELDS)
    assert sorted(p.id for p in again.get_matching(pred, "", 100)) == ["a9"]
    again.close()


def test_drop_during_a_background_snapshot_leaves_no_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot that was already writing when its collection is dropped must not recreate
    the shard directory after the drop removed it."""
    from facesearch_server.retriever import snapshot as snapshot_module

    shard = LocalShard(tmp_path / "s", [pb.VectorFieldSpec(name="face", dimension=DIM)])
    shard.upsert([point("a", unit(np.random.default_rng(2), 1)[0])])
    entered, release = threading.Event(), threading.Event()
    real_write = snapshot_module.write

    def slow_write(shard_dir: Path, state: snapshot_module.SnapshotState) -> Path:
        entered.set()
        release.wait(10)
        return real_write(shard_dir, state)

    monkeypatch.setattr(snapshot_module, "write", slow_write)
    errors: list[BaseException] = []

    def snap() -> None:
        try:
            shard.snapshot()
        except BaseException as exc:  # a failed snapshot is fine here; a resurrected dir is not
            errors.append(exc)

    t_snap = threading.Thread(target=snap)
    t_snap.start()
    assert entered.wait(10)
    t_drop = threading.Thread(target=shard.destroy)
    t_drop.start()
    time.sleep(0.2)
    release.set()
    t_snap.join(10)
    t_drop.join(10)
    assert not t_snap.is_alive() and not t_drop.is_alive()
    assert not (tmp_path / "s").exists()
    shard.snapshot()  # a late periodic snapshot of the closed shard is a no-op
    assert not (tmp_path / "s").exists()
