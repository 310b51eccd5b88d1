"""High-level jobs composed from plain RPCs (ARCHITECTURE.md, "The flows").

Every step is an ordinary call on ``client.embedder`` / ``.retriever`` / ``.personalizer``;
messages come from facesearch.messages. Those who orchestrate themselves can copy any step.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from facesearch import messages
from facesearch.client import FacesearchClient
from facesearch.errors import FacesearchError, NoFaceFound
from facesearch_contract.v1 import embedder_pb2, personalizer_pb2, retriever_pb2

log = logging.getLogger("facesearch.flows")

# ---------------------------------------------------------------- collections


def collection_fields(client: FacesearchClient, collection: str) -> messages.CollectionFields:
    reply = client.retriever.DescribeCollection(
        retriever_pb2.DescribeCollectionRequest(collection=collection)
    )
    return messages.CollectionFields.of(reply.collection)


def ensure_collection(
    client: FacesearchClient,
    name: str,
    *,
    shards: int = 1,
    with_text_field: bool = True,
    description: str = "",
) -> tuple[retriever_pb2.CollectionInfo, bool]:
    """The collection, created for the embedder's default models when missing.

    Returns (info, created). The face field uses the default face encoder; with
    ``with_text_field`` a "caption" field uses the default text encoder, when there is one."""
    try:
        reply = client.retriever.DescribeCollection(
            retriever_pb2.DescribeCollectionRequest(collection=name)
        )
        return reply.collection, False
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
            raise
    models = client.embedder.ListModels(embedder_pb2.ListModelsRequest()).models
    face = messages.default_model(models, embedder_pb2.MODEL_KIND_FACE_ENCODER)
    if face is None:
        raise FacesearchError(
            "the embedder reports no default face encoder (ListModels): check its models"
        )
    text = (
        messages.default_model(models, embedder_pb2.MODEL_KIND_TEXT_ENCODER)
        if with_text_field
        else None
    )
    request = messages.create_collection_request(
        name, face, text, shards=shards, description=description
    )
    try:
        return client.retriever.CreateCollection(request).collection, True
    except grpc.RpcError as err:
        # Someone else created it between our describe and create: use theirs.
        if err.code() != grpc.StatusCode.ALREADY_EXISTS:  # type: ignore[attr-defined]
            raise
        reply = client.retriever.DescribeCollection(
            retriever_pb2.DescribeCollectionRequest(collection=name)
        )
        return reply.collection, False


# ---------------------------------------------------------------- indexing


@dataclass
class IndexSummary:
    images: int = 0
    images_with_faces: int = 0
    faces: int = 0
    upserted: int = 0
    # (media id, what went wrong); an image that failed is skipped, the run goes on.
    errors: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

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


class _BoundedUpserts:
    """An UpsertStream with at most ``max_in_flight`` unacknowledged batches.

    The producer blocks in ``send`` while the retriever is behind, so memory stays bounded
    however fast the embedder is."""

    _END = object()

    def __init__(self, client: FacesearchClient, max_in_flight: int, timeout: float | None):
        self._slots = threading.Semaphore(max_in_flight)
        self._requests: queue.Queue[object] = queue.Queue()
        self._stream = client.retriever.UpsertStream(self._outgoing(), timeout=timeout)
        self.upserted = 0
        self.refused: list[tuple[int, str]] = []
        self.failure: grpc.RpcError | None = None
        self._sent = 0
        self._reader = threading.Thread(target=self._read_acks, daemon=True)
        self._reader.start()

    def _outgoing(self) -> Iterator[retriever_pb2.UpsertRequest]:
        while (item := self._requests.get()) is not self._END:
            yield item  # type: ignore[misc]

    def _read_acks(self) -> None:
        try:
            for ack in self._stream:
                if ack.error_code:
                    self.refused.append((int(ack.sequence), ack.error_message))
                else:
                    self.upserted += ack.result.upserted
                self._slots.release()
        except grpc.RpcError as err:
            self.failure = err
        finally:
            # Unblock a producer waiting for a slot that will never come.
            for _ in range(64):
                self._slots.release()

    def send(self, request: retriever_pb2.UpsertRequest) -> None:
        while not self._slots.acquire(timeout=0.5):
            self._raise_if_failed()
        self._raise_if_failed()
        self._requests.put(request)
        self._sent += 1

    def _raise_if_failed(self) -> None:
        if self.failure is not None:
            raise self.failure

    def close(self) -> None:
        self._requests.put(self._END)
        self._reader.join()
        self._raise_if_failed()

    def cancel(self) -> None:
        self._stream.cancel()
        self._requests.put(self._END)


def index_folder(
    client: FacesearchClient,
    folder: str | Path,
    collection: str,
    *,
    batch_size: int = 64,
    max_in_flight: int = 4,
    progress: Callable[[IndexProgress], None] | None = None,
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
    name is stored as person_id (the LFW layout). With ``captions`` a sidecar ``.txt`` caption
    is stored and, when the collection has a text field, embedded into it."""
    root = Path(media_root) if media_root is not None else Path(folder)
    paths = list(files) if files is not None else image_files(Path(folder))
    fields = collection_fields(client, collection)
    text_field = None
    if captions and fields.text_fields:
        text_field = fields.text_field()
    summary = IndexSummary()
    unreadable = 0
    started = time.perf_counter()
    by_media = {str(p.relative_to(root)) if p.is_relative_to(root) else str(p): p for p in paths}

    def images() -> Iterator[tuple[str, bytes]]:
        for media_id, path in by_media.items():
            try:
                data = path.read_bytes()
            except OSError as exc:
                nonlocal unreadable
                unreadable += 1
                summary.errors.append((media_id, f"cannot read: {exc}"))
                report()
                continue
            yield media_id, data

    def report() -> None:
        if progress is not None:
            done = summary.images + unreadable
            progress(IndexProgress(done, len(by_media), summary.faces, len(summary.errors)))

    upserts = _BoundedUpserts(client, max_in_flight, client.settings.stream_timeout_s)
    pending: list[tuple[embedder_pb2.ImageResult, dict[str, messages.MetadataInput]]] = []
    pending_faces = 0

    def flush() -> None:
        nonlocal pending, pending_faces
        if not pending:
            return
        text_vectors: list[dict[str, tuple]] = [{} for _ in pending]
        if text_field is not None:
            with_caption = [i for i, (_, meta) in enumerate(pending) if meta.get("caption")]
            if with_caption:
                reply = client.embedder.EmbedText(
                    messages.embed_text_request(
                        [str(pending[i][1]["caption"]) for i in with_caption],
                        model_id=text_field[1],
                        role=embedder_pb2.TEXT_ROLE_CAPTION,
                    )
                )
                for i, vector in zip(with_caption, reply.embeddings, strict=True):
                    text_vectors[i] = {text_field[0]: (vector, reply.model_id or text_field[1])}
        points = []
        for (result, meta), texts in zip(pending, text_vectors, strict=True):
            points.extend(
                messages.face_points(
                    result, face_field=fields.face, metadata=meta, text_vectors=texts
                )
            )
        upserts.send(messages.upsert_request(collection, points))
        pending, pending_faces = [], 0

    embed_stream = client.embedder.EmbedImagesStream(
        messages.embed_stream_requests(images(), model_id=fields.face_model),
        timeout=client.settings.stream_timeout_s,
    )
    try:
        for result in embed_stream:
            summary.images += 1
            if result.error_code:
                summary.errors.append((result.media_id, result.error_message))
            elif result.faces:
                summary.images_with_faces += 1
                summary.faces += len(result.faces)
                meta = _image_metadata(
                    result.media_id, by_media, root, person_from_dir, captions, source
                )
                pending.append((result, meta))
                pending_faces += len(result.faces)
                if pending_faces >= batch_size:
                    flush()
            report()
        flush()
        upserts.close()
    except BaseException:
        embed_stream.cancel()
        upserts.cancel()
        raise
    summary.upserted = upserts.upserted
    summary.errors.extend((f"upsert batch {seq}", why) for seq, why in upserts.refused)
    summary.seconds = time.perf_counter() - started
    return summary


