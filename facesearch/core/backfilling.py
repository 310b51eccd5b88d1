"""Back-fill: give the faces a collection already stores the vectors of a field they lack (a
field added after they were indexed, e.g. ``attributes``), from the photos they came from.

1. The collection is scanned (Scan) for the points that lack the field; their ``media_id`` is
   the photo's path relative to a media root (``media_root``, else the roots the collection
   recorded at indexing, CollectionInfo.media_roots).
2. A batch of photos at a time: the points are read again (Get, so one filled or deleted
   meanwhile is left alone), the photos embedded again (EmbedImagesStream, the collection's face
   model), and each stored face is paired with the face detected at the same place, as a
   re-embedding pairs them (facesearch.face_matching: box overlap, else the face number). The
   field's vector of the paired face (vector_fields.FILLERS) is added to the stored point
   (UpsertRequest.mode ADD_VECTORS), which keeps everything else it holds and never re-creates
   a point deleted meanwhile.
3. A stored face that no detected face matches is reported (``summary.unmatched``), as is a
   photo that cannot be found or read (``summary.errors``).

Resuming: the points filled are durable once acknowledged, so a run stopped at any point (a
kill, Ctrl-C, a service gone past the retry budget) is resumed by running it again, which scans
for what still lacks the field. The journal (facesearch.index_resume) records each photo done
with, so a resumed run does not embed again the photos whose faces were not detected again
(they are reported from the journal); a changed file is tried again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from tenacity import AsyncRetrying

from facesearch import messages
from facesearch.async_client import AsyncFacesearchClient
from facesearch.core.callbacks import call_back
from facesearch.core.collections import scan_points
from facesearch.core.indexing import embed_images
from facesearch.core.vector_fields import FILLERS, add_vector_field, fill_model
from facesearch.errors import CollectionMismatch, FacesearchError
from facesearch.face_matching import StoredFace, match_faces, stored_face
from facesearch.index_resume import (
    IndexJournal,
    TransientRefusal,
    is_transient,
    is_transient_code,
    retrying,
    stamp_of,
    why,
)
from facesearch_contract.limits import max_items
from facesearch_contract.v1 import embedder_pb2, retriever_pb2

# Points per Scan page: with their vectors (with_vectors, to see which fields they hold) a few KB
# each, so a page stays far below the client's message limit.
SCAN_PAGE = 500
MAX_GET_IDS = max_items(retriever_pb2.GetRequest, "ids")
# Points per ADD_VECTORS upsert (well under any server's max_upsert_batch).
UPSERT_BATCH = 512


@dataclass
class BackfillSummary:
    """What a back-fill did. Every stored face lacking the field at the start is in exactly one
    of ``filled``, ``unmatched`` (face not detected again), the faces of ``errors`` (photo not
    found, unreadable, refused), or ``changed`` (filled or deleted by someone else meanwhile)."""

    field: str = ""
    model: str = ""
    # The field was added to the collection by this run (AddVectorField).
    field_added: bool = False
    # Points scanned, and of them those that had the field already.
    points: int = 0
    already: int = 0
    filled: int = 0
    changed: int = 0
    # Photos embedded, and photos skipped because an earlier run was done with them (journal).
    media: int = 0
    skipped: int = 0
    # (point id, why) of faces not filled because no face of their photo matched them.
    unmatched: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    # (media id, why) of photos not embedded: not found under the roots, unreadable, refused.
    errors: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    # Faces of the photos in ``errors`` (left as they were).
    error_faces: int = 0
    retries: int = 0
    seconds: float = 0.0

    @property
    def lacking(self) -> int:
        """Points that lacked the field when the run started."""
        return self.points - self.already


@dataclass(frozen=True)
class BackfillProgress:
    done: int  # photos done (embedded, skipped or failed)
    total: int  # photos with points lacking the field
    filled: int
    unmatched: int


class BackfillIncomplete(FacesearchError):
    """Transient failures outlasted the retry budget: ``summary`` says what was done. Run the
    same back-fill again to go on (what was filled stays filled)."""

    def __init__(self, reason: str, summary: BackfillSummary) -> None:
        super().__init__(f"back-fill stopped: {reason}")
        self.reason = reason
        self.summary = summary


def backfill_journal_path(retriever: str, collection: str, field: str) -> Path:
    """Where ``facesearch backfill`` keeps its journal by default: under the user's cache
    folder, one file per (retriever address, collection, field)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256("\0".join((retriever, collection, field)).encode()).hexdigest()[:24]
    return cache / "facesearch" / "backfill" / f"{key}.jsonl"


