"""What lets a long ``reembed_collection`` run resume after a kill, and not lose track of faces.

The new collection itself records what is done: a resumed run compares the old and the new
collection point by point (same ids) and does only the rest. The journal keeps what the
collections cannot tell: which new collection this re-embedding created (so a run never
writes into, or deletes from, a collection it did not make), and the faces that could not be
re-embedded with the reason (so a resumed run neither retries them forever nor forgets to
report them). It is index_resume's journal (JSON lines, an identity line, each entry flushed
at once, a torn last line ignored) with two more kinds of entry.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from facesearch.index_resume import IndexJournal


class ReembedJournal(IndexJournal):
    """The journal of one (old collection incarnation, model, new collection name)."""

    def __init__(self, path: str | Path, identity: Mapping[str, Any]) -> None:
        # Filled by _apply while the base class reads the file.
        self.created_uid: str | None = None
        self.lost: dict[str, tuple[list[str], str]] = {}
        super().__init__(path, identity)

    def _apply(self, entry: Mapping[str, Any]) -> None:
        if "created" in entry:
            self.created_uid = str(entry["created"])
        elif "lost" in entry:
            self.lost[str(entry["lost"])] = ([str(i) for i in entry["ids"]], str(entry["why"]))
        else:
            super()._apply(entry)

    def record_created(self, uid: str) -> None:
        self.created_uid = uid
        self._write({"created": uid})

    def record_lost(self, media_id: str, ids: list[str], why: str) -> None:
        if self.lost.get(media_id) != (ids, why):
            self.lost[media_id] = (list(ids), why)
            self._write({"lost": media_id, "ids": ids, "why": why})


def default_reembed_journal_path(retriever: str, source_uid: str, target: str, model: str) -> Path:
    """Under the user's cache folder, one file per (retriever, old collection, new one, model)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = "\0".join((retriever, source_uid, target, model))
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return cache / "facesearch" / "reembed" / f"{digest}.jsonl"
