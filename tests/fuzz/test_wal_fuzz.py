"""The write-ahead log after a crash: whatever happened to the tail of its newest segment (cut
anywhere, bytes overwritten, garbage or a partial entry appended), a new WriteAheadLog opens and
replays without error, recovers every entry written in full before the first damaged byte, in
order, and nothing after it; and the next append follows on, so a second restart reads the
recovered entries plus the new one."""

from __future__ import annotations

import struct
import tempfile
import zlib
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from facesearch_server.retriever.wal import WriteAheadLog

from .conftest import fuzz

pytestmark = pytest.mark.slow
# In memory where there is /dev/shm: the log fsyncs, and a thousand logs need not reach a disk.
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None


def entry_bytes(seq: int, op: int, payload: bytes) -> bytes:
    """An entry as wal.py writes it (<length><crc32><seq><op><payload>): the format, restated."""
    body = struct.pack("<QB", seq, op) + payload
    return struct.pack("<II", len(payload), zlib.crc32(body)) + body


def replayed(directory: Path) -> tuple[WriteAheadLog, list[tuple[int, int, bytes]]]:
    wal = WriteAheadLog(directory)
    return wal, list(wal.replay(0))


@st.composite
def damage(draw: st.DrawFn, size: int, start: int) -> tuple[str, int, bytes]:
    """What a crash or a bad disk left at the end of the newest segment: (kind, offset, bytes)."""
    kind = draw(st.sampled_from(["cut", "overwrite", "append", "partial", "zeros"]))
    offset = draw(st.integers(start, size))
    if kind == "overwrite":
        offset = draw(st.integers(start, max(start, size - 1)))
        return kind, offset, draw(st.binary(min_size=1, max_size=24))
    if kind in ("append", "zeros"):
        n = draw(st.integers(1, 64))
        return kind, size, bytes(n) if kind == "zeros" else draw(st.binary(min_size=1, max_size=n))
    if kind == "partial":  # the next entry, cut short mid-write
        nxt = entry_bytes(10**6, 1, draw(st.binary(max_size=40)))
        return kind, size, nxt[: draw(st.integers(1, len(nxt) - 1))]
    return kind, offset, b""


@fuzz(1000)
@given(
    payloads=st.lists(st.binary(max_size=48), min_size=1, max_size=12),
    rotate_at=st.integers(0, 12),
    data=st.data(),
)
def test_a_damaged_tail_loses_only_what_follows_the_damage(
    payloads: list[bytes], rotate_at: int, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        directory = Path(tmp)
        wal = WriteAheadLog(directory)
        list(wal.replay(0))
        written = []
        for i, payload in enumerate(payloads):
            if i == rotate_at and i:
                wal.rotate()  # older entries in a segment of their own, left intact
            written.append((wal.append(1 + i % 2, payload, durable=False), 1 + i % 2, payload))
        wal.close()
        newest = sorted(directory.glob("wal-*.log"))[-1]
        raw = newest.read_bytes()
        first_here = rotate_at if 0 < rotate_at < len(payloads) else 0
        ends, pos = [], 0  # where each entry of the newest segment ends
        for seq, op, payload in written[first_here:]:
            pos += len(entry_bytes(seq, op, payload))
            ends.append(pos)
        assert pos == len(raw)

        kind, offset, chunk = data.draw(damage(len(raw), 0))
        event(f"damage: {kind}")
        if kind == "cut":
            damaged = raw[:offset]
        elif kind == "overwrite":
            damaged = raw[:offset] + chunk + raw[offset + len(chunk) :]
            # Bytes overwritten with themselves are no damage: find the first that differs.
            same = next((i for i, b in enumerate(chunk) if offset + i >= len(raw) or
                         raw[offset + i] != b), len(chunk))  # fmt: skip
            offset = offset + same if same < len(chunk) else len(damaged)
        else:
            damaged = raw + chunk
        newest.write_bytes(damaged)

        intact = sum(1 for end in ends if end <= offset)
        expected = written[: first_here + intact]
        wal, got = replayed(directory)
        assert got == expected
        event(f"entries lost: {len(written) - len(expected)}")
        seq = wal.append(2, b"after the crash")
        wal.close()
        assert seq == (expected[-1][0] if expected else 0) + 1
        _, again = replayed(directory)
        assert again == [*expected, (seq, 2, b"after the crash")]
