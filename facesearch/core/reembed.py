"""Re-embedding: a collection rebuilt with another face model from its stored media, rolled out
by moving its aliases, while the old collection keeps serving.

The run is a loop of passes, each of which compares the old collection with the new one point
by point (a point keeps its id, so its labels, references and captions keep their meaning) and
does what differs:

- faces the new collection lacks: their images are read from the media roots, embedded with
  the new model, each stored face paired with the face detected at the same place
  (facesearch.face_matching) and stored with the old face's metadata and text vectors and the
  new face vector; a face not detected or embedded now is reported with its media id, never
  dropped silently (facesearch.reembed_journal remembers it, so a resumed run neither tries it
  forever nor forgets to say so);
- faces whose metadata changed in the old collection meanwhile (a label): the new metadata;
- faces deleted from the old collection meanwhile (a person forgotten): deleted.

A pass with nothing to do ends the loop. Killed and run again, the same loop resumes: the new
collection holds what was acknowledged. Then persons carry over (enrolled with their reference
faces, now re-embedded, under the new model's calibration) and the aliases move atomically
(SetAlias with allow_model_change); the old collection is kept until the caller drops it.

Writers that reach the old collection through an alias keep doing so until the alias moves, so
a catch-up after the move carries what they wrote since the last pass (faces added, metadata
changed, faces deleted, persons enrolled, changed or forgotten). It carries only those changes,
not a full comparison: the new collection now takes the alias's writes, which a comparison with
the old one would undo.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from facesearch import messages
from facesearch.async_client import AsyncFacesearchClient
from facesearch.core.callbacks import call_back
from facesearch.core.collections import scan_points
from facesearch.core.indexing import _BoundedUpserts, embed_images
from facesearch.errors import CollectionMismatch, FacesearchError
from facesearch.face_matching import match_faces, stored_face
from facesearch.index_resume import (
    IndexIncomplete,
    TransientRefusal,
    is_transient,
    is_transient_code,
    retrying,
    why,
)
from facesearch.reembed_journal import ReembedJournal, default_reembed_journal_path
from facesearch_contract.v1 import embedder_pb2, persons_pb2, retriever_pb2

# Passes before giving up on an old collection that keeps changing under the run.
MAX_PASSES = 5
# Ids per Get / Delete request (retriever.proto: GetRequest.ids, IdList.ids).
GET_BATCH = 1024
DELETE_BATCH = 10_000
# Images whose stored faces are fetched (Get) and stored (one upsert) together.
IMAGES_PER_BATCH = 32
_NAME_CHARS = re.compile(r"[^a-z0-9_-]+")
_BUILTIN_METADATA = {"person_id", "media_id", "source", "time"}


@dataclass(frozen=True)
class LostFaces:
    """Faces of one image that are not in the new collection, and why."""

    media_id: str
    face_ids: list[str]
    why: str


@dataclass
class ReembedSummary:
    source: str
    target: str
    model: str
    # Whether this run created the new collection (False: an earlier run did; resumed).
    created: bool = False
    # The file that lets a stopped run resume.
    journal: str = ""
    # The old collection at the last pass: its faces (points) and the images they come from.
    faces: int = 0
    media: int = 0
    # Of those faces, how many the new collection holds.
    carried: int = 0
    # Images embedded by this run, and those already done by an earlier run (resumed).
    reembedded: int = 0
    resumed: int = 0
    # Faces not carried: per image, with the reason (earlier runs' included).
    lost: list[LostFaces] = field(default_factory=list)
    # Points of the old collection with no media_id: nothing to embed them from.
    without_media: list[str] = field(default_factory=list)
    # Faces detected now that the old collection did not have (not added: index to add them).
    new_faces: int = 0
    # Changes made to the old collection during the run and carried by a later pass.
    updated: int = 0
    deleted: int = 0
    # Of those, the changes written between the last pass and the alias move (the catch-up):
    # faces added, updated and deleted, persons carried or forgotten.
    caught_up: int = 0
    # Persons enrolled in (or brought up to date in) the new collection, and those not carried.
    persons: int = 0
    persons_not_carried: list[tuple[str, str]] = field(default_factory=list)
    # Batches the retriever refused for good (media id, why): the aliases are then not moved.
    refused: list[tuple[str, str]] = field(default_factory=list)
    # Aliases now pointing at the new collection (empty when not moved), and why not, if so.
    aliases: list[str] = field(default_factory=list)
    not_moved: str = ""
    notes: list[str] = field(default_factory=list)
    passes: int = 0
    retries: int = 0
    seconds: float = 0.0
    # Time spent reading, embedding and storing images (the throughput below).
    embed_seconds: float = 0.0

    @property
    def lost_faces(self) -> int:
        return sum(len(lost.face_ids) for lost in self.lost)

    @property
    def images_per_second(self) -> float:
        return self.reembedded / self.embed_seconds if self.embed_seconds > 0 else 0.0

    @property
    def complete(self) -> bool:
        """Every face and person carried, and the aliases moved (if any were to move)."""
        return not (
            self.lost
            or self.without_media
            or self.persons_not_carried
            or self.refused
            or self.not_moved
        )


@dataclass(frozen=True)
class ReembedProgress:
    # "scanning", "embedding", "updating", "persons" or "moving aliases".
    phase: str
    done: int
    total: int
    faces: int
    lost: int


def default_target_name(source: str, model: str) -> str:
    """``<source>-<model>``, within the collection name rules ([a-z0-9][a-z0-9_-]{0,62})."""
    name = _NAME_CHARS.sub("-", f"{source}-{model}".lower()).strip("-_")
    return name[:63].rstrip("-_") or "reembedded"


async def reembed_collection(
    client: AsyncFacesearchClient,
    collection: str,
    model: str,
    *,
    into: str | None = None,
    alias: str | None = None,
    media_roots: Sequence[str | Path] | None = None,
    journal: str | Path | None = None,
    swap: bool = True,
    batch_size: int = 64,
    max_in_flight: int = 4,
    progress: Callable[[ReembedProgress], object] | None = None,
    retry_for_s: float = 60.0,
) -> ReembedSummary:
    """Build a new collection (``into``, default ``<collection>-<model>``) from the stored media
    of ``collection`` with the embedder's face model ``model``, while ``collection`` keeps
    serving; then move its aliases to the new collection atomically and keep the old one until
    it is dropped.

    ``collection`` is an alias (that alias moves) or a collection name (its aliases move; with
    none, give ``alias``: it is pointed at the old collection now, so clients can switch to it,
    and moved when done). ``swap=False`` builds without moving anything. The images are read
    from the media roots the collection was indexed from (CollectionInfo.media_roots, recorded
    by index_folder) or ``media_roots``. Faces that are not detected or embedded now are in
    ``summary.lost`` with their media ids; labels, metadata and captions carry over as stored;
    persons are enrolled again with their reference faces, under the new model's calibration.
    ``journal`` (a file) makes a run that was stopped resumable; a run without it (or with
    another) refuses to write into a new collection that already exists. Transient failures
    are retried for ``retry_for_s`` seconds (then IndexIncomplete). Raises FacesearchError for
    an unknown model, a collection with no media root, a new collection of another model, or
    persons to carry to a model without a calibration; refused calls raise grpc.RpcError."""
    run = _Reembed(
        client,
        collection,
        model,
        into=into,
        alias=alias,
        media_roots=media_roots,
        swap=swap,
        batch_size=batch_size,
        max_in_flight=max_in_flight,
        progress=progress,
        retry_for_s=retry_for_s,
    )
    return await run.run(journal)


@dataclass
class _Face:
    """What a pass needs to know of one stored face."""

    media: str
    digest: bytes


def _by_media(faces: dict[str, _Face]) -> dict[str, list[str]]:
    """Face ids per media id, for the faces that have one."""
    out: dict[str, list[str]] = defaultdict(list)
    for pid, face in faces.items():
        if face.media:
            out[face.media].append(pid)
    return out


def _digest(point: retriever_pb2.Point) -> bytes:
    meta = retriever_pb2.Point(metadata=point.metadata).SerializeToString(deterministic=True)
    return hashlib.blake2b(meta, digest_size=8).digest()


class _Reembed:
    def __init__(
        self,
        client: AsyncFacesearchClient,
        collection: str,
        model: str,
        *,
        into: str | None,
        alias: str | None,
        media_roots: Sequence[str | Path] | None,
        swap: bool,
        batch_size: int,
        max_in_flight: int,
        progress: Callable[[ReembedProgress], object] | None,
        retry_for_s: float,
    ) -> None:
        self.client, self.collection, self.model = client, collection, model
        self.into, self.alias, self.given_roots = into, alias, media_roots
        self.swap, self.batch_size, self.max_in_flight = swap, batch_size, max_in_flight
        self.progress, self.retry_for_s = progress, retry_for_s
        self.summary = ReembedSummary(collection, into or "", model)
        self.lost: dict[str, tuple[list[str], str]] = {}
        self.lost_ids: set[str] = set()
        # Ids refused for good by the retriever in this run: not tried again by a later pass.
        self.given_up: set[str] = set()
        self.retry_later: dict[str, str] = {}
        # The images of the pass now embedding (media id -> its stored face ids).
        self.work: dict[str, list[str]] = {}
        self.faces_stored = 0
        self.journal: ReembedJournal | None = None
        self.old_ids: set[str] = set()
        self.new_ids: set[str] = set()
        # Both collections as the last pass saw them, and the old collection's persons as they
        # were carried: what the catch-up after the alias move compares against.
        self.last_old: dict[str, _Face] = {}
        self.last_new: dict[str, _Face] = {}
        self.persons_carried: dict[str, bytes] = {}

    # ------------------------------------------------------------ set-up

    def _retrying(self):  # type: ignore[no-untyped-def]
        s = self.client.settings
        return retrying(self.retry_for_s, s.initial_backoff_s, s.max_backoff_s)

    async def _call(self, fn: Callable[[], object]) -> object:
        async for attempt in self._retrying():
            with attempt:
                return await fn()  # type: ignore[misc]
        raise AssertionError("unreachable: tenacity re-raises the last failure")

    async def _describe(self, name: str) -> retriever_pb2.CollectionInfo | None:
        try:
            reply = await self._call(
                lambda: self.client.retriever.DescribeCollection(
                    retriever_pb2.DescribeCollectionRequest(collection=name)
                )
            )
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                return None
            raise
        return reply.collection  # type: ignore[attr-defined]

    async def _prepare(self, journal_path: str | Path | None) -> None:
        info = await self._describe(self.collection)
        if info is None:
            raise FacesearchError(f"no collection or alias named {self.collection!r}")
        self.info, self.source = info, info.name
        self.fields = messages.CollectionFields.of(info)
        self.summary.source = self.source
        self.new_model = await self._face_model()
        if self.model == self.fields.face_model:
            raise FacesearchError(
                f"collection {self.source!r} is already embedded with {self.model!r}"
            )
        self.roots = self._media_roots()
        await self._check_persons()
        self.aliases, create_alias = await self._aliases()
        self.target = self.into or default_target_name(self.source, self.model)
        self.summary.target = self.target
        if self.target == self.source or self.target in self.aliases:
            raise FacesearchError(
                f"the new collection needs a name of its own, not {self.target!r} (--into)"
            )
        path = journal_path or default_reembed_journal_path(
            self.client.settings.retriever_address, info.uid, self.target, self.model
        )
        identity = {"reembed": info.uid, "model": self.model, "target": self.target}
        self.journal = await asyncio.to_thread(ReembedJournal, path, identity)
        self.summary.journal = str(path)
        for media, (ids, reason) in self.journal.lost.items():
            self._remember_lost(media, ids, reason)
        await self._ensure_target()
        if create_alias:
            # Clients can move to the alias now; it serves the old collection until the swap.
            await self._call(
                lambda: self.client.retriever.SetAlias(
                    retriever_pb2.SetAliasRequest(alias=self.alias, collection=self.source)
                )
            )

    def _journal(self) -> ReembedJournal:
        if self.journal is None:
            raise RuntimeError("the journal is opened by _prepare, before any write")
        return self.journal

    async def _face_model(self) -> embedder_pb2.ModelInfo:
        reply = await self._call(
            lambda: self.client.embedder.ListModels(embedder_pb2.ListModelsRequest())
        )
        faces = [
            m
            for m in reply.models  # type: ignore[attr-defined]
            if m.kind == embedder_pb2.MODEL_KIND_FACE_ENCODER
        ]
        for m in faces:
            if m.model_id == self.model:
                return m
        served = ", ".join(repr(m.model_id) for m in faces) or "none"
        raise FacesearchError(
            f"unknown face model {self.model!r}: the embedder serves {served} (ListModels; a "
            "fine-tuned model is served once its ONNX file and card are in the model dir)"
        )

    def _media_roots(self) -> list[Path]:
        given = [Path(r).expanduser().resolve() for r in self.given_roots or ()]
        roots = given or [Path(r) for r in self.info.media_roots]
        if not roots:
            raise FacesearchError(
                f"collection {self.source!r} has no recorded media root (it was indexed before "
                "index recorded one, or by other means): pass the folder its media ids are "
                "relative to with --media-root DIR (media_roots=[...])"
            )
        if not any(r.is_dir() for r in roots):
            shown = ", ".join(str(r) for r in roots[:3])
            raise FacesearchError(
                f"no media root of {self.source!r} is a folder here ({shown}): run where the "
                "media are, or pass where they are now with --media-root DIR"
            )
        return roots

    async def _check_persons(self) -> None:
        """Persons need identification in the new collection, which needs the new model's own
        calibration: refused now rather than after hours of embedding."""
        listed = await self._call(
            lambda: self.client.persons.ListPersons(
                persons_pb2.ListPersonsRequest(collection=self.source, page_size=1)
            )
        )
        self.person_count = int(listed.total)  # type: ignore[attr-defined]
        try:
            got = await self._call(
                lambda: self.client.persons.GetIdentificationSettings(
                    persons_pb2.GetIdentificationSettingsRequest(collection=self.source)
                )
            )
            self.identification: persons_pb2.IdentificationSettings | None = got.settings  # type: ignore[attr-defined]
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.FAILED_PRECONDITION:  # type: ignore[attr-defined]
                raise
            self.identification = None
        if (self.person_count or self.identification) and not self.new_model.calibration.bands:
            pending = self.new_model.calibration_pending or "it has no calibration"
            raise FacesearchError(
                f"collection {self.source!r} has {self.person_count} person(s) and "
                "identification; in the new collection they need the score calibration of "
                f"model {self.model!r} itself, which the embedder does not have ({pending})"
            )

    async def _aliases(self) -> tuple[list[str], bool]:
        """The aliases that move to the new collection at the end, and whether ``alias`` is
        to be created (pointing at the old collection) first."""
        if not self.swap:
            return [], False
        if self.collection != self.source:
            return [self.collection], False
        found = sorted(self.info.aliases)
        create = False
        if self.alias and self.alias not in found:
            listed = await self._call(
                lambda: self.client.retriever.ListAliases(retriever_pb2.ListAliasesRequest())
            )
            points_at = {a.alias: a.collection for a in listed.aliases}  # type: ignore[attr-defined]
            current = points_at.get(self.alias)
            target = self.into or default_target_name(self.source, self.model)
            if current not in (None, self.source, target):
                raise FacesearchError(
                    f"alias {self.alias!r} points at collection {current!r}, not at "
                    f"{self.source!r}: choose another --alias"
                )
            create = current is None
            found.append(self.alias)
        if not found:
            raise FacesearchError(
                f"{self.source!r} is a collection name and no alias points at it: searches by "
                "name cannot be moved to the new collection atomically. Pass --alias NAME "
                "(alias=...): NAME is pointed at the old collection now, send your searches "
                "through it, and it moves to the new collection when done; or build without "
                "moving anything (--no-swap, swap=False)"
            )
        return found, create

    async def _ensure_target(self) -> None:
        info = await self._describe(self.target)
        if info is None:
            request = self._target_spec()
            reply = await self._call(lambda: self.client.retriever.CreateCollection(request))
            uid = reply.collection.uid  # type: ignore[attr-defined]
            self._journal().record_created(uid)
            self.summary.created = True
            self.target_fields = messages.CollectionFields.of(reply.collection)  # type: ignore[attr-defined]
            return
        have = messages.CollectionFields.of(info)
        if have.face_model != self.model:
            raise CollectionMismatch(
                f"collection {self.target!r} exists and holds faces of model "
                f"{have.face_model!r}: vectors of {self.model!r} cannot go there (the retriever "
                f"refuses them too). Choose another name (--into) or drop {self.target!r}"
            )
        if self._journal().created_uid != info.uid:
            raise FacesearchError(
                f"collection {self.target!r} exists but this re-embedding did not create it "
                f"(its journal {self._journal().path} does not name it): a re-embedding deletes "
                "what the old collection lacks, so it only writes into its own. Drop it or "
                "choose another name (--into)"
            )
        self.target_fields = have

    def _target_spec(self) -> retriever_pb2.CreateCollectionRequest:
        """The old collection's spec with the face field bound to the new model."""
        info, new = self.info, self.new_model
        out = retriever_pb2.CreateCollectionRequest(
            name=self.target,
            shard_count=info.shard_count,
            description=info.description,
            metadata_schema=info.metadata_schema,
            max_metadata_fields=info.max_metadata_fields,
            metadata_fields=[f for f in info.metadata_fields if f.name not in _BUILTIN_METADATA],
            media_roots=[str(r) for r in self.roots],
        )
        for i, spec in enumerate(info.vector_fields):
            f = out.vector_fields.add()
            f.CopyFrom(spec)
            if i:
                continue
            f.model_id, f.dimension = new.model_id, new.dimension
            if spec.index.HasField("min_score"):
                # A score threshold is a model's calibration: the old one means nothing here.
                f.index.ClearField("min_score")
                f.index.tuning_objective = retriever_pb2.TUNING_OBJECTIVE_UNSPECIFIED
                self.summary.notes.append(
                    f"the face field's min_score ({spec.index.min_score:g}) was "
                    f"{spec.model_id!r}'s; the new collection tunes by recall@10 until one is "
                    f"set from {self.model!r}'s calibration"
                )
            if f.index.pq_m and f.dimension % f.index.pq_m:
                f.index.pq_m = 0  # the server picks one that divides the new dimension
        return out

    # ------------------------------------------------------------ the passes

    async def run(self, journal_path: str | Path | None) -> ReembedSummary:
        started = time.perf_counter()
        try:
            await self._prepare(journal_path)
            settled = await self._passes()
            await self._persons()
            if settled and not self.summary.refused:
                await self._move_aliases()
                if self.summary.aliases:
                    await self._catch_up()
            elif self.aliases:
                self.summary.not_moved = (
                    "the retriever refused some faces (below)"
                    if self.summary.refused
                    else f"the old collection kept changing through {MAX_PASSES} passes"
                )
        except Exception as exc:
            if not is_transient(exc):
                raise
            self._tally(started)
            raise IndexIncomplete(why(exc), self.summary) from exc
        finally:
            if self.journal is not None:
                self.journal.close()
        self._tally(started)
        return self.summary

    async def _passes(self) -> bool:
        """Passes until one finds nothing to do; False if the old collection kept changing."""
        first = True
        for _ in range(MAX_PASSES):
            async for attempt in self._retrying():
                with attempt:
                    retry = attempt.retry_state.attempt_number > 1
                    self.summary.retries += retry
                    # What an earlier run did is counted once, before this run stores anything.
                    did = await self._one_pass(first and not retry)
            first = False
            self.summary.passes += 1
            if not did:
                return True
        return False

    async def _inventory(self, name: str) -> dict[str, _Face]:
        out: dict[str, _Face] = {}
        async for p in scan_points(self.client, name, page_size=1000):
            media = p.metadata["media_id"].string_value if "media_id" in p.metadata else ""
            out[p.id] = _Face(media, _digest(p))
            if len(out) % 5000 == 0:
                await self._report("scanning", len(out), 0)
        return out

    async def _one_pass(self, first: bool) -> bool:
        """Compare the collections and do what differs; False when nothing did."""
        old = await self._inventory(self.source)
        new = await self._inventory(self.target)
        by_media = _by_media(old)
        missing = [pid for pid in old if pid not in new and pid not in self.given_up]
        self.summary.without_media = sorted(p for p in missing if not old[p].media)
        todo = sorted({old[p].media for p in missing if old[p].media and p not in self.lost_ids})
        if first:
            self.summary.resumed = sum(
                1 for m, ids in by_media.items() if all(i in new or i in self.lost_ids for i in ids)
            )
        gone = [pid for pid in new if pid not in old]
        changed = [pid for pid, f in old.items() if pid in new and new[pid].digest != f.digest]
        self.summary.faces, self.summary.media = len(old), len(by_media)
        self.summary.carried = sum(1 for p in old if p in new)
        self.old_ids, self.new_ids = set(old), set(new)
        self.last_old, self.last_new = old, new
        if gone:
            await self._delete(gone)
        if changed:
            await self._update(changed)
        if todo:
            self.work = {m: by_media[m] for m in todo}
            await self._embed(self.work)
        return bool(gone or changed or todo)

    async def _delete(self, ids: list[str]) -> None:
        """Faces deleted from the old collection since they were carried: a forgotten person
        must not come back with the new collection."""
        for i in range(0, len(ids), DELETE_BATCH):
            reply = await self.client.retriever.Delete(
                retriever_pb2.DeleteRequest(
                    collection=self.target, ids=retriever_pb2.IdList(ids=ids[i : i + DELETE_BATCH])
                )
            )
            self.summary.deleted += int(reply.deleted)

    async def _update(self, ids: list[str]) -> None:
        """The old collection's metadata (a label set or removed meanwhile) on the new faces."""
        for i in range(0, len(ids), GET_BATCH):
            part = ids[i : i + GET_BATCH]
            old = {p.id: p for p in await self._get(self.source, part, False)}
            points = []
            for p in await self._get(self.target, part, True):
                if p.id in old:
                    p.metadata.clear()
                    for k, v in old[p.id].metadata.items():
                        p.metadata[k].CopyFrom(v)
                    points.append(p)
            if points:
                await self.client.retriever.Upsert(messages.upsert_request(self.target, points))
                self.summary.updated += len(points)
            await self._report("updating", i + len(part), len(ids))

    async def _get(self, name: str, ids: list[str], vectors: bool) -> list[retriever_pb2.Point]:
        out: list[retriever_pb2.Point] = []
        for i in range(0, len(ids), GET_BATCH):
            reply = await self.client.retriever.Get(
                retriever_pb2.GetRequest(
                    collection=name, ids=ids[i : i + GET_BATCH], with_vectors=vectors
                )
            )
            out.extend(reply.points)
        return out

    # ------------------------------------------------------------ embedding

    def _locate(self, media_id: str) -> Path | None:
        path = Path(media_id)
        if path.is_absolute():
            return path if path.is_file() else None
        for root in self.roots:
            if (root / path).is_file():
                return root / path
        return None

    def _remember_lost(self, media: str, ids: list[str], reason: str) -> None:
        self.lost[media] = (ids, reason)
        self.lost_ids.update(ids)

    def _lose(self, media: str, ids: list[str], reason: str) -> None:
        self._remember_lost(media, ids, reason)
        self._journal().record_lost(media, ids, reason)

    async def _report(self, phase: str, done: int, total: int) -> None:
        if self.progress is not None:
            p = ReembedProgress(phase, done, total, self.faces_stored, len(self.lost_ids))
            await call_back(self.progress, p)

    async def _embed(self, work: dict[str, list[str]]) -> None:
        """Embed the images of ``work`` (media id -> its stored face ids) with the new model
        and store their faces in the new collection."""
        started = time.perf_counter()
        self.retry_later = {}
        upserts = _BoundedUpserts(
            self.client,
            self.max_in_flight,
            self.client.settings.stream_timeout_s,
            self._acked,
            self._refused,
        )
        pending: list[embedder_pb2.ImageResult] = []
        done = 0

        async def images() -> AsyncIterator[tuple[str, bytes]]:
            nonlocal done
            for media, ids in work.items():
                path = self._locate(media)
                try:
                    if path is None:
                        raise FileNotFoundError("not found under the media roots")
                    data = await asyncio.to_thread(path.read_bytes)
                except OSError as exc:
                    roots = ", ".join(str(r) for r in self.roots[:3])
                    self._lose(media, ids, f"image not read ({roots}): {exc.strerror or exc}")
                    done += 1
                    continue
                yield media, data

        async def flush() -> None:
            nonlocal pending
            if not pending:
                return
            wanted = [i for r in pending for i in work[r.media_id]]
            stored = {p.id: p for p in await self._get(self.source, wanted, True)}
            points: list[retriever_pb2.Point] = []
            media: list[str] = []
            for result in pending:
                faces = [stored[i] for i in work[result.media_id] if i in stored]
                built = self._rebuild(result, faces)
                if built:
                    points.extend(built)
                    media.append(result.media_id)
            pending = []
            if points:
                await upserts.send(messages.upsert_request(self.target, points), media)

        results = embed_images(self.client, images(), model_id=self.model)
        try:
            async for result in results:
                done += 1
                self.summary.reembedded += 1
                media = result.media_id
                if result.error_code:
                    if is_transient_code(result.error_code):
                        self.retry_later[media] = result.error_message
                    else:
                        self._lose(media, work[media], f"not embedded: {result.error_message}")
                else:
                    pending.append(result)
                    if (
                        sum(len(r.faces) for r in pending) >= self.batch_size
                        or len(pending) >= IMAGES_PER_BATCH
                    ):
                        await flush()
                await self._report("embedding", done, len(work))
            await flush()
            await upserts.close()
        except BaseException:
            await results.aclose()
            await upserts.cancel()
            raise
        finally:
            self.summary.embed_seconds += time.perf_counter() - started
        if self.retry_later:
            first = next(iter(self.retry_later.items()))
            raise TransientRefusal(
                f"{len(self.retry_later)} image(s) refused for now, e.g. {first[0]}: {first[1]}"
            )

    def _rebuild(
        self, result: embedder_pb2.ImageResult, stored: list[retriever_pb2.Point]
    ) -> list[retriever_pb2.Point]:
        """The stored faces of one image with their new face vectors; the faces not detected
        now are lost (reported), faces detected now that were not stored are counted."""
        boxes = [(f.box.x, f.box.y, f.box.width, f.box.height) for f in result.faces]
        pairs = match_faces([stored_face(p) for p in stored], boxes)
        self.summary.new_faces += len(result.faces) - len(pairs)
        unmatched = [p.id for p in stored if p.id not in pairs]
        if unmatched:
            reason = (
                "no face detected in the image now"
                if not result.faces
                else f"{len(unmatched)} of its {len(stored)} face(s) not detected at the same "
                "place now"
            )
            self._lose(result.media_id, unmatched, reason)
        attributes = self.target_fields.attribute_field
        out = []
        for old in stored:
            if old.id not in pairs:
                continue
            face = result.faces[pairs[old.id]]
            p = retriever_pb2.Point(id=old.id)
            for k, v in old.metadata.items():
                p.metadata[k].CopyFrom(v)
            # Text and attribute vectors describe the image and the face, not the face model:
            # they carry over, unless the embedder gave a fresh attribute vector of the field's
            # model.
            for name, vector in old.vectors.items():
                if name != self.target_fields.face:
                    p.vectors[name].CopyFrom(vector)
                    p.model_ids[name] = old.model_ids[name]
            if attributes and face.attributes.model_id == attributes[1]:
                p.vectors[attributes[0]].CopyFrom(face.attributes.vector)
                p.model_ids[attributes[0]] = attributes[1]
            p.vectors[self.target_fields.face].CopyFrom(face.embedding)
            p.model_ids[self.target_fields.face] = face.model_id
            out.append(p)
        return out

    def _acked(self, media: list[str], upserted: int) -> None:
        self.faces_stored += upserted

    def _refused(self, media: list[str], code: int, message: str) -> None:
        for m in media:
            if is_transient_code(code):
                self.retry_later[m] = message
            else:
                # Not sent again by a later pass of this run; the next run tries again.
                self.given_up.update(self.work.get(m, ()))
                self.summary.refused.append((m, message))

    # ------------------------------------------------------------ persons and aliases

    async def _persons(self) -> None:
        """Every person of the old collection in the new one, with the reference faces that
        were re-embedded; persons forgotten in the old collection meanwhile are forgotten."""
        if not (self.person_count or self.identification):
            return
        await self._ensure_identification()
        kept: set[str] = set()
        async for person in self._each_person(self.source):
            kept.add(person.person_id)
            await self._carry_person(person)
            self.persons_carried[person.person_id] = person.SerializeToString(deterministic=True)
            await self._report("persons", len(kept), self.person_count)
        stale = [p.person_id async for p in self._each_person(self.target)]
        for pid in stale:
            if pid not in kept:
                await self._call(
                    lambda pid=pid: self.client.persons.ForgetPerson(
                        persons_pb2.ForgetPersonRequest(collection=self.target, person_id=pid)
                    )
                )

    async def _each_person(self, collection: str) -> AsyncIterator[persons_pb2.Person]:
        token = ""
        while True:
            page = await self._call(
                lambda token=token: self.client.persons.ListPersons(
                    persons_pb2.ListPersonsRequest(
                        collection=collection, page_size=100, page_token=token
                    )
                )
            )
            for person in page.persons:  # type: ignore[attr-defined]
                yield person
            token = page.next_page_token  # type: ignore[attr-defined]
            if not token:
                return

    async def _ensure_identification(self) -> None:
        """The new model's calibration with the old collection's operating points."""
        try:
            await self._call(
                lambda: self.client.persons.GetIdentificationSettings(
                    persons_pb2.GetIdentificationSettingsRequest(collection=self.target)
                )
            )
            return
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.FAILED_PRECONDITION:  # type: ignore[attr-defined]
                raise
        settings = persons_pb2.IdentificationSettings(
            calibration=self.new_model.calibration, vector_field=self.target_fields.face
        )
        if self.identification is not None:
            settings.operating_points.CopyFrom(self.identification.operating_points)
        await self._call(
            lambda: self.client.persons.ConfigureIdentification(
                persons_pb2.ConfigureIdentificationRequest(
                    collection=self.target, settings=settings
                )
            )
        )

    async def _carry_person(self, person: persons_pb2.Person) -> None:
        pid, refs = person.person_id, list(person.reference_ids)
        present = {p.id for p in await self._get(self.target, refs, False)} if refs else set()
        kept = [r for r in refs if r in present]
        try:
            have: persons_pb2.Person | None = (
                await self._call(
                    lambda: self.client.persons.GetPerson(
                        persons_pb2.GetPersonRequest(collection=self.target, person_id=pid)
                    )
                )
            ).person  # type: ignore[attr-defined]
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                raise
            have = None
        try:
            if have is None:
                if not kept:
                    self.summary.persons_not_carried.append(
                        (pid, f"none of its {len(refs)} reference face(s) was re-embedded")
                    )
                    return
                enrol = persons_pb2.Person(
                    person_id=pid,
                    display_name=person.display_name,
                    attributes=person.attributes,
                    reference_ids=kept,
                )
                await self._call(
                    lambda: self.client.persons.EnrollPerson(
                        persons_pb2.EnrollPersonRequest(collection=self.target, person=enrol)
                    )
                )
            else:
                await self._bring_up_to_date(person, have, kept)
        except grpc.RpcError as err:
            if is_transient(err):
                raise
            self.summary.persons_not_carried.append((pid, why(err)))
            return
        self.summary.persons += 1
        if len(kept) < len(refs):
            self.summary.notes.append(
                f"person {pid!r}: {len(refs) - len(kept)} of its {len(refs)} reference face(s) "
                "not re-embedded"
            )

    async def _bring_up_to_date(
        self, person: persons_pb2.Person, have: persons_pb2.Person, kept: list[str]
    ) -> None:
        """A person carried by an earlier run: its name, attributes and references now."""
        pid = person.person_id
        if have.display_name != person.display_name or dict(have.attributes) != dict(
            person.attributes
        ):
            update = persons_pb2.UpdatePersonRequest(
                collection=self.target,
                person_id=pid,
                display_name=person.display_name,
                attributes=person.attributes,
                remove_attributes=[k for k in have.attributes if k not in person.attributes],
            )
            await self._call(lambda: self.client.persons.UpdatePerson(update))
        extra = [r for r in kept if r not in have.reference_ids]
        if extra:
            await self._call(
                lambda: self.client.persons.AddReferences(
                    persons_pb2.AddReferencesRequest(
                        collection=self.target, person_id=pid, reference_ids=extra
                    )
                )
            )

    async def _catch_up(self) -> None:
        """Carry what was written to the old collection between the last pass and the alias
        move (module docstring): only its own changes since that pass, and a metadata change
        only onto a new face the alias's writers have not changed since."""
        before, new_before = self.last_old, self.last_new
        s = self.summary
        done = s.updated + s.deleted + s.persons
        async for attempt in self._retrying():
            with attempt:
                old = await self._inventory(self.source)
                new = await self._inventory(self.target)
                added = [p for p in old if p not in before and p not in new]
                changed = [
                    p
                    for p, f in old.items()
                    if p in before
                    and before[p].digest != f.digest
                    and p in new
                    and p in new_before
                    and new[p].digest == new_before[p].digest
                ]
                gone = [p for p in before if p not in old and p in new]
                if gone:
                    await self._delete(gone)
                if changed:
                    await self._update(changed)
                media = sorted({old[p].media for p in added if old[p].media})
                if media:
                    by_media = _by_media(old)
                    self.work = {m: by_media[m] for m in media}
                    before_faces = self.faces_stored
                    await self._embed(self.work)
                    s.caught_up += self.faces_stored - before_faces
                s.without_media = sorted(
                    set(s.without_media) | {p for p in added if not old[p].media}
                )
                self.old_ids = set(old)
                self.new_ids = (self.new_ids | (set(added) - self.lost_ids)) - set(gone)
                s.faces = len(old)
                s.carried = len(self.old_ids & self.new_ids)
        if self.person_count or self.identification:
            await self._catch_up_persons()
        s.caught_up += s.updated + s.deleted + s.persons - done

    async def _catch_up_persons(self) -> None:
        """Persons enrolled, changed or forgotten in the old collection since they were carried.
        Persons the new collection gained through the alias since are left alone."""
        now: set[str] = set()
        async for person in self._each_person(self.source):
            now.add(person.person_id)
            state = person.SerializeToString(deterministic=True)
            if self.persons_carried.get(person.person_id) != state:
                await self._carry_person(person)
                self.persons_carried[person.person_id] = state
        for pid in [p for p in self.persons_carried if p not in now]:
            try:
                await self._call(
                    lambda pid=pid: self.client.persons.ForgetPerson(
                        persons_pb2.ForgetPersonRequest(collection=self.target, person_id=pid)
                    )
                )
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                    raise
            del self.persons_carried[pid]
            self.summary.caught_up += 1

    async def _move_aliases(self) -> None:
        for i, name in enumerate(self.aliases):
            await self._report("moving aliases", i, len(self.aliases))
            # Atomic in the retriever: every search through the alias reads the old or the new
            # collection, none fails for the move.
            await self._call(
                lambda name=name: self.client.retriever.SetAlias(
                    retriever_pb2.SetAliasRequest(
                        alias=name, collection=self.target, allow_model_change=True
                    )
                )
            )
            self.summary.aliases.append(name)

    def _tally(self, started: float) -> None:
        s = self.summary
        s.lost = [
            LostFaces(m, kept, reason)
            for m, (ids, reason) in sorted(self.lost.items())
            if (kept := [i for i in ids if i in self.old_ids and i not in self.new_ids])
        ]
        s.seconds = time.perf_counter() - started
