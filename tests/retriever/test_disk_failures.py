"""A disk that refuses writes (full, failing): the log stays replayable, nothing half-done is
acknowledged, the catalog never gets ahead of its file, and new directories are fsynced.

The failures are injected by replacing ``os.write`` / ``os.fdatasync`` / ``os.ftruncate`` (or the
catalog's file write) for one call on a real log or catalog in a temporary directory: a full
disk cannot be produced here on demand.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import wal as wal_module
from facesearch_server.retriever.catalog import Catalog
from facesearch_server.retriever.collection import Limits
from facesearch_server.retriever.shard import LocalShard
from facesearch_server.retriever.shard_factories import local_factory
from facesearch_server.retriever.shard_router import CallBudget
from facesearch_server.retriever.validation import check_create
from facesearch_server.retriever.wal import OP_UPSERT, WriteAheadLog
from facesearch_server.runtime.errors import ResourceExhausted, Unavailable
from tests.retriever.conftest import DIM, MODEL, point, unit

SPEC = pb.VectorFieldSpec(name="face", dimension=DIM, model_id=MODEL)


@contextmanager
def patched(name: str, fake: Any) -> Iterator[None]:
    """``os.<name>`` replaced for the duration of one append (and nothing else)."""
    real = getattr(os, name)
    setattr(os, name, fake)
    try:
        yield
    finally:
        setattr(os, name, real)


def short_then_full(real_write: Any) -> Any:
    """Writes half of the first buffer it is given, then reports a full disk."""
    calls = {"n": 0}

    def fake(fd: int, data: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    return fake


def payloads(directory: Path) -> list[tuple[int, bytes]]:
    return [(s, p) for s, _o, p in WriteAheadLog(directory).replay(0)]


def opened(directory: Path) -> WriteAheadLog:
    w = WriteAheadLog(directory)
    list(w.replay(0))
    w.append(OP_UPSERT, b"one")
    w.append(OP_UPSERT, b"two")
    return w


def test_short_write_on_a_full_disk_is_refused_and_later_writes_replay(tmp_path: Path) -> None:
    w = opened(tmp_path)
    with patched("write", short_then_full(os.write)), pytest.raises(ResourceExhausted) as err:
        w.append(OP_UPSERT, b"torn" * 100)
    assert "disk" in str(err.value)
    assert w.append(OP_UPSERT, b"after") == 3  # the refused entry's sequence is not burnt
    w.close()
    assert payloads(tmp_path) == [(1, b"one"), (2, b"two"), (3, b"after")]


def test_failed_fsync_removes_the_entry_so_its_sequence_is_not_reused(tmp_path: Path) -> None:
    w = opened(tmp_path)

    def eio(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    with patched("fdatasync", eio), pytest.raises(Unavailable):
        w.append(OP_UPSERT, b"unsynced")
    assert w.append(OP_UPSERT, b"after") == 3
    w.close()
    assert payloads(tmp_path) == [(1, b"one"), (2, b"two"), (3, b"after")]


def test_log_that_cannot_be_repaired_refuses_writes(tmp_path: Path) -> None:
    w = opened(tmp_path)

    def stuck(fd: int, length: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    with patched("write", short_then_full(os.write)), patched("ftruncate", stuck):
        with pytest.raises(Unavailable):
            w.append(OP_UPSERT, b"torn" * 100)
    with pytest.raises(Unavailable) as err:
        w.append(OP_UPSERT, b"after damage")  # would land behind the torn entry
    assert "read-only" in str(err.value)
    w.close()
    assert payloads(tmp_path) == [(1, b"one"), (2, b"two")]  # replay cuts the torn tail


def test_shard_stores_nothing_when_its_log_write_fails(tmp_path: Path) -> None:
    shard = LocalShard(tmp_path / "s", [SPEC])
    x = unit(np.random.default_rng(0), 2)
    shard.upsert([point("a", x[0])])
    with patched("write", short_then_full(os.write)), pytest.raises(ResourceExhausted):
        shard.upsert([point("b", x[1])])
    assert shard.count() == 1 and not shard.get(["b"], False)
    shard.upsert([point("c", x[1])])
    shard.close()
    again = LocalShard(tmp_path / "s", [SPEC])
    assert sorted(p.id for p in again.get(["a", "b", "c"], False)) == ["a", "c"]
    again.close()


def test_new_shard_directories_are_fsynced_into_their_parents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[Path] = []
    real = wal_module.fsync_dir
    monkeypatch.setattr(wal_module, "fsync_dir", lambda p: (synced.append(Path(p)), real(p)))
    (tmp_path / "data").mkdir()
    shard_dir = tmp_path / "data" / "collections" / "uid1" / "shard-000"
    LocalShard(shard_dir, [SPEC]).close()
    # Each new directory's entry is made durable in its parent: collections/, the collection,
    # the shard, and the shard's wal/.
    for parent in (tmp_path / "data", shard_dir.parent.parent, shard_dir.parent, shard_dir):
        assert parent in synced, parent


def _upsert_req(name: str, pid: str, vec: np.ndarray, **meta: Any) -> pb.UpsertRequest:
    return pb.UpsertRequest(collection=name, points=[point(pid, vec, **meta)])


def test_catalog_changes_nothing_in_memory_when_its_file_write_fails(tmp_path: Path) -> None:
    async def scenario() -> None:
        cat = Catalog(tmp_path, local_factory(tmp_path))
        await cat.load()
        b = CallBudget()
        real_write = cat._write

        def full(*_doc: Any) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        spec = check_create(
            pb.CreateCollectionRequest(name="faces", shard_count=1, vector_fields=[SPEC]), None
        )
        cat._write = full  # type: ignore[method-assign]
        with pytest.raises(ResourceExhausted):
            await cat.create("t", spec, b)
        assert "faces" not in cat.space("t").collections
        assert not list((tmp_path / "collections").iterdir())  # its shard files are removed

        cat._write = real_write  # type: ignore[method-assign]
        coll = await cat.create("t", spec, b)
        x = unit(np.random.default_rng(1), 2)
        await coll.upsert(_upsert_req("faces", "a", x[0]), Limits(), b)

        cat._write = full  # type: ignore[method-assign]
        # A new metadata field needs a catalog write first; the record is not stored without it.
        with pytest.raises(ResourceExhausted):
            await coll.upsert(_upsert_req("faces", "b", x[1], team="red"), Limits(), b)
        assert "team" not in coll.schema
        assert [p.id for p in await coll.shards.get(["a", "b"], False, b)] == ["a"]
        with pytest.raises(ResourceExhausted):
            await cat.set_alias("t", "live", "faces")
        assert "live" not in cat.space("t").aliases
        with pytest.raises(ResourceExhausted):
            await cat.drop("t", "faces", False, b)
        assert cat.resolve("t", "faces") is coll

        cat._write = real_write  # type: ignore[method-assign]
        await coll.upsert(_upsert_req("faces", "b", x[1], team="red"), Limits(), b)
        await cat.close()

        again = Catalog(tmp_path, local_factory(tmp_path))
        await again.load()  # the collection survived (no orphan clean-up of its data)
        kept = again.resolve("t", "faces")
        assert kept.schema["team"] == coll.schema["team"]
        assert sorted(p.id for p in await kept.shards.get(["a", "b"], False, b)) == ["a", "b"]
        await again.close()

    asyncio.run(scenario())
