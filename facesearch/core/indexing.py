"""Indexing: embed a folder of images (EmbedImagesStream) and upsert their faces (UpsertStream)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from tenacity import AsyncRetrying

from facesearch import context_text, messages
from facesearch.async_client import AsyncFacesearchClient
from facesearch.core import face_context, folder_persons
from facesearch.core.callbacks import call_back
from facesearch.errors import FacesearchError
from facesearch.index_resume import (
    IndexIncomplete,
    IndexJournal,
    TransientRefusal,
    is_transient,
    is_transient_code,
    retrying,
    stamp_of,
    why,
)
from facesearch_contract.v1 import embedder_pb2, retriever_pb2


@dataclass
class IndexSummary:
    images: int = 0
    images_with_faces: int = 0
    faces: int = 0
    upserted: int = 0
    # (media id, what went wrong); an image that failed is skipped, the run goes on.
    errors: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    # person_from_dir: faces per outcome ("labelled", "bystander", "ambiguous", "no evidence")
    # and the persons enrolled for the first time.
    person_labels: dict[str, int] = field(default_factory=dict)
    persons_enrolled: int = 0
    # Files the journal says an earlier run stored (not sent again), and transient failures
    # this run recovered from by retrying.
    skipped: int = 0
    retries: int = 0
    # With captions: images with faces per caption source (context_text: "iptc", "xmp",
    # "exif", "txt", "json", "srt", "webvtt"), those with no caption at all, and the context
    # files that could not be read (media id, why; the image itself was indexed).
    caption_sources: dict[str, int] = field(default_factory=dict)
    without_caption: int = 0
    context_problems: list[tuple[str, str]] = field(default_factory=list)
    # Faces stored without an attribute vector (description searches cannot score them), and
    # why: the embedder serves no attribute model or another one than the collection's field,
    # or the collection has no attributes field. `facesearch backfill` fills them later.
    without_attributes: int = 0
    attributes_note: str = ""
    # With a "scene" field: faces stored without their photo's scene vector (context queries
    # match their captions only), and why (the embedder serves no image-text model, or another
    # one than the field's). `facesearch backfill COLLECTION --field scene` fills them later.
    without_scene: int = 0
    scene_note: str = ""

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class IndexProgress:
    done: int
    total: int
    faces: int
    errors: int


def image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted so runs are repeatable."""
    if not folder.is_dir():
        raise FacesearchError(f"{folder} is not a directory")
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in messages.IMAGE_SUFFIXES
    )


def caption_of(path: Path) -> str | None:
    """The caption indexing stores for ``path``: from a sidecar ``.txt``/``.json``, the
    file's IPTC/XMP/EXIF text or a subtitle sidecar (facesearch.context_text, which also says
    where it came from)."""
    return context_text.context_of(path).caption


ImageItems = Iterable[tuple[str, messages.ImageSource]] | AsyncIterable[tuple[str, bytes]]


async def embed_images(
    client: AsyncFacesearchClient,
    images: ImageItems,
    *,
    model_id: str = "",
    with_scene: bool = False,
) -> AsyncIterator[embedder_pb2.ImageResult]:
    """Every face of every image, one ImageResult per (media id, image) pair as the embedder
    answers (EmbedImagesStream, in order). An image is bytes or a path; a failed image is a
    result with its error_code set, the stream goes on. Leaving early cancels the stream.
    With ``with_scene`` each result also carries the photo's scene vector (the embedder's
    image-text model; FAILED_PRECONDITION when it serves none)."""
    call = client.embedder.EmbedImagesStream(
        _stream_requests(images, model_id, with_scene), timeout=client.settings.stream_timeout_s
    )
    try:
        async for result in call:
            yield result
    finally:
        # Failed, cancelled or left early (break, aclose): the stream stops with us.
        if not call.done():
            call.cancel()


