"""The shards a shard server holds for routers, addressed by (router's collection uid, shard
number): ``<data_dir>/shards/<uid>/shard-NNN/``, each with its vector field specs beside its
log and snapshots (``fields.pb``), so it reopens after a restart without the router.

Opened lazily: the first call naming a shard opens it from disk, so a shard server that
restarted serves its shards again without a router having to re-open them. Kept apart from the
server's own catalog (``<data_dir>/collections``), whose start-up removes unknown directories.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever.shard import LocalShard
from facesearch_server.retriever.wal import disk_error, fsync_dir, make_dirs
from facesearch_server.runtime.errors import NotFound

log = logging.getLogger("facesearch.retriever.shard_host")

FIELDS_FILE = "fields.pb"
Key = tuple[str, int]  # (collection uid, shard number)


class ShardHost:
    def __init__(
        self, root: Path, on_build: Callable[[LocalShard, str], None] | None = None
    ) -> None:
        self.root = root
        self.on_build = on_build
        self.shards: dict[Key, LocalShard] = {}
        # Opening, creating and dropping are serialised: two first calls must not open the
        # same files twice, and a drop must not race a re-open.
        self._lock = asyncio.Lock()

    def directory(self, key: Key) -> Path:
        return self.root / key[0] / f"shard-{key[1]:03d}"

    @staticmethod
    def _read_fields(d: Path) -> list[pb.VectorFieldSpec] | None:
        path = d / FIELDS_FILE
        if not path.exists():
            return None  # never created, or a create that crashed before its specs were saved
        spec = pb.CreateCollectionRequest()
        spec.ParseFromString(path.read_bytes())
        return list(spec.vector_fields)

    @staticmethod
    def _write_fields(d: Path, fields: list[pb.VectorFieldSpec]) -> None:
        make_dirs(d)
        tmp = d / (FIELDS_FILE + ".tmp")
        with open(tmp, "wb") as f:
            f.write(pb.CreateCollectionRequest(vector_fields=fields).SerializeToString())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, d / FIELDS_FILE)
        fsync_dir(d)

    def _open(self, key: Key, fields: list[pb.VectorFieldSpec] | None) -> LocalShard | None:
        """Runs in a worker thread. ``fields`` set: create when absent."""
        d = self.directory(key)
        saved = self._read_fields(d)
        if saved is None:
            if fields is None:
                return None
            shutil.rmtree(d, ignore_errors=True)  # leftovers of a crashed create
            try:
                self._write_fields(d, fields)
            except OSError as exc:
                raise disk_error("a new shard", exc) from exc
            saved = fields
        shard = LocalShard(d, saved, self.on_build)
        shard.resume_builds()  # owed purges, a replayed delta, or an index the snapshot lacks
        return shard

    async def open(
        self, key: Key, create_with: list[pb.VectorFieldSpec] | None = None
    ) -> LocalShard:
        """The shard, opened from disk if need be; with ``create_with``, created when absent.
        NotFound when this server does not hold it."""
        shard = self.shards.get(key)
        if shard is not None:
            return shard
        async with self._lock:
            shard = self.shards.get(key)
            if shard is None:
                shard = await asyncio.to_thread(self._open, key, create_with)
                if shard is None:
                    raise NotFound(
                        f"shard {key[1]} of collection uid {key[0]!r} is not held by this shard "
                        "server (never created here, or dropped)"
                    )
                self.shards[key] = shard
            return shard

    async def add_field(self, key: Key, spec: pb.VectorFieldSpec) -> bool:
        """Add a vector field to a shard (AddShardField), its fields.pb rewritten first so a
        restart reopens the shard with it. NotFound when this server does not hold it."""
        shard = await self.open(key)
        d = self.directory(key)

        def persist(fields: list[pb.VectorFieldSpec]) -> None:
            try:
                self._write_fields(d, fields)
            except OSError as exc:
                raise disk_error("a new vector field", exc, "nothing was added") from exc

        async with self._lock:  # not while the shard is being dropped
            if self.shards.get(key) is not shard:
                raise NotFound(f"shard {key[1]} of collection uid {key[0]!r} was just dropped")
            return await asyncio.to_thread(shard.add_field, spec, persist)

    async def drop(self, key: Key) -> None:
        async with self._lock:
            shard = self.shards.pop(key, None)
            d = self.directory(key)
            if shard is None and not d.exists():
                raise NotFound(f"shard {key[1]} of collection uid {key[0]!r} is not held here")
            if shard is not None:
                await asyncio.to_thread(shard.destroy)
            await asyncio.to_thread(shutil.rmtree, d, True)
            parent = d.parent
            if parent.exists() and not any(parent.iterdir()):
                parent.rmdir()
            log.info("shard dropped", extra={"uid": key[0], "shard": key[1]})

    def held(self) -> list[Key]:
        """Every shard on disk (open or not), by uid then number."""
        out: set[Key] = set(self.shards)
        if self.root.exists():
            for uid_dir in self.root.iterdir():
                for d in uid_dir.glob("shard-*"):
                    if (d / FIELDS_FILE).exists() and d.name[6:].isdigit():
                        out.add((uid_dir.name, int(d.name[6:])))
        return sorted(out)

    async def snapshot_loop(self, interval_s: float, min_entries: int) -> None:
        """Snapshot every open shard whose log has grown, so restarts replay little."""
        while True:
            await asyncio.sleep(interval_s)
            for shard in list(self.shards.values()):
                if shard.wal.entries >= min_entries:
                    try:
                        await asyncio.to_thread(shard.snapshot)
                    except Exception:
                        log.exception("background snapshot failed")

    async def close(self) -> None:
        async with self._lock:
            for shard in self.shards.values():
                await asyncio.to_thread(shard.close)
            self.shards.clear()
