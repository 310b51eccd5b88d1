"""Indexing: embed a folder of images (EmbedImagesStream) and upsert their faces (UpsertStream)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from facesearch import messages
from facesearch.async_client import AsyncFacesearchClient
from facesearch.core import folder_persons
from facesearch.core.callbacks import call_back
from facesearch.core.collections import collection_fields
from facesearch.errors import FacesearchError
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
    """A caption from the sidecar ``<image>.txt`` (``photo.jpg.txt`` or ``photo.txt``)."""
    for sidecar in (path.with_name(path.name + ".txt"), path.with_suffix(".txt")):
        if sidecar.is_file():
            text = sidecar.read_text(errors="replace").strip().splitlines()
            if text and text[0].strip():
                return text[0].strip()
    return None


ImageItems = Iterable[tuple[str, messages.ImageSource]] | AsyncIterable[tuple[str, bytes]]


async def embed_images(
    client: AsyncFacesearchClient,
    images: ImageItems,
    *,
    model_id: str = "",
) -> AsyncIterator[embedder_pb2.ImageResult]:
    """Every face of every image, one ImageResult per (media id, image) pair as the embedder
    answers (EmbedImagesStream, in order). An image is bytes or a path; a failed image is a
    result with its error_code set, the stream goes on. Leaving early cancels the stream."""
    call = client.embedder.EmbedImagesStream(
        _stream_requests(images, model_id), timeout=client.settings.stream_timeout_s
    )
    try:
        async for result in call:
            yield result
    finally:
        # Failed, cancelled or left early (break, aclose): the stream stops with us.
        if not call.done():
            call.cancel()


async def _stream_requests(
    images: ImageItems, model_id: str
) -> AsyncIterator[embedder_pb2.EmbedStreamRequest]:
    first = True
    async for media_id, image in _each(images):
        if not isinstance(image, bytes):
            image = await asyncio.to_thread(Path(image).read_bytes)
        yield embedder_pb2.EmbedStreamRequest(
            image=embedder_pb2.ImageInput(data=image, media_id=media_id),
            # Options ride on the first message.
            model_id=model_id if first else "",
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
    however fast the embedder is."""

    _END = object()

    def __init__(
        self, client: AsyncFacesearchClient, max_in_flight: int, timeout: float | None
    ) -> None:
        self._slots = asyncio.Semaphore(max_in_flight)
        self._requests: asyncio.Queue[object] = asyncio.Queue()
        self._call = client.retriever.UpsertStream(self._outgoing(), timeout=timeout)
        self.upserted = 0
        self.refused: list[tuple[int, str]] = []
        self.failure: grpc.RpcError | None = None
        self._reader = asyncio.create_task(self._read_acks())

    async def _outgoing(self) -> AsyncIterator[retriever_pb2.UpsertRequest]:
        while (item := await self._requests.get()) is not self._END:
            yield item  # type: ignore[misc]

    async def _read_acks(self) -> None:
        try:
            async for ack in self._call:
                if ack.error_code:
                    self.refused.append((int(ack.sequence), ack.error_message))
                else:
                    self.upserted += ack.result.upserted
                self._slots.release()
        except grpc.RpcError as err:
            self.failure = err
        finally:
            # Wake a producer waiting for a slot that will never come.
            for _ in range(64):
                self._slots.release()

    async def send(self, request: retriever_pb2.UpsertRequest) -> None:
        await self._slots.acquire()
        self._raise_if_failed()
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
) -> IndexSummary:
    """Embed every image under ``folder`` (EmbedImagesStream) and upsert its faces
    (UpsertStream), ``batch_size`` faces per upsert and at most ``max_in_flight`` upserts
    unacknowledged. The collection must exist (see ensure_collection).

    Media ids are paths relative to ``media_root`` (default: ``folder``) and point ids are
    ``<media id>#<face number>``, so indexing the same files again replaces their faces instead
    of duplicating them (index a subfolder with the parent as ``media_root`` to keep its ids).
    A replaced face gets exactly the new metadata. With ``person_from_dir`` the parent folder's
    name is the person (the LFW layout), but only the face the evidence singles out gets the
    label (the face recurring across the folder's photos, or verifying against the person's
    references): bystanders and ambiguous faces stay unlabelled, counted in
    ``summary.person_labels``, and new persons are enrolled (core.folder_persons). With
    ``captions`` a sidecar ``.txt`` caption is stored and, when the collection has a text
    field, embedded into it. ``progress`` (sync or async) hears of every image done."""
    root = Path(media_root) if media_root is not None else Path(folder)
    paths = list(files) if files is not None else image_files(Path(folder))
    fields = await collection_fields(client, collection)
    text_field = fields.text_field() if captions and fields.text_fields else None
    summary = IndexSummary()
    unreadable = 0
    started = time.perf_counter()
    by_media = {str(p.relative_to(root)) if p.is_relative_to(root) else str(p): p for p in paths}

    async def report() -> None:
        if progress is not None:
            done = summary.images + unreadable
            await call_back(
                progress, IndexProgress(done, len(by_media), summary.faces, len(summary.errors))
            )

    async def images() -> AsyncIterator[tuple[str, bytes]]:
        nonlocal unreadable
        for media_id, path in by_media.items():
            try:
                data = await asyncio.to_thread(path.read_bytes)
            except OSError as exc:
                unreadable += 1
                summary.errors.append((media_id, f"cannot read: {exc}"))
                await report()
                continue
            yield media_id, data

    upserts = _BoundedUpserts(client, max_in_flight, client.settings.stream_timeout_s)
    Labels = list[str | None] | None
    pending: list[tuple[embedder_pb2.ImageResult, dict[str, messages.MetadataInput], Labels]] = []
    pending_faces = 0
    labelling = await folder_persons.start(client, fields.face_model) if person_from_dir else None
    folder: str | None = None
    folder_results: list[embedder_pb2.ImageResult] = []

    async def label_folder() -> None:
        """Queue the buffered folder's images with the labels its evidence supports."""
        nonlocal folder_results, pending_faces
        if not folder_results:
            return
        assert labelling is not None
        if folder is None:
            face_labels: list[list[str | None]] = [[None] * len(r.faces) for r in folder_results]
        else:
            known = await folder_persons.known_references(client, collection, folder, fields.face)
            face_labels = labelling.label(folder, folder_results, known)
        for result, labels in zip(folder_results, face_labels, strict=True):
            meta = _image_metadata(result.media_id, by_media, root, captions, source)
            pending.append((result, meta, labels))
            pending_faces += len(result.faces)
        folder_results = []

    async def flush() -> None:
        nonlocal pending, pending_faces
        if not pending:
            return
        texts = await _caption_vectors(client, text_field, [meta for _, meta, _ in pending])
        points = []
        for (result, meta, labels), vectors in zip(pending, texts, strict=True):
            faces = messages.face_points(
                result, face_field=fields.face, metadata=meta, text_vectors=vectors
            )
            for point, person in zip(faces, labels or [None] * len(faces), strict=True):
                if person is not None:
                    point.metadata["person_id"].string_value = person
            points.extend(faces)
        await upserts.send(messages.upsert_request(collection, points))
        pending, pending_faces = [], 0

    results = embed_images(client, images(), model_id=fields.face_model)
    try:
        async for result in results:
            summary.images += 1
            if result.error_code:
                summary.errors.append((result.media_id, result.error_message))
            elif result.faces:
                summary.images_with_faces += 1
                summary.faces += len(result.faces)
                if labelling is not None:
                    here = folder_persons.folder_of(result.media_id, by_media, root)
                    if here != folder:
                        await label_folder()
                        folder = here
                    folder_results.append(result)
                else:
                    meta = _image_metadata(result.media_id, by_media, root, captions, source)
                    pending.append((result, meta, None))
                    pending_faces += len(result.faces)
                if pending_faces >= batch_size:
                    await flush()
            await report()
        if labelling is not None:
            await label_folder()
        await flush()
        await upserts.close()
    except BaseException:
        # Cancelled (Ctrl-C, task.cancel) or failed: stop both streams before going.
        await results.aclose()
        await upserts.cancel()
        raise
    summary.upserted = upserts.upserted
    if labelling is not None:
        summary.person_labels = dict(labelling.outcomes)
        summary.persons_enrolled = await folder_persons.enrol_new_persons(
            client, collection, labelling
        )
    summary.errors.extend((f"upsert batch {seq}", why) for seq, why in upserts.refused)
    summary.seconds = time.perf_counter() - started
    return summary


