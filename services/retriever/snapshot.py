"""Atomic on-disk snapshots of one shard: records, exact vectors and built indexes.

A snapshot is written into ``snapshot-<seq>.tmp/``, every file fsynced, then the directory is
renamed to ``snapshot-<seq>/`` and the parent fsynced: a directory without ``.tmp`` is complete
by construction, and start-up takes the one with the highest sequence. Older snapshots and
stray ``.tmp`` directories (a crash mid-write) are deleted. A snapshot rewritten at the same
sequence (a purge rebuild changed the index, not the log) gets a ``-NNNNNN`` suffix that sorts
after the one it replaces.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import index_tuning
from facesearch_server.retriever.wal import fsync_dir


@dataclass
class SavedAnn:
    """A built approximate index as a snapshot holds it."""

    blob: np.ndarray  # faiss.serialize_index
    covered: np.ndarray  # int64 labels it holds
    nlist: int
    build_seconds: float
    tuning: index_tuning.Tuning | None
    # Deleted labels the index still holds, owed a purge rebuild (empty in older snapshots).
    purge: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    built_n: int = 0  # vectors its last full build saw (0: as many as ``covered``)


@dataclass
class SnapshotState:
    seq: int
    next_label: int
    labels: np.ndarray  # int64, aligned with points
    points: pb.GetResponse  # id + metadata of every live record
    flat: dict[str, np.ndarray]  # field -> faiss.serialize_index of the exact index
    ann: dict[str, SavedAnn] = field(default_factory=dict)
    created: float = 0.0


def _write(path: Path, data: bytes | np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.tobytes())
        f.flush()
        os.fsync(f.fileno())


def _name(shard_dir: Path, seq: int) -> str:
    """``snapshot-<seq>``, or with the next suffix when that sequence is on disk already."""
    base = f"snapshot-{seq:020d}"
    taken = [p.name for p in shard_dir.glob(base + "*") if not p.name.endswith(".tmp")]
    if not taken:
        return base
    return f"{base}-{max(int(n[len(base) + 1 :] or 0) for n in taken) + 1:06d}"


def write(shard_dir: Path, state: SnapshotState) -> Path:
    final = shard_dir / _name(shard_dir, state.seq)
    tmp = shard_dir / f"{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()  # never parents: a shard directory removed by a drop must stay removed
    _write(tmp / "labels.i64", state.labels.astype(np.int64))
    _write(tmp / "points.pb", state.points.SerializeToString())
    for name, blob in state.flat.items():
        _write(tmp / f"flat-{name}.faiss", blob)
    for name, saved in state.ann.items():
        _write(tmp / f"ann-{name}.faiss", saved.blob)
        _write(tmp / f"covered-{name}.i64", saved.covered.astype(np.int64))
        _write(tmp / f"purge-{name}.i64", saved.purge.astype(np.int64))
    manifest = {
        "seq": state.seq,
        "next_label": state.next_label,
        "created": state.created or time.time(),
        "flat": sorted(state.flat),
        "ann": {
            k: {
                "nlist": v.nlist,
                "build_seconds": v.build_seconds,
                "tuning": dataclasses.asdict(v.tuning) if v.tuning else None,
                "built_n": v.built_n,
            }
            for k, v in state.ann.items()
        },
    }
    _write(tmp / "manifest.json", json.dumps(manifest).encode())
    fsync_dir(tmp)
    os.rename(tmp, final)
    fsync_dir(shard_dir)
    for old in shard_dir.glob("snapshot-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest(shard_dir: Path) -> Path | None:
    done = sorted(p for p in shard_dir.glob("snapshot-*") if not p.name.endswith(".tmp"))
    for p in shard_dir.glob("snapshot-*.tmp"):
        shutil.rmtree(p, ignore_errors=True)
    return done[-1] if done else None


def load(path: Path) -> SnapshotState:
    manifest = json.loads((path / "manifest.json").read_text())
    points = pb.GetResponse()
    points.ParseFromString((path / "points.pb").read_bytes())
    labels = np.fromfile(path / "labels.i64", dtype=np.int64)
    flat = {n: np.fromfile(path / f"flat-{n}.faiss", dtype=np.uint8) for n in manifest["flat"]}
    ann = {
        n: SavedAnn(
            np.fromfile(path / f"ann-{n}.faiss", dtype=np.uint8),
            np.fromfile(path / f"covered-{n}.i64", dtype=np.int64),
            int(info["nlist"]),
            float(info["build_seconds"]),
            index_tuning.Tuning(**info["tuning"]) if info.get("tuning") else None,
            _labels(path / f"purge-{n}.i64"),
            int(info.get("built_n", 0)),
        )
        for n, info in manifest["ann"].items()
    }
    return SnapshotState(
        seq=int(manifest["seq"]),
        next_label=int(manifest["next_label"]),
        labels=labels,
        points=points,
        flat=flat,
        ann=ann,
        created=float(manifest["created"]),
    )


def _labels(path: Path) -> np.ndarray:
    if not path.exists():  # written before purges were kept
        return np.empty(0, dtype=np.int64)
    return np.fromfile(path, dtype=np.int64)


def deserialize(blob: np.ndarray) -> faiss.Index:
    return faiss.deserialize_index(blob)


def disk_bytes(shard_dir: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(shard_dir):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                continue
    return total
