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
from facesearch_server.runtime.errors import FailedPrecondition, ResourceExhausted, Unavailable
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
        store = cat.store
        real = (store.write_file, store.remove_collection)

        def full(*_args: Any) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        def disk_full(on: bool) -> None:
            """Every catalog file write (and the removal that commits a drop) fails or not."""
            store.write_file, store.remove_collection = (full, full) if on else real  # type: ignore[method-assign]

        spec = check_create(
            pb.CreateCollectionRequest(name="faces", shard_count=1, vector_fields=[SPEC]), None
        )
        disk_full(True)
        with pytest.raises(ResourceExhausted):
            await cat.create("t", spec, b)
        assert "faces" not in cat.space("t").collections
        assert not list((tmp_path / "collections").iterdir())  # its shard files are removed

        disk_full(False)
        coll = await cat.create("t", spec, b)
        x = unit(np.random.default_rng(1), 2)
        await coll.upsert(_upsert_req("faces", "a", x[0]), Limits(), b)

        disk_full(True)
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

        disk_full(False)
        await coll.upsert(_upsert_req("faces", "b", x[1], team="red"), Limits(), b)
        await cat.close()

        again = Catalog(tmp_path, local_factory(tmp_path))
        await again.load()  # the collection survived (no orphan clean-up of its data)
        kept = again.resolve("t", "faces")
        assert kept.schema["team"] == coll.schema["team"]
        assert sorted(p.id for p in await kept.shards.get(["a", "b"], False, b)) == ["a", "b"]
        await again.close()

    asyncio.run(scenario())


# ---- a data directory that is read-only (or gone): a permanent condition, not "retry" -------
#
# Tests may run as root, where chmod does not stop a write, so the refusal is injected at the
# system call, as a read-only mount or a directory without write permission answers it.


def refusing(name: str, real: Any, under: Path, code: int) -> Any:
    """``os.<name>`` that fails with ``code`` for paths under ``under`` (creating or writing
    there), and behaves as usual elsewhere and for reads."""

    def fake(path: Any, *args: Any, **kw: Any) -> Any:
        writes = name != "open" or (args and args[0] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writes and str(path).startswith(str(under)):
            raise OSError(code, os.strerror(code), str(path))
        return real(path, *args, **kw)

    return fake


async def _catalog_with_collection(data: Path) -> Catalog:
    cat = Catalog(data, local_factory(data))
    await cat.load()
    spec = check_create(
        pb.CreateCollectionRequest(name="faces", shard_count=1, vector_fields=[SPEC]), None
    )
    await cat.create("t", spec, CallBudget())
    await cat.close()
    again = Catalog(data, local_factory(data))  # a restart: no log file is open yet
    await again.load()
    return again


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_upsert_into_a_read_only_data_directory_is_failed_precondition(
    tmp_path: Path, code: int
) -> None:
    async def scenario() -> None:
        cat = await _catalog_with_collection(tmp_path)
        coll = cat.resolve("t", "faces")
        b = CallBudget()
        x = unit(np.random.default_rng(2), 1)
        with patched("open", refusing("open", os.open, tmp_path, code)):
            with pytest.raises(FailedPrecondition) as err:
                await coll.upsert(_upsert_req("faces", "a", x[0]), Limits(), b)
        message = str(err.value)
        assert "not writable" in message and str(tmp_path) in message, message
        assert "Retry" not in message, message
        assert not await coll.shards.get(["a"], False, b)
        await coll.upsert(_upsert_req("faces", "a", x[0]), Limits(), b)  # writable again
        await cat.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_create_in_a_read_only_data_directory_is_failed_precondition(
    tmp_path: Path, code: int
) -> None:
    async def scenario() -> None:
        cat = await _catalog_with_collection(tmp_path)
        spec = check_create(
            pb.CreateCollectionRequest(name="more", shard_count=2, vector_fields=[SPEC]), None
        )
        with patched("mkdir", refusing("mkdir", os.mkdir, tmp_path, code)):
            with pytest.raises(FailedPrecondition) as err:
                await cat.create("t", spec, CallBudget())
        message = str(err.value)
        assert "not writable" in message and "nothing was created" in message, message
        assert "more" not in cat.space("t").collections
        assert [d.name for d in (tmp_path / "collections").iterdir()] == [
            cat.resolve("t", "faces").uid
        ]
        await cat.close()

    asyncio.run(scenario())


def test_schema_growth_on_a_read_only_catalog_is_failed_precondition(tmp_path: Path) -> None:
    async def scenario() -> None:
        cat = await _catalog_with_collection(tmp_path)
        coll = cat.resolve("t", "faces")
        b = CallBudget()
        x = unit(np.random.default_rng(3), 1)

        def read_only(path: Path, _doc: Any) -> None:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

        # The collection's catalog file cannot be replaced (its log could be written).
        cat.store.write_file = read_only  # type: ignore[method-assign]
        with pytest.raises(FailedPrecondition) as err:
            await coll.upsert(_upsert_req("faces", "a", x[0], team="red"), Limits(), b)
        assert "not writable" in str(err.value) and "collection.json" in str(err.value)
        assert "team" not in coll.schema
        assert not await coll.shards.get(["a"], False, b)
        await cat.close()

    asyncio.run(scenario())