async def _caption_vectors(
    client: AsyncFacesearchClient,
    text_field: tuple[str, str] | None,
    metas: list[dict[str, messages.MetadataInput]],
) -> list[dict[str, tuple]]:
    """Per image, {text field: (vector, model id)} of its caption (EmbedText, one batch)."""
    out: list[dict[str, tuple]] = [{} for _ in metas]
    with_caption = [i for i, meta in enumerate(metas) if meta.get("caption")]
    if text_field is None or not with_caption:
        return out
    name, model = text_field
    reply = await client.embedder.EmbedText(
        messages.embed_text_request(
            [str(metas[i]["caption"]) for i in with_caption],
            model_id=model,
            role=embedder_pb2.TEXT_ROLE_CAPTION,
        )
    )
    for i, vector in zip(with_caption, reply.embeddings, strict=True):
        out[i] = {name: (vector, reply.model_id or model)}
    return out


def _image_metadata(
    media_id: str,
    by_media: dict[str, Path],
    root: Path,
    captions: bool,
    source: str | None,
) -> dict[str, messages.MetadataInput]:
    path = by_media.get(media_id)
    meta: dict[str, messages.MetadataInput] = {}
    if source:
        meta["source"] = source
    if path is None:
        return meta
    if captions and (caption := caption_of(path)):
        meta["caption"] = caption
    return meta
