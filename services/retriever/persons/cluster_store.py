"""Which cluster each unlabelled face of a collection is in, kept in SQLite beside the persons.

Kept rather than recomputed so cluster ids survive while faces join and leave (a user names
or merges the cluster they listed) and each listing prices only the faces that are new. The
vectors stay in the collection; this file holds only face id -> cluster id.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cluster_faces (
    face_id TEXT PRIMARY KEY,
    cluster_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS faces_by_cluster ON cluster_faces(cluster_id);
"""


class ClusterStore:
    """Thread-safe (one connection behind a lock); call it from worker threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def assignment(self) -> dict[str, str]:
        with self._lock:
            rows = self._db.execute("SELECT face_id, cluster_id FROM cluster_faces").fetchall()
        return {f: c for f, c in rows}

    def apply(self, assign: dict[str, str], remove: list[str], replace_all: bool = False) -> None:
        """Set ``assign`` (face -> cluster) and drop ``remove`` in one transaction;
        ``replace_all`` forgets every earlier assignment first (a recluster)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if replace_all:
                    self._db.execute("DELETE FROM cluster_faces")
                self._db.executemany(
                    "DELETE FROM cluster_faces WHERE face_id = ?", [(f,) for f in remove]
                )
                self._db.executemany(
                    "INSERT INTO cluster_faces(face_id, cluster_id) VALUES (?, ?) "
                    "ON CONFLICT(face_id) DO UPDATE SET cluster_id = excluded.cluster_id",
                    list(assign.items()),
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
