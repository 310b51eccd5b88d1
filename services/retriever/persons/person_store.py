"""Persons, reference faces and identification settings of one collection, in SQLite.

SQLite because this is small relational state that must survive kill -9 exactly: a person
and its references change together in one transaction (WAL journal, synchronous=FULL), and
reads never see half a merge. One file per collection uid, so dropping a collection removes
its persons with it and a re-created collection of the same name starts empty.
Reference vectors are stored with the references: identification never waits on the shards.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS persons (
    person_id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    attributes TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS refs (
    point_id TEXT PRIMARY KEY,
    person_id TEXT NOT NULL REFERENCES persons(person_id) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    added REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS refs_by_person ON refs(person_id);
"""


@dataclass
class PersonRecord:
    person_id: str
    display_name: str
    attributes: dict[str, str] = field(default_factory=dict)
    reference_ids: list[str] = field(default_factory=list)
    created: float = 0.0
    updated: float = 0.0


@dataclass(frozen=True)
class References:
    """Every reference of the collection: ids, owning person and unit vectors (rows)."""

    point_ids: list[str]
    person_ids: list[str]
    vectors: np.ndarray


class PersonStore:
    """Thread-safe (one connection behind a lock); call it from worker threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        # Bumped on every change, so a cached reference index knows when it is stale.
        self.version = 0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self.version += 1

    # ---- settings ---------------------------------------------------------------------
    def get_setting(self, key: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def put_setting(self, key: str, value: bytes) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO settings(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # ---- persons ----------------------------------------------------------------------
    def _record(self, db: sqlite3.Connection, row: tuple) -> PersonRecord:  # type: ignore[type-arg]
        pid, name, attrs, created, updated = row
        refs = [
            r[0]
            for r in db.execute(
                "SELECT point_id FROM refs WHERE person_id = ? ORDER BY added, point_id", (pid,)
            )
        ]
        return PersonRecord(pid, name, json.loads(attrs), refs, created, updated)

    def get(self, person_id: str) -> PersonRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT person_id, display_name, attributes, created, updated FROM persons "
                "WHERE person_id = ?",
                (person_id,),
            ).fetchone()
            return None if row is None else self._record(self._db, row)

    def list(self, after: str, limit: int) -> list[PersonRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT person_id, display_name, attributes, created, updated FROM persons "
                "WHERE person_id > ? ORDER BY person_id LIMIT ?",
                (after, limit),
            ).fetchall()
            return [self._record(self._db, r) for r in rows]

    def count(self) -> tuple[int, int]:
        """(persons, references)."""
        with self._lock:
            persons = self._db.execute("SELECT COUNT(*) FROM persons").fetchone()[0]
            refs = self._db.execute("SELECT COUNT(*) FROM refs").fetchone()[0]
        return int(persons), int(refs)

    def owner_of(self, point_ids: list[str]) -> dict[str, str]:
        """point id -> person, for the given ids that are references."""
        out: dict[str, str] = {}
        with self._lock:
            for pid in point_ids:
                row = self._db.execute(
                    "SELECT person_id FROM refs WHERE point_id = ?", (pid,)
                ).fetchone()
                if row is not None:
                    out[pid] = row[0]
        return out

    def create(self, person: PersonRecord, vectors: dict[str, np.ndarray]) -> PersonRecord:
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO persons VALUES (?, ?, ?, ?, ?)",
                (person.person_id, person.display_name, json.dumps(person.attributes), now, now),
            )
            self._insert_refs(db, person.person_id, vectors, now)
        created = self.get(person.person_id)
        assert created is not None
        return created

    @staticmethod
    def _insert_refs(
        db: sqlite3.Connection, person_id: str, vectors: dict[str, np.ndarray], now: float
    ) -> None:
        for point_id, vec in vectors.items():
            db.execute(
                "INSERT INTO refs VALUES (?, ?, ?, ?)",
                (point_id, person_id, np.asarray(vec, np.float32).tobytes(), now),
            )

    def add_references(self, person_id: str, vectors: dict[str, np.ndarray]) -> None:
        now = time.time()
        with self._tx() as db:
            fresh = {
                k: v
                for k, v in vectors.items()
                if db.execute("SELECT 1 FROM refs WHERE point_id = ?", (k,)).fetchone() is None
            }
            self._insert_refs(db, person_id, fresh, now)
            db.execute("UPDATE persons SET updated = ? WHERE person_id = ?", (now, person_id))

    def remove_references(self, point_ids: list[str]) -> None:
        """Forget references whose faces were deleted from the collection."""
        with self._tx() as db:
            db.executemany("DELETE FROM refs WHERE point_id = ?", [(p,) for p in point_ids])

    def update(
        self, person_id: str, display_name: str | None, set_attrs: dict[str, str], drop: list[str]
    ) -> None:
        with self._tx() as db:
            row = db.execute(
                "SELECT display_name, attributes FROM persons WHERE person_id = ?", (person_id,)
            ).fetchone()
            attrs = json.loads(row[1])
            attrs.update(set_attrs)
            for key in drop:
                attrs.pop(key, None)
            db.execute(
                "UPDATE persons SET display_name = ?, attributes = ?, updated = ? "
                "WHERE person_id = ?",
                (
                    row[0] if display_name is None else display_name,
                    json.dumps(attrs),
                    time.time(),
                    person_id,
                ),
            )

    def merge(self, source: str, target: str) -> None:
        with self._tx() as db:
            src = json.loads(
                db.execute(
                    "SELECT attributes FROM persons WHERE person_id = ?", (source,)
                ).fetchone()[0]
            )
            tgt = json.loads(
                db.execute(
                    "SELECT attributes FROM persons WHERE person_id = ?", (target,)
                ).fetchone()[0]
            )
            db.execute("UPDATE refs SET person_id = ? WHERE person_id = ?", (target, source))
            db.execute(
                "UPDATE persons SET attributes = ?, updated = ? WHERE person_id = ?",
                (json.dumps({**src, **tgt}), time.time(), target),
            )
            db.execute("DELETE FROM persons WHERE person_id = ?", (source,))

    def split(self, person_id: str, new: PersonRecord, moved_refs: list[str]) -> None:
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO persons VALUES (?, ?, ?, ?, ?)",
                (new.person_id, new.display_name, json.dumps(new.attributes), now, now),
            )
            db.executemany(
                "UPDATE refs SET person_id = ? WHERE point_id = ? AND person_id = ?",
                [(new.person_id, r, person_id) for r in moved_refs],
            )
            db.execute("UPDATE persons SET updated = ? WHERE person_id = ?", (now, person_id))

    def delete(self, person_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM persons WHERE person_id = ?", (person_id,))

    def references(self) -> References:
        with self._lock:
            rows = self._db.execute(
                "SELECT point_id, person_id, vector FROM refs ORDER BY person_id, point_id"
            ).fetchall()
        if not rows:
            return References([], [], np.zeros((0, 0), np.float32))
        vectors = np.stack([np.frombuffer(r[2], np.float32) for r in rows])
        return References([r[0] for r in rows], [r[1] for r in rows], vectors)