def _image_metadata(
    media_id: str,
    by_media: dict[str, Path],
    root: Path,
    person_from_dir: bool,
    captions: bool,
    source: str | None,
) -> dict[str, messages.MetadataInput]:
    path = by_media.get(media_id)
    meta: dict[str, messages.MetadataInput] = {}
    if source:
        meta["source"] = source
    if path is None:
        return meta
    if person_from_dir and path.parent != root:
        meta["person_id"] = path.parent.name
    if captions and (caption := caption_of(path)):
        meta["caption"] = caption
    return meta


# ---------------------------------------------------------------- search


def embed_largest_face(
    client: FacesearchClient, image: messages.ImageSource, model_id: str = ""
) -> embedder_pb2.Face:
    reply = client.embedder.EmbedImages(messages.embed_images_request([image], model_id=model_id))
    result = reply.results[0]
    if result.error_code:
        raise FacesearchError(f"{messages.describe_image(image)}: {result.error_message}")
    face = messages.largest_face(result)
    if face is None:
        raise NoFaceFound(messages.describe_image(image))
    return face


def _search_one(
    client: FacesearchClient, request: retriever_pb2.SearchRequest
) -> list[messages.Hit]:
    return messages.hits(client.retriever.Search(request).results[0])


def search_by_image(
    client: FacesearchClient,
    collection: str,
    image: messages.ImageSource,
    *,
    k: int = 10,
    where: messages.FilterSpec = None,
) -> list[messages.Hit]:
    """Faces most like the largest face in ``image`` (embed, then Search)."""
    fields = collection_fields(client, collection)
    face = embed_largest_face(client, image, fields.face_model)
    request = messages.search_request(
        collection, [messages.vector_term(fields.face, face)], k=k, where=where
    )
    return _search_one(client, request)