async def _stream_requests(
    images: ImageItems, model_id: str, with_scene: bool = False
) -> AsyncIterator[embedder_pb2.EmbedStreamRequest]:
    first = True
    async for media_id, image in _each(images):
        if not isinstance(image, bytes):
            image = await asyncio.to_thread(Path(image).read_bytes)
        yield embedder_pb2.EmbedStreamRequest(
            image=embedder_pb2.ImageInput(data=image, media_id=media_id),
            # Options ride on the first message.
            model_id=model_id if first else "",
            with_scene=with_scene and first,
        )
        first = False


async def _each(items: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


class _BoundedUpserts:
    """An UpsertStream with at most ``max_in_flight`` unacknowledged batches.

    The producer waits in ``send`` while the retriever is behind, so memory stays bounded
    however fast the embedder is. Each batch carries the media ids of its faces, handed to
    ``on_ack`` (stored) or ``on_refused`` (with the code and reason) when its ack comes."""

    _END = object()

    def __init__(
        self,
        client: AsyncFacesearchClient,
        max_in_flight: int,
        timeout: float | None,
        on_ack: Callable[[list[str], int], None],
        on_refused: Callable[[list[str], int, str], None],
    ) -> None:
        self._slots = asyncio.Semaphore(max_in_flight)
        self._requests: asyncio.Queue[object] = asyncio.Queue()
        self._call = client.retriever.UpsertStream(self._outgoing(), timeout=timeout)
        self._batches: list[list[str]] = []
        self._on_ack, self._on_refused = on_ack, on_refused
        self.failure: grpc.RpcError | None = None
        self._reader = asyncio.create_task(self._read_acks())

    async def _outgoing(self) -> AsyncIterator[retriever_pb2.UpsertRequest]:
        while (item := await self._requests.get()) is not self._END:
            yield item  # type: ignore[misc]

    async def _read_acks(self) -> None:
        try:
            async for ack in self._call:
                media = self._batches[int(ack.sequence)]
                if ack.error_code:
                    self._on_refused(media, int(ack.error_code), ack.error_message)
                else:
                    self._on_ack(media, ack.result.upserted)
                self._slots.release()
        except grpc.RpcError as err:
            self.failure = err
        finally:
            # Wake a producer waiting for a slot that will never come.
            for _ in range(64):
                self._slots.release()

    async def send(self, request: retriever_pb2.UpsertRequest, media: list[str]) -> None:
        await self._slots.acquire()
        self._raise_if_failed()
        self._batches.append(media)
        self._requests.put_nowait(request)

    def _raise_if_failed(self) -> None:
        if self.failure is not None:
            raise self.failure

    async def close(self) -> None:
        self._requests.put_nowait(self._END)
        await self._reader
        self._raise_if_failed()

    async def cancel(self) -> None:
        self._call.cancel()
        self._requests.put_nowait(self._END)
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


async def index_folder(
    client: AsyncFacesearchClient,
    folder: str | Path,
    collection: str,
    *,
    batch_size: int = 64,
    max_in_flight: int = 4,
    progress: Callable[[IndexProgress], object] | None = None,
    person_from_dir: bool = False,
    captions: bool = True,
    source: str | None = None,
    files: Iterable[Path] | None = None,
    media_root: str | Path | None = None,
    journal: str | Path | None = None,
    retry_for_s: float = 60.0,
) -> IndexSummary:
    """Embed every image under ``folder`` (EmbedImagesStream) and upsert its faces
    (UpsertStream), ``batch_size`` faces per upsert and at most ``max_in_flight`` upserts
    unacknowledged. The collection must exist (see ensure_collection).

    Media ids are paths relative to ``media_root`` (default: ``folder``) and point ids are
    ``<media id>#<face number>``, so indexing the same files again replaces their faces instead
    of duplicating them (index a subfolder with the parent as ``media_root`` to keep its ids).
    The media root is recorded with the collection (CollectionInfo.media_roots), where
    ``reembed_collection`` finds the images again.
    A replaced face gets exactly the new metadata. With ``person_from_dir`` the parent folder's
    name is the person (the LFW layout), but only the face the evidence singles out gets the
    label (the face recurring across the folder's photos, or verifying against the person's
    references): bystanders and ambiguous faces stay unlabelled, counted in
    ``summary.person_labels``, and new persons are enrolled (core.folder_persons). With
    ``captions`` the photo's context text is stored (facesearch.context_text: a sidecar
    ``.txt``/``.json``, IPTC/XMP/EXIF inside the file, a subtitle sidecar) as ``caption``
    with its ``caption_source`` (and ``headline``, ``keywords``) and, when the collection has
    a text field, embedded into it; ``summary.caption_sources`` and ``without_caption`` count
    them. ``progress`` (sync or async) hears of every image done.

    A transient failure (UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED: a service
    restarting, overloaded or slow) is retried with exponential backoff and jitter for up to
    ``retry_for_s`` seconds, sending only what was not yet acknowledged; past that,
    facesearch.index_resume.IndexIncomplete is raised, its summary listing every file not
    indexed. With ``journal`` (a file path) every acknowledged file is recorded there and a
    later run with the same journal skips the files already stored (``summary.skipped``);
    a file that failed for good is in ``summary.errors``, with the reason, and is tried
    again by the next run."""
    root = Path(media_root) if media_root is not None else Path(folder)
    paths = list(files) if files is not None else image_files(Path(folder))
    settings = client.settings
    async for attempt in retrying(retry_for_s, settings.initial_backoff_s, settings.max_backoff_s):
        with attempt:
            described = await client.retriever.DescribeCollection(
                retriever_pb2.DescribeCollectionRequest(collection=collection)
            )
    info = described.collection
    by_media = {str(p.relative_to(root)) if p.is_relative_to(root) else str(p): p for p in paths}
    # Media ids are relative to the root: recorded with the collection, a re-embedding
    # (reembed_collection) finds the images again without being told where they are.
    recorded = str(root.resolve())
    if recorded not in info.media_roots and any(p.is_relative_to(root) for p in paths):
        async for attempt in retrying(
            retry_for_s, settings.initial_backoff_s, settings.max_backoff_s
        ):
            with attempt:
                await client.retriever.AddMediaRoots(
                    retriever_pb2.AddMediaRootsRequest(
                        collection=collection, media_roots=[recorded]
                    )
                )
    book = None
    if journal is not None:
        identity = {
            "collection": collection,
            "uid": info.uid or info.name,
            "folder": str(root.resolve()),
            "person_from_dir": person_from_dir,
            "captions": captions,
            "source": source,
        }
        book = await asyncio.to_thread(IndexJournal, journal, identity)
    run = _IndexRun(
        client,
        collection,
        messages.CollectionFields.of(info),
        by_media,
        root,
        batch_size=batch_size,
        max_in_flight=max_in_flight,
        progress=progress,
        person_from_dir=person_from_dir,
        captions=captions,
        source=source,
        journal=book,
    )
    try:
        return await run.run(retry_for_s)
    finally:
        if book is not None:
            book.close()


class _IndexRun:
    """One index_folder call: its passes over the files not yet stored, and what they did."""

    def __init__(
        self,
        client: AsyncFacesearchClient,
        collection: str,
        fields: messages.CollectionFields,
        by_media: dict[str, Path],
        root: Path,
        *,
        batch_size: int,
        max_in_flight: int,
        progress: Callable[[IndexProgress], object] | None,
        person_from_dir: bool,
        captions: bool,
        source: str | None,
        journal: IndexJournal | None,
    ) -> None:
        self.client, self.collection, self.fields = client, collection, fields
        self.by_media, self.root = by_media, root
        self.batch_size, self.max_in_flight = batch_size, max_in_flight
        self.progress = progress
        self.person_from_dir, self.captions, self.source = person_from_dir, captions, source
        self.journal = journal
        self.text_field = fields.text_field() if captions and fields.text_fields else None
        self.summary = IndexSummary()
        # Per media id, across passes: faces found, (size, mtime) when read, outcome.
        self.faces_of: dict[str, int] = {}
        self.stamps: dict[str, tuple[int, int] | None] = {}
        self.stored: set[str] = set()
        self.failed: dict[str, str] = {}
        self.answered: set[str] = set()  # by the embedder
        self.unreadable: set[str] = set()
        # Refused in this pass with a transient code: sent again by the next pass.
        self.retry_later: dict[str, str] = {}
        self.labelling: folder_persons.FolderLabelling | None = None
        self.folder_outcomes: dict[str | None, Counter[str]] = {}
        self.total = 0
        # Per media id with faces: (caption source or "", context files not read).
        self.context_of: dict[str, tuple[str, tuple[str, ...]]] = {}
        # Per media id: faces sent without an attribute vector (_count_attributes).
        self.without_attributes: dict[str, int] = {}
        # Scene vectors are asked of the embedder only when it serves the scene field's model
        # (_check_scene); per media id, faces stored without one.
        self.with_scene = False
        self.without_scene: dict[str, int] = {}

    # ------------------------------------------------------------ the passes

    async def run(self, retry_for_s: float) -> IndexSummary:
        started = time.perf_counter()
        todo = self._not_stored(self.by_media)
        self.summary.skipped = len(self.by_media) - len(todo)
        self.total = len(todo)
        if self.person_from_dir:
            self.labelling = await folder_persons.start(self.client, self.fields.face_model)
        await self._check_scene()
        settings = self.client.settings
        retry = retrying(retry_for_s, settings.initial_backoff_s, settings.max_backoff_s)
        try:
            async for attempt in retry:
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        self.summary.retries += 1
                    if rest := self._not_stored(todo):
                        await self._one_pass(rest)
            await self._finish(retry)
        except Exception as exc:
            if not is_transient(exc):
                raise
            reason = why(exc)
            self._remember_references()
            self._tally(started)
            # The full reason is the exception's, said once; each file gets its short form.
            code = getattr(exc, "code", None)
            short = code().name if callable(code) else "refused for now"
            self.summary.errors.extend(
                (m, f"not indexed: {short} (the run stopped before it was stored)")
                for m in todo
                if m not in self.stored and m not in self.failed
            )
            raise IndexIncomplete(reason, self.summary) from exc
        self._tally(started)
        return self.summary

    def _not_stored(self, media: dict[str, Path]) -> dict[str, Path]:
        """The files still to send: neither stored (this run or, per the journal, an earlier
        one) nor failed for good. Labelling needs a folder's photos together, so with
        person_from_dir a folder not wholly stored is sent whole."""

        def done(m: str) -> bool:
            journal = self.journal
            return m in self.stored or (journal is not None and journal.is_stored(m, media[m]))

        rest = {m: p for m, p in media.items() if not done(m) and m not in self.failed}
        if self.person_from_dir:
            unfinished = {self._folder(m) for m in rest}
            rest = {
                m: p
                for m, p in media.items()
                if self._folder(m) in unfinished and m not in self.failed
            }
        return rest

    def _folder(self, media_id: str) -> str | None:
        return folder_persons.folder_of(media_id, self.by_media, self.root)

    async def _report(self) -> None:
        if self.progress is not None:
            done = len(self.answered) + len(self.unreadable)
            p = IndexProgress(done, self.total, sum(self.faces_of.values()), len(self.failed))
            await call_back(self.progress, p)

    async def _one_pass(self, todo: dict[str, Path]) -> None:
        self.retry_later = {}
        upserts = _BoundedUpserts(
            self.client,
            self.max_in_flight,
            self.client.settings.stream_timeout_s,
            self._acked,
            self._refused,
        )
        Labels = list[str | None] | None
        pending: list[tuple[embedder_pb2.ImageResult, dict[str, messages.MetadataInput], Labels]]
        pending = []
        pending_faces = 0
        folder: str | None = None
        folder_results: list[embedder_pb2.ImageResult] = []

        async def images() -> AsyncIterator[tuple[str, bytes]]:
            for media_id, path in todo.items():
                try:
                    data = await asyncio.to_thread(path.read_bytes)
                    self.stamps[media_id] = await asyncio.to_thread(stamp_of, path)
                except OSError as exc:
                    self.failed[media_id] = f"cannot read: {exc}"
                    self.unreadable.add(media_id)
                    await self._report()
                    continue
                yield media_id, data

        async def label_folder() -> None:
            """Queue the buffered folder's images with the labels its evidence supports."""
            nonlocal folder_results, pending_faces
            if not folder_results:
                return
            labelling = self.labelling
            assert labelling is not None
            if folder is None:
                face_labels: list[list[str | None]] = [
                    [None] * len(r.faces) for r in folder_results
                ]
            else:
                known = await folder_persons.known_references(
                    self.client, self.collection, folder, self.fields.face
                )
                before = Counter(labelling.outcomes)
                face_labels = labelling.label(folder, folder_results, known)
                # A folder labelled again by a later pass replaces its counts.
                self.folder_outcomes[folder] = labelling.outcomes - before
            for result, labels in zip(folder_results, face_labels, strict=True):
                pending.append((result, self._metadata(result.media_id), labels))
                pending_faces += len(result.faces)
            folder_results = []

        async def flush() -> None:
            nonlocal pending, pending_faces
            if not pending:
                return
            texts = await face_context.caption_vectors(
                self.client, self.text_field, [meta for _, meta, _ in pending]
            )
            points = []
            for (result, meta, labels), vectors in zip(pending, texts, strict=True):
                faces = messages.face_points(
                    result,
                    face_field=self.fields.face,
                    metadata=meta,
                    text_vectors={**vectors, **self._scene_vector(result)},
                    attribute_field=self.fields.attribute_field,
                )
                for point, person in zip(faces, labels or [None] * len(faces), strict=True):
                    if person is not None:
                        point.metadata["person_id"].string_value = person
                self._count_attributes(result)
                points.extend(faces)
            media = [result.media_id for result, _, _ in pending]
            await upserts.send(messages.upsert_request(self.collection, points), media)
            pending, pending_faces = [], 0

        results = embed_images(
            self.client, images(), model_id=self.fields.face_model, with_scene=self.with_scene
        )
        try:
            async for result in results:
                media_id = result.media_id
                self.answered.add(media_id)
                if result.error_code:
                    if is_transient_code(result.error_code):
                        self.retry_later[media_id] = result.error_message
                    else:
                        self.failed[media_id] = result.error_message
                elif result.faces:
                    self.faces_of[media_id] = len(result.faces)
                    if self.labelling is not None:
                        here = self._folder(media_id)
                        if here != folder:
                            await label_folder()
                            folder = here
                        folder_results.append(result)
                    else:
                        pending.append((result, self._metadata(media_id), None))
                        pending_faces += len(result.faces)
                    if pending_faces >= self.batch_size:
                        await flush()
                else:
                    self.faces_of[media_id] = 0
                    self._acked([media_id], 0)  # nothing to store: done
                await self._report()
            if self.labelling is not None:
                await label_folder()
            await flush()
            await upserts.close()
        except BaseException:
            # Cancelled (Ctrl-C, task.cancel) or failed: stop both streams before going.
            await results.aclose()
            await upserts.cancel()
            raise
        if self.retry_later:
            first = next(iter(self.retry_later.items()))
            raise TransientRefusal(
                f"{len(self.retry_later)} file(s) refused for now, e.g. {first[0]}: {first[1]}"
            )

    def _count_attributes(self, result: embedder_pb2.ImageResult) -> None:
        """Faces that go in without an attribute vector, and why (never silently). Per media
        id: a file sent again by a later pass is counted once."""
        field = self.fields.attribute_field
        missing = 0
        for face in result.faces:
            given = face.attributes.model_id
            if field is not None and given == field[1]:
                continue
            if field is None and not given:
                continue  # neither side has attributes: nothing was left out
            missing += 1
            if self.summary.attributes_note:
                continue
            if field is None:
                self.summary.attributes_note = (
                    f"the collection has no {messages.ATTRIBUTE_FIELD!r} field (created before "
                    f"the embedder served {given!r})"
                )
            elif not given:
                self.summary.attributes_note = (
                    f"the embedder serves no attribute model (the collection's field holds "
                    f"{field[1]!r})"
                )
            else:
                self.summary.attributes_note = (
                    f"the embedder's attribute model is {given!r}, the collection's field holds "
                    f"{field[1]!r}"
                )
        self.without_attributes[result.media_id] = missing

    async def _check_scene(self) -> None:
        """Ask for scene vectors when the collection has a scene field and the embedder serves
        its model; otherwise say why its faces go in without them (never silently)."""
        field = self.fields.scene_field
        if field is None:
            return
        why_not = await face_context.scene_not_served(self.client, field)
        self.with_scene = why_not is None
        self.summary.scene_note = why_not or ""

    def _scene_vector(self, result: embedder_pb2.ImageResult) -> dict[str, tuple]:
        """{scene field: (the photo's scene vector, model)}, or {} (counted) without one."""
        field = self.fields.scene_field
        vector = face_context.scene_vector(result, field)
        if field is not None and not vector:
            self.without_scene[result.media_id] = len(result.faces)
        return vector

    def _acked(self, media: list[str], upserted: int) -> None:
        self.summary.upserted += upserted
        fresh = [m for m in media if m not in self.stored]
        self.stored.update(fresh)
        if self.journal is not None:
            self.journal.record_stored((m, self.stamps.get(m)) for m in fresh)

    def _refused(self, media: list[str], code: int, message: str) -> None:
        for m in media:
            if is_transient_code(code):
                self.retry_later[m] = message
            else:
                self.failed[m] = f"upsert refused: {message}"

    def _metadata(self, media_id: str) -> dict[str, messages.MetadataInput]:
        meta, problems = _image_metadata(
            media_id, self.by_media, self.root, self.captions, self.source
        )
        if self.captions:
            # Per media id: a folder sent again by a later pass is counted once.
            self.context_of[media_id] = (str(meta.get("caption_source") or ""), problems)
        return meta

    # ------------------------------------------------------------ the end

    def _remember_references(self) -> None:
        """Journal the references of each person whose folder is now stored, so a run that
        stops before enrolling leaves them for the next run to enrol."""
        if self.journal is None or self.labelling is None:
            return
        for person, ids in self.labelling.references.items():
            if all(m in self.stored or m in self.failed for m in self._media_of(person)):
                self.journal.record_references(person, ids)

    def _media_of(self, folder: str) -> list[str]:
        return [m for m in self.by_media if self._folder(m) == folder]

    async def _finish(self, retry: AsyncRetrying) -> None:
        labelling = self.labelling
        if labelling is None:
            return
        self._remember_references()
        if self.journal is not None:
            for person, ids in self.journal.pending_enrolments().items():
                labelling.references.setdefault(person, ids)
        async for attempt in retry.copy():
            with attempt:
                self.summary.persons_enrolled = await folder_persons.enrol_new_persons(
                    self.client, self.collection, labelling
                )
        if self.journal is not None:
            self.journal.record_enrolled(labelling.references)

    def _tally(self, started: float) -> None:
        s = self.summary
        s.images = len(self.answered)
        s.images_with_faces = sum(1 for n in self.faces_of.values() if n)
        s.faces = sum(self.faces_of.values())
        order = {m: i for i, m in enumerate(self.by_media)}
        s.errors = sorted(self.failed.items(), key=lambda item: order.get(item[0], 0))
        if self.labelling is not None:
            s.person_labels = dict(sum(self.folder_outcomes.values(), Counter()))
        sources = Counter(src for src, _ in self.context_of.values())
        s.without_caption = sources.pop("", 0)
        s.caption_sources = dict(sources)
        s.context_problems = [(m, why) for m, (_, ps) in self.context_of.items() for why in ps]
        s.without_attributes = sum(self.without_attributes.values())
        s.without_scene = sum(self.without_scene.values())
        s.seconds = time.perf_counter() - started


def _image_metadata(
    media_id: str,
    by_media: dict[str, Path],
    root: Path,
    captions: bool,
    source: str | None,
) -> tuple[dict[str, messages.MetadataInput], tuple[str, ...]]:
    """The metadata every face of the image gets, and the context files not read."""
    path = by_media.get(media_id)
    meta: dict[str, messages.MetadataInput] = {}
    if source:
        meta["source"] = source
    if path is None or not captions:
        return meta, ()
    context, problems = face_context.photo_context(path)
    meta.update(context)
    return meta, problems