async def backfill(
    client: AsyncFacesearchClient,
    collection: str,
    *,
    field: str = messages.ATTRIBUTE_FIELD,
    media_root: str | Path | None = None,
    batch_size: int = 32,
    progress: Callable[[BackfillProgress], object] | None = None,
    journal: str | Path | None = None,
    retry_for_s: float = 60.0,
) -> BackfillSummary:
    """Fill vector field ``field`` of the faces of ``collection`` that lack it, from the photos
    they were indexed from; the field is added first when the collection has none
    (``summary.field_added``). Photos are found by their media id under ``media_root`` (the
    folder indexed), else under the media roots the collection recorded; ``batch_size`` photos
    are embedded per step. The embedder must serve the field's model (for ``attributes``: the
    collection's attribute model), else CollectionMismatch.

    Transient failures are retried for ``retry_for_s`` seconds, then BackfillIncomplete is
    raised with the summary so far. Running it again resumes; with ``journal`` (a file) the
    photos an earlier run was done with are skipped (``summary.skipped``). ``progress`` (sync
    or async) hears of every batch. See the module's doc for how faces are matched."""
    run = await _BackfillRun.start(client, collection, field, media_root, retry_for_s)
    book = None
    if journal is not None:
        identity = {
            "backfill": field,
            "collection": collection,
            "uid": run.info.uid or run.info.name,
            "model": run.summary.model,
            "face_model": run.fields.face_model,
            "roots": [str(r) for r in run.roots],
        }
        book = await asyncio.to_thread(IndexJournal, journal, identity)
    try:
        return await run.run(book, batch_size, progress)
    finally:
        if book is not None:
            book.close()