def _embed_text(client: FacesearchClient, text: str, model_id: str, role: int) -> tuple:
    reply = client.embedder.EmbedText(
        messages.embed_text_request([text], model_id=model_id, role=role)
    )
    return reply.embeddings[0], reply.model_id or model_id


def search_by_text(
    client: FacesearchClient,
    collection: str,
    text: str,
    *,
    k: int = 10,
    field: str | None = None,
    where: messages.FilterSpec = None,
) -> list[messages.Hit]:
    """Faces whose stored text (caption, tags) is most like ``text``."""
    fields = collection_fields(client, collection)
    name, model = fields.text_field(field)
    vector, model_id = _embed_text(client, text, model, embedder_pb2.TEXT_ROLE_QUERY)
    request = messages.search_request(
        collection, [messages.text_term(name, vector, model_id)], k=k, where=where
    )
    return _search_one(client, request)


def search_person_in_context(
    client: FacesearchClient,
    collection: str,
    person_id: str,
    context: str,
    *,
    k: int = 10,
    person_collection: str = "",
    person_weight: float = 1.0,
    context_weight: float = 1.0,
    where: messages.FilterSpec = None,
) -> list[messages.Hit]:
    """A named person in a context ("Anna Berg shaking hands at a summit", Id-CLIP's task):
    the person's enrolled faces and the context text, fused in one multi-term query."""
    fields = collection_fields(client, collection)
    name, model = fields.text_field()
    vector, model_id = _embed_text(client, context, model, embedder_pb2.TEXT_ROLE_QUERY)
    terms = [
        messages.person_term(
            fields.face, person_id, person_collection=person_collection, weight=person_weight
        ),
        messages.text_term(name, vector, model_id, weight=context_weight),
    ]
    return _search_one(client, messages.search_request(collection, terms, k=k, where=where))


def search_face_with_description(
    client: FacesearchClient,
    collection: str,
    image: messages.ImageSource,
    description: str,
    *,
    k: int = 10,
    face_weight: float = 1.0,
    description_weight: float = 0.5,
    where: messages.FilterSpec = None,
) -> list[messages.Hit]:
    """A (possibly poor) face plus a description of it (TGFR): both terms fused."""
    fields = collection_fields(client, collection)
    face = embed_largest_face(client, image, fields.face_model)
    name, model = fields.text_field()
    vector, model_id = _embed_text(client, description, model, embedder_pb2.TEXT_ROLE_DESCRIPTION)
    terms = [
        messages.vector_term(fields.face, face, weight=face_weight),
        messages.text_term(name, vector, model_id, weight=description_weight),
    ]
    return _search_one(client, messages.search_request(collection, terms, k=k, where=where))


# ---------------------------------------------------------------- interactive sessions

FeedbackFn = Callable[[personalizer_pb2.SessionState], "list[personalizer_pb2.Feedback] | None"]


