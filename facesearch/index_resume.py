"""What lets a long ``index_folder`` run survive a service that goes away for a while.

- Retries: a transient failure (UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED) of the
  streams or of a batch is retried, with exponential backoff and full jitter (tenacity), for up
  to ``retry_for_s`` seconds; each retry sends only the files not yet acknowledged. Retrying is
  safe for every call of the flow: embedding only reads, a point id is made from its media id
  (messages.point_id) so an upsert sent twice replaces instead of duplicating, and enrolling a
  person twice answers ALREADY_EXISTS, which counts as done.
- The journal: a JSON-lines file recording each file whose faces the retriever acknowledged,
  so running the same index again (after the retry budget ran out, a crash or Ctrl-C) sends
  only the rest. Its first line names what the entries are about: the collection's uid (a
  dropped and re-created collection has a new one, so its journal starts over), the folder and
  the options that shape the stored points. A file whose size or mtime changed is indexed
  again; a torn last line (the client killed mid-write) is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import grpc
from tenacity import (
    AsyncRetrying,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_random_exponential,
)

from facesearch.errors import FacesearchError, explain

# Worth another try a little later; anything else (INVALID_ARGUMENT, NOT_FOUND, ...) would
# fail the same way again.
TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)
_TRANSIENT_INTS = frozenset(code.value[0] for code in TRANSIENT_CODES)
JOURNAL_VERSION = 1
T = TypeVar("T")


def is_transient_code(code: int) -> bool:
    """For the integer codes of per-item errors (ImageResult.error_code, UpsertAck)."""
    return code in _TRANSIENT_INTS


class TransientRefusal(Exception):
    """Some items of a pass were refused with a transient code: run another pass for them."""


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TransientRefusal):
        return True
    code = getattr(exc, "code", None)
    return isinstance(exc, grpc.RpcError) and callable(code) and code() in TRANSIENT_CODES


def _policy(retry_for_s: float, initial_s: float, max_s: float) -> dict[str, Any]:
    return {
        "retry": retry_if_exception(is_transient),
        "wait": wait_random_exponential(multiplier=max(initial_s, 0.01), max=max(max_s, 0.01)),
        "stop": stop_after_delay(max(retry_for_s, 0.0)),
        "reraise": True,
    }


def retrying(retry_for_s: float, initial_s: float, max_s: float) -> AsyncRetrying:
    """Retry transient failures for ``retry_for_s`` seconds, then raise the last one."""
    return AsyncRetrying(**_policy(retry_for_s, initial_s, max_s))


def call_with_retries(fn: Callable[[], T], retry_for_s: float, initial_s: float, max_s: float) -> T:
    """``fn()``, its transient failures retried as ``retrying`` does (for sync callers)."""
    for attempt in Retrying(**_policy(retry_for_s, initial_s, max_s)):
        with attempt:
            return fn()
    raise AssertionError("unreachable: tenacity re-raises the last failure")


def why(exc: BaseException) -> str:
    return explain(exc) if isinstance(exc, grpc.RpcError) else str(exc)


class IndexIncomplete(FacesearchError):
    """Transient failures outlasted the retry budget: ``summary`` says what was stored and
    ``summary.errors`` lists every file not indexed, with the reason. Index again to resume
    (with a journal, only the files listed are sent)."""

    def __init__(self, reason: str, summary: Any) -> None:
        super().__init__(f"indexing stopped: {reason}")
        self.reason = reason
        self.summary = summary


def stamp_of(path: Path) -> tuple[int, int] | None:
    """(size, mtime_ns) of a file as the journal records it; None when it cannot be read."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


class IndexJournal:
    """The files of one (collection, folder, options) already stored, in a JSON-lines file."""

    def __init__(self, path: str | Path, identity: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.identity = {"journal": JOURNAL_VERSION, **identity}
        self._stored: dict[str, tuple[int, int]] = {}
        self._references: dict[str, list[str]] = {}
        self._enrolled: set[str] = set()
        # Why an existing journal was set aside (another collection uid, other options), if so.
        self.started_over: str | None = None
        lines = self._read()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if lines and lines[0] == self.identity:
            for entry in lines[1:]:
                self._apply(entry)
            self._file = self.path.open("a", encoding="utf-8")
        else:
            if lines:
                self.started_over = _difference(lines[0], self.identity)
            self._file = self.path.open("w", encoding="utf-8")
            self._write(self.identity)

    def _read(self) -> list[dict[str, Any]]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        out, valid = [], 0
        for line in data.splitlines(keepends=True):
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            if not line.endswith(b"\n") or not isinstance(entry, dict):
                break  # a torn last line: the client was stopped mid-write
            out.append(entry)
            valid += len(line)
        if valid < len(data):
            # Cut the torn tail, so the next entry starts on a line of its own.
            with self.path.open("r+b") as f:
                f.truncate(valid)
        return out

    def _apply(self, entry: Mapping[str, Any]) -> None:
        if "stored" in entry:
            self._stored[str(entry["stored"])] = (int(entry["size"]), int(entry["mtime_ns"]))
        elif "references" in entry:
            self._references[str(entry["references"])] = [str(i) for i in entry["ids"]]
        elif "enrolled" in entry:
            self._enrolled.add(str(entry["enrolled"]))

    def _write(self, entry: Mapping[str, Any]) -> None:
        # Flushed at once: a client killed right after an acknowledgement keeps the entry.
        self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self._file.flush()

    def is_stored(self, media_id: str, path: Path) -> bool:
        """Stored by an earlier run, and the file unchanged since (same size and mtime)."""
        known = self._stored.get(media_id)
        return known is not None and known == stamp_of(path)

    def record_stored(self, items: Iterable[tuple[str, tuple[int, int] | None]]) -> None:
        for media_id, stamp in items:
            if stamp is None:
                continue
            self._stored[media_id] = stamp
            self._write({"stored": media_id, "size": stamp[0], "mtime_ns": stamp[1]})

    def record_references(self, person: str, ids: list[str]) -> None:
        if self._references.get(person) != ids:
            self._references[person] = list(ids)
            self._write({"references": person, "ids": ids})

    def record_enrolled(self, persons: Iterable[str]) -> None:
        for person in persons:
            if person not in self._enrolled:
                self._enrolled.add(person)
                self._write({"enrolled": person})

    def pending_enrolments(self) -> dict[str, list[str]]:
        """Persons whose folder an earlier run stored but did not get to enrol."""
        return {p: ids for p, ids in self._references.items() if p not in self._enrolled}

    def close(self) -> None:
        self._file.close()


def _difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if "uid" in changed:
        return "the collection was created anew since"
    return "it was written with other " + ", ".join(changed)


def default_journal_path(retriever: str, collection: str, folder: Path) -> Path:
    """Under the user's cache folder, one file per (retriever address, collection, folder)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = "\0".join((retriever, collection, str(folder.resolve())))
    return cache / "facesearch" / "index" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.jsonl"