class _BackfillRun:
    def __init__(
        self,
        client: AsyncFacesearchClient,
        collection: str,
        info: retriever_pb2.CollectionInfo,
        model: str,
        roots: list[Path],
        retry_for_s: float,
    ) -> None:
        self.client, self.collection, self.info = client, collection, info
        self.fields = messages.CollectionFields.of(info)
        self.roots = roots
        self.retry_for_s = retry_for_s
        self.summary = BackfillSummary(model=model)
        # media id -> ids of its points lacking the field (scan order).
        self.lacking: dict[str, list[str]] = {}
        # Ids sent in an ADD_VECTORS upsert, by any attempt: a batch retried after its upsert
        # went through finds them filled, by this run, not by someone else.
        self.sent: set[str] = set()

    def _retrying(self) -> AsyncRetrying:
        s = self.client.settings
        return retrying(self.retry_for_s, s.initial_backoff_s, s.max_backoff_s)

    @classmethod
    async def start(
        cls,
        client: AsyncFacesearchClient,
        collection: str,
        name: str,
        media_root: str | Path | None,
        retry_for_s: float,
    ) -> _BackfillRun:
        s = client.settings
        async for attempt in retrying(retry_for_s, s.initial_backoff_s, s.max_backoff_s):
            with attempt:
                info = await _describe(client, collection)
                models = (await client.embedder.ListModels(embedder_pb2.ListModelsRequest())).models
        model = fill_model(models, name)
        have = next((f for f in info.vector_fields if f.name == name), None)
        added = False
        if have is None:
            added = await add_vector_field(client, collection, name)
            info = await _describe(client, collection)
        elif have.model_id != model.model_id:
            raise CollectionMismatch(
                f"collection {collection!r} holds {name!r} vectors of model {have.model_id!r}, "
                f"but the embedder serves {model.model_id!r}: back-fill through an embedder "
                "serving that model (vectors of two models cannot share a field)"
            )
        roots = [Path(media_root)] if media_root is not None else []
        roots += [Path(r) for r in info.media_roots if Path(r) not in roots]
        if not roots:
            raise FacesearchError(
                f"collection {collection!r} records no media root: give the folder its photos "
                "were indexed from (media ids are paths relative to it), e.g. --media-root DIR"
            )
        run = cls(client, collection, info, model.model_id, roots, retry_for_s)
        run.summary.field = name
        run.summary.field_added = added
        return run

    # ------------------------------------------------------------ the passes

    async def run(
        self,
        book: IndexJournal | None,
        batch_size: int,
        progress: Callable[[BackfillProgress], object] | None,
    ) -> BackfillSummary:
        started = time.perf_counter()
        try:
            await self._scan()
            todo = []
            for media, ids in self.lacking.items():
                path = self._find(media)
                if path is None:
                    where = ", ".join(str(r) for r in self.roots)
                    self._failed(media, f"not found under the media roots ({where})")
                elif book is not None and book.is_stored(media, path):
                    self.summary.skipped += 1
                    self.summary.unmatched.extend(
                        (i, f"not filled by an earlier run that embedded {media} (journal)")
                        for i in ids
                    )
                else:
                    todo.append((media, path))
            total, done = len(self.lacking), len(self.lacking) - len(todo)
            for lo in range(0, len(todo), max(batch_size, 1)):
                batch = todo[lo : lo + max(batch_size, 1)]
                async for attempt in self._retrying():
                    with attempt:
                        if attempt.retry_state.attempt_number > 1:
                            self.summary.retries += 1
                        outcome = await self._batch(batch)
                self._apply(outcome, book)
                done += len(batch)
                if progress is not None:
                    p = BackfillProgress(
                        done, total, self.summary.filled, len(self.summary.unmatched)
                    )
                    await call_back(progress, p)
        except Exception as exc:
            if not is_transient(exc):
                raise
            self.summary.seconds = time.perf_counter() - started
            raise BackfillIncomplete(why(exc), self.summary) from exc
        self.summary.seconds = time.perf_counter() - started
        return self.summary

    async def _scan(self) -> None:
        """Every point of the collection; keep those lacking the field, by media id."""
        name = self.summary.field
        async for attempt in self._retrying():
            with attempt:
                self.summary.points = self.summary.already = 0
                self.lacking = {}
                async for p in scan_points(
                    self.client, self.collection, page_size=SCAN_PAGE, with_vectors=True
                ):
                    self.summary.points += 1
                    if name in p.vectors:
                        self.summary.already += 1
                        continue
                    meta = p.metadata
                    media = meta["media_id"].string_value if "media_id" in meta else ""
                    self.lacking.setdefault(media, []).append(p.id)
        if "" in self.lacking:
            ids = self.lacking.pop("")
            self.summary.errors.append(("", f"{len(ids)} face(s) have no media_id metadata"))
            self.summary.error_faces += len(ids)

    def _find(self, media: str) -> Path | None:
        candidate = Path(media)
        if candidate.is_absolute():
            return candidate if candidate.is_file() else None
        for root in self.roots:
            if (root / media).is_file():
                return root / media
        return None

    def _failed(self, media: str, reason: str) -> None:
        self.summary.errors.append((media, reason))
        self.summary.error_faces += len(self.lacking.get(media, ()))

    # ------------------------------------------------------------ one batch of photos

    async def _batch(self, batch: list[tuple[str, Path]]) -> _Outcome:
        """Read the batch's points again, embed its photos, add the matched faces' vectors.
        Safe to run again after a failure: a point filled by the first attempt is skipped."""
        out = _Outcome()
        ids = [i for media, _ in batch for i in self.lacking[media]]
        stored = await self._stored(ids)
        gone = [i for i in ids if i not in stored]
        out.filled = sum(1 for i in gone if i in self.sent)
        out.changed = len(gone) - out.filled
        images: list[tuple[str, bytes]] = []
        stamps: dict[str, tuple[int, int] | None] = {}
        for media, path in batch:
            try:
                images.append((media, await asyncio.to_thread(path.read_bytes)))
                stamps[media] = await asyncio.to_thread(stamp_of, path)
            except OSError as exc:
                out.errors.append((media, f"cannot read {path}: {exc.strerror or exc}"))
        name, filler = self.summary.field, FILLERS[self.summary.field]
        points: list[retriever_pb2.Point] = []
        results = (
            embed_images(
                self.client, images, model_id=self.fields.face_model, with_scene=filler.per_photo
            )
            if images
            else _nothing()
        )
        async for result in results:
            media = result.media_id
            if result.error_code:
                if is_transient_code(result.error_code):
                    raise TransientRefusal(f"{media}: {result.error_message}")
                out.errors.append((media, result.error_message))
                continue
            out.media += 1
            mine = [stored[i] for i in self.lacking[media] if i in stored]
            boxes = [(f.box.x, f.box.y, f.box.width, f.box.height) for f in result.faces]
            pairs = match_faces(mine, boxes)
            for s in mine:
                j = pairs.get(s.id)
                if j is None and not filler.per_photo:
                    out.unmatched.append((s.id, _unmatched_why(media, len(result.faces))))
                    continue
                made = filler.vector(result, result.faces[j] if j is not None else None)
                if made is None or made[1] != self.summary.model:
                    given = made[1] if made else "none"
                    out.unmatched.append(
                        (s.id, f"the embedder gave no {self.summary.model} {name} (gave {given})")
                    )
                    continue
                point = retriever_pb2.Point(id=s.id)
                point.vectors[name].CopyFrom(made[0])
                point.model_ids[name] = made[1]
                points.append(point)
            out.done.append((media, stamps.get(media)))
        self.sent.update(p.id for p in points)
        for lo in range(0, len(points), UPSERT_BATCH):
            reply = await self.client.retriever.Upsert(
                retriever_pb2.UpsertRequest(
                    collection=self.collection,
                    points=points[lo : lo + UPSERT_BATCH],
                    mode=retriever_pb2.UPSERT_MODE_ADD_VECTORS,
                )
            )
            out.filled += reply.upserted
            out.changed += reply.skipped
        return out

    async def _stored(self, ids: list[str]) -> dict[str, StoredFace]:
        """The points of ``ids`` that still lack the field, with their boxes."""
        name = self.summary.field
        out: dict[str, StoredFace] = {}
        for lo in range(0, len(ids), MAX_GET_IDS):
            reply = await self.client.retriever.Get(
                retriever_pb2.GetRequest(
                    collection=self.collection, ids=ids[lo : lo + MAX_GET_IDS], with_vectors=True
                )
            )
            for p in reply.points:
                if name not in p.vectors:
                    out[p.id] = stored_face(p)
        return out

    def _apply(self, outcome: _Outcome, book: IndexJournal | None) -> None:
        s = self.summary
        s.filled += outcome.filled
        s.changed += outcome.changed
        s.media += outcome.media
        s.unmatched.extend(outcome.unmatched)
        for media, reason in outcome.errors:
            self._failed(media, reason)
        if book is not None:
            # Photos done with: every face filled, or not detected again (a photo that could
            # not be read is tried again by the next run).
            book.record_stored(outcome.done)


@dataclass
class _Outcome:
    """What one batch did; applied to the summary only once the batch has succeeded, so a
    retried batch is not counted twice."""

    filled: int = 0
    changed: int = 0
    media: int = 0
    unmatched: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    errors: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    done: list[tuple[str, tuple[int, int] | None]] = dataclasses.field(default_factory=list)


async def _nothing() -> AsyncIterator[embedder_pb2.ImageResult]:
    return
    yield


def _unmatched_why(media: str, detected: int) -> str:
    if detected == 0:
        return f"no face detected in {media} any more"
    return f"not detected again in {media}: none of its {detected} face(s) now is at its place"


async def _describe(client: AsyncFacesearchClient, collection: str) -> retriever_pb2.CollectionInfo:
    reply = await client.retriever.DescribeCollection(
        retriever_pb2.DescribeCollectionRequest(collection=collection)
    )
    return reply.collection
