"""Append-only write-ahead log of one shard, in segments.

Each entry is ``<length u32><crc32 u32><seq u64><op u8><payload>``; the CRC covers seq, op and
payload, so a torn write at the tail (kill -9 mid-append) is recognised and cut off at replay:
an entry that was cut was never acknowledged, because acknowledgement waits for the fsync.
An append the disk refuses (short write, failed fsync) is cut back off before the error is
returned, so no later entry ever sits behind a torn one where replay would not reach it.

Segments (``wal-<first seq>.log``) make truncation after a snapshot a file deletion: a snapshot
rotates to a new segment under the shard's write lock, and once the snapshot is on disk every
older segment is deleted.
"""

from __future__ import annotations

import errno
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

from facesearch_server.runtime.errors import (
    FailedPrecondition,
    ResourceExhausted,
    ServiceError,
    Unavailable,
)

_HEADER = struct.Struct("<IIQB")
OP_UPSERT = 1
OP_DELETE = 2
# Vectors added to stored points (UpsertRequest.mode ADD_VECTORS); payload an UpsertRequest.
OP_ADD_VECTORS = 3


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """``mkdir -p`` that also fsyncs the parent of every directory it created: without that a
    crash can lose a new collection's directories (and the acknowledged log inside them)."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    for d in reversed(missing):
        fsync_dir(d.parent)


def disk_error(what: str, exc: OSError, outcome: str = "nothing was stored") -> ServiceError:
    """The status a refused disk write maps to: full disk or quota -> RESOURCE_EXHAUSTED (free
    space); a directory that is read-only or gone -> FAILED_PRECONDITION (a retry cannot help
    until an operator fixes it); anything else -> UNAVAILABLE (retry, or move the shard)."""
    why = f"the disk refused {what}: {exc.strerror or exc}; {outcome}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ResourceExhausted(f"{why}. Free disk space, then retry")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT):
        where = f" (at {exc.filename})" if exc.filename else ""
        return FailedPrecondition(
            f"{why}. The data directory is not writable{where}: check that it exists, its "
            "permissions, and that its disk is mounted read-write"
        )
    return Unavailable(f"{why}. Retry")


class WriteAheadLog:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        make_dirs(self.dir)
        # Set when a failed append could not be cut back off: appending after the damaged tail
        # would put acknowledged entries where replay never reaches, so writes are refused.
        self.broken: str | None = None
        self._fd: int | None = None
        self._path: Path | None = None
        self.last_seq = 0
        # Entries in segments a snapshot has not covered yet (reported by describe).
        self.entries = 0
        self.bytes = 0

    def _segments(self) -> list[tuple[int, Path]]:
        out = []
        for p in self.dir.glob("wal-*.log"):
            try:
                out.append((int(p.stem[4:]), p))
            except ValueError:
                continue
        return sorted(out)

    def replay(self, after_seq: int) -> Iterator[tuple[int, int, bytes]]:
        """(seq, op, payload) of every intact entry after ``after_seq``, oldest first.

        Call once, before the first append. A torn tail is truncated away so later appends
        follow the last intact entry.
        """
        self.last_seq = after_seq
        for _first, path in self._segments():
            data = path.read_bytes()
            pos = 0
            while pos + _HEADER.size <= len(data):
                length, crc, seq, op = _HEADER.unpack_from(data, pos)
                end = pos + _HEADER.size + length
                if end > len(data):
                    break
                payload = data[pos + _HEADER.size : end]
                if zlib.crc32(data[pos + 8 : end]) != crc:
                    break
                pos = end
                if seq > after_seq:
                    self.last_seq = max(self.last_seq, seq)
                    self.entries += 1
                    yield seq, op, payload
            if pos < len(data):
                # Only the newest segment can have a torn tail; cutting it keeps appends
                # contiguous with the entries that were acknowledged.
                with open(path, "r+b") as f:
                    f.truncate(pos)
                    os.fsync(f.fileno())
            self.bytes += pos

    def _open(self) -> int:
        if self._fd is None:
            segs = self._segments()
            path = segs[-1][1] if segs else self.dir / f"wal-{self.last_seq + 1:020d}.log"
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._path = path
            if not segs:
                fsync_dir(self.dir)
        return self._fd

    def append(self, op: int, payload: bytes, durable: bool = True) -> int:
        """Write one entry (and fsync it when ``durable``); all or nothing.

        A short write or a failed fsync (disk full, I/O error) is cut back off before the error
        is raised, so the sequence is not reused and later entries never follow a torn one.
        """
        if self.broken is not None:
            raise Unavailable(
                f"this shard is read-only: {self.broken}. Restart the retriever once the disk "
                "is healthy; acknowledged writes are kept"
            )
        try:
            fd = self._open()
            start = os.lseek(fd, 0, os.SEEK_END)
        except OSError as exc:
            raise disk_error("a write-ahead log entry", exc) from exc
        seq = self.last_seq + 1
        body = struct.pack("<QB", seq, op) + payload
        entry = struct.pack("<II", len(payload), zlib.crc32(body)) + body
        try:
            view = memoryview(entry)
            done = 0
            while done < len(entry):
                n = os.write(fd, view[done:])
                if n <= 0:
                    raise OSError(errno.ENOSPC, "write stored no bytes")
                done += n
            if durable:
                os.fdatasync(fd)
        except OSError as exc:
            self._cut_back(fd, start, exc)
            raise disk_error("a write-ahead log entry", exc) from exc
        self.last_seq = seq
        self.entries += 1
        self.bytes += len(entry)
        return seq

    def _cut_back(self, fd: int, start: int, cause: OSError) -> None:
        try:
            os.ftruncate(fd, start)
            os.fsync(fd)
        except OSError as exc:
            self.broken = (
                f"a failed log write ({cause.strerror or cause}) could not be undone "
                f"({exc.strerror or exc})"
            )
            raise Unavailable(
                f"the disk refused a write-ahead log entry and the partial entry could not be "
                f"removed ({exc.strerror or exc}); the shard now refuses writes until restarted"
            ) from cause

    def sync(self) -> None:
        if self._fd is not None:
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                raise disk_error(
                    "syncing the write-ahead log",
                    exc,
                    "writes sent with durable=false since the last sync may be lost",
                ) from exc

    def rotate(self) -> None:
        """Start a new segment; the next entry goes there. Caller holds the write lock."""
        self.close()
        path = self.dir / f"wal-{self.last_seq + 1:020d}.log"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._path = path
        fsync_dir(self.dir)

    def drop_through(self, seq: int) -> None:
        """Delete segments whose entries are all covered by a snapshot at ``seq``."""
        segs = self._segments()
        for i, (_first, path) in enumerate(segs):
            nxt = segs[i + 1][0] if i + 1 < len(segs) else None
            if nxt is not None and nxt - 1 <= seq and path != self._path:
                path.unlink(missing_ok=True)
        fsync_dir(self.dir)
        self.entries = max(0, self.last_seq - seq)
        self.bytes = sum(p.stat().st_size for _f, p in self._segments())

    def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