def run_session(
    client: FacesearchClient,
    collection: str,
    user_id: str,
    on_round: FeedbackFn,
    *,
    k: int = 0,
    seed: personalizer_pb2.SessionSeed | None = None,
    where: messages.FilterSpec = None,
    max_rounds: int = 50,
) -> messages.SessionOutcome:
    """An interactive search: show each round's candidates to ``on_round``, send back its
    labels, until the person is found, the collection runs out, ``on_round`` returns None or
    an empty list, or ``max_rounds`` pass. The session is always ended."""
    state = client.personalizer.StartSession(
        messages.start_session_request(user_id, collection, k=k, seed=seed, where=where)
    ).state
    try:
        while not state.finished and state.round < max_rounds:
            labels = on_round(state)
            if not labels:
                break
            state = client.personalizer.SubmitFeedback(
                personalizer_pb2.SubmitFeedbackRequest(session_id=state.session_id, feedback=labels)
            ).state
    finally:
        rounds = _end_session(client, state)
    return messages.SessionOutcome(
        rounds=rounds or state.round, finished=state.finished, found_id=state.found_id
    )


def _feedback(point_id: str, *, found: bool, similar: bool) -> personalizer_pb2.Feedback:
    """A simulated user's label: found wins over similar."""
    if found:
        label = personalizer_pb2.FEEDBACK_LABEL_FOUND
    elif similar:
        label = personalizer_pb2.FEEDBACK_LABEL_SIMILAR
    else:
        label = personalizer_pb2.FEEDBACK_LABEL_DISSIMILAR
    return personalizer_pb2.Feedback(id=point_id, label=label)  # type: ignore[arg-type]


def simulated_user(
    person_id: str,
    target_id: str | None = None,
    *,
    show: Callable[[personalizer_pb2.SessionState], None] | None = None,
) -> FeedbackFn:
    """A user who has ``person_id`` in mind ("target testing"): marks that person's faces
    similar, every other face dissimilar, and says "found" at ``target_id`` (or, without one,
    at the first face of the person). Ground truth is the stored person_id metadata.
    ``show`` sees each round first (e.g. to print it)."""

    def on_round(state: personalizer_pb2.SessionState) -> list[personalizer_pb2.Feedback]:
        if show is not None:
            show(state)
        labels = []
        for c in state.candidates:
            is_person = messages.python_value(c.metadata["person_id"]) == person_id
            found = c.id == target_id if target_id else is_person
            labels.append(_feedback(c.id, found=found, similar=is_person))
        return labels

    return on_round


def simulated_user_by_likeness(
    client: FacesearchClient,
    collection: str,
    target_id: str,
    *,
    threshold: float = 0.3,
    show: Callable[[personalizer_pb2.SessionState], None] | None = None,
) -> FeedbackFn:
    """A user who has the face ``target_id`` in mind but no identity labels to go by (e.g. the
    sample photos of the model package): marks a shown face similar when its face vector's
    cosine to the target's is at least ``threshold``, dissimilar otherwise, and says "found" at
    the target. Ground truth is the embedding, as in target testing without labels."""
    fields = collection_fields(client, collection)

    def face_vectors(ids: list[str]) -> dict[str, np.ndarray]:
        reply = client.retriever.Get(
            retriever_pb2.GetRequest(collection=collection, ids=ids, with_vectors=True)
        )
        return {
            p.id: np.asarray(p.vectors[fields.face].values, dtype=np.float32)
            for p in reply.points
            if fields.face in p.vectors
        }

    target = face_vectors([target_id]).get(target_id)
    if target is None:
        raise FacesearchError(f"the target {target_id!r} is not in collection {collection!r}")

    def on_round(state: personalizer_pb2.SessionState) -> list[personalizer_pb2.Feedback]:
        if show is not None:
            show(state)
        vectors = face_vectors([c.id for c in state.candidates])
        labels = []
        for c in state.candidates:
            similar = c.id in vectors and float(vectors[c.id] @ target) >= threshold
            labels.append(_feedback(c.id, found=c.id == target_id, similar=similar))
        return labels

    return on_round


def _end_session(client: FacesearchClient, state: personalizer_pb2.SessionState) -> int:
    try:
        reply = client.personalizer.EndSession(
            personalizer_pb2.EndSessionRequest(session_id=state.session_id)
        )
        return reply.rounds
    except grpc.RpcError as err:
        # A finished session may already be gone; the outcome is known either way.
        if err.code() == grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
            return state.round
        raise
