"""gRPC adapter of the persons service: persons, face labels and identification.

Persons and references live in the collection's PersonStore (SQLite, beside its shards);
labels live on the faces (their "person_id" metadata) in the collection itself, so a search
filter, a delete by person and a snapshot all see them. A write that touches both changes the
store first and the labels second, and undoes the store if the labels fail; one lock per
collection orders persons writes, so two merges never interleave.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import grpc
import numpy as np

from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_contract.v1 import persons_pb2 as pb
from facesearch_contract.v1 import persons_service_pb2_grpc as pb_grpc
from facesearch_contract.v1 import retriever_pb2 as rpb
from facesearch_server.retriever.catalog import Catalog
from facesearch_server.retriever.collection import Collection, person_filter
from facesearch_server.retriever.persons import cluster_book, face_clusters
from facesearch_server.retriever.persons import person_rules as rules
from facesearch_server.retriever.persons.cluster_store import ClusterStore
from facesearch_server.retriever.persons.person_store import PersonRecord, PersonStore
from facesearch_server.retriever.persons.reference_index import ReferenceIndex
from facesearch_server.retriever.shard_router import CallBudget, ShardSearch, timestamp
from facesearch_server.retriever.shard_search import FieldSearch
from facesearch_server.retriever.validation import check_model
from facesearch_server.runtime.auth import current_tenant
from facesearch_server.runtime.calibration_proto import calibration_from_proto
from facesearch_server.runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from facesearch_server.runtime.open_set import Decision, OperatingPoints, ScoreCalibration
from facesearch_server.runtime.validation import batch_size

SETTINGS_KEY = "identification"
STORE_FILE = "persons.sqlite3"
# Faces labelled with one person that a count, a relabel or a forget goes through.
MAX_PERSON_FACES = 1_000_000
# Unlabelled faces searched per reference when forgetting the faces that match a person.
UNLABELLED_PER_REFERENCE = 1_000
# Unlabelled faces kept in clusters (each listing reads their vectors: 51 MB of 128-d SFace).
MAX_CLUSTERED_FACES = 100_000
CLUSTER_FILE = "clusters.sqlite3"
_DECISIONS = {
    Decision.MATCH: pb.DECISION_MATCH,
    Decision.POSSIBLE: pb.DECISION_POSSIBLE,
    Decision.UNKNOWN: pb.DECISION_UNKNOWN,
}


class PersonsServicer(pb_grpc.PersonsServicer):
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._stores: dict[str, PersonStore] = {}
        self._indexes: dict[str, tuple[int, ReferenceIndex]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._cluster_stores: dict[str, ClusterStore] = {}

    # ---- plumbing ------------------------------------------------------------------------
    @staticmethod
    def _budget(context: grpc.aio.ServicerContext) -> CallBudget:
        remaining = context.time_remaining()
        return CallBudget(timeout=None if remaining is None else remaining * 0.9)

    def _collection(self, name: str) -> Collection:
        return self.catalog.resolve(current_tenant(), name, "collection")

    def _store(self, coll: Collection) -> PersonStore:
        store = self._stores.get(coll.uid)
        if store is None:
            # Beside the collection's shards: dropping the collection removes its persons.
            path = Path(self.catalog.dir) / "collections" / coll.uid / STORE_FILE
            store = self._stores[coll.uid] = PersonStore(path)
        return store

    def _lock(self, coll: Collection) -> asyncio.Lock:
        return self._locks.setdefault(coll.uid, asyncio.Lock())

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        self._stores.clear()
        for clusters in self._cluster_stores.values():
            clusters.close()
        self._cluster_stores.clear()

    def _settings(self, store: PersonStore) -> pb.IdentificationSettings:
        raw = store.get_setting(SETTINGS_KEY)
        if raw is None:
            raise FailedPrecondition(
                "identification is not configured for this collection: call "
                "ConfigureIdentification with the face model's calibration (the SDK and "
                "`facesearch persons` do this from the embedder's model card)"
            )
        return pb.IdentificationSettings.FromString(raw)

    def _decider(
        self, store: PersonStore
    ) -> tuple[pb.IdentificationSettings, ScoreCalibration, OperatingPoints]:
        settings = self._settings(store)
        return (
            settings,
            calibration_from_proto(settings.calibration),
            rules.points_from_proto(settings.operating_points, "settings.operating_points"),
        )

    def _index(self, coll: Collection, store: PersonStore) -> ReferenceIndex:
        cached = self._indexes.get(coll.uid)
        if cached is not None and cached[0] == store.version:
            return cached[1]
        index = ReferenceIndex(store.references())
        self._indexes[coll.uid] = (store.version, index)
        return index

    async def _faces_of(self, coll: Collection, person_id: str, b: CallBudget) -> list[rpb.Point]:
        flt = person_filter(person_id)
        pred = coll.compile(flt, "person_id")
        assert pred is not None
        points, _ = await coll.shards.get_matching(flt, pred, "", MAX_PERSON_FACES, b)
        return points

    async def _to_proto(
        self, coll: Collection, record: PersonRecord, b: CallBudget, count: bool = True
    ) -> pb.Person:
        labelled = len(await self._faces_of(coll, record.person_id, b)) if count else 0
        return pb.Person(
            person_id=record.person_id,
            display_name=record.display_name,
            attributes=record.attributes,
            reference_ids=record.reference_ids,
            labelled_faces=labelled,
            created_at=timestamp(record.created),
            updated_at=timestamp(record.updated),
        )

    def _get(self, store: PersonStore, person_id: str, field: str) -> PersonRecord:
        rules.check_person_id(person_id, field)
        record = store.get(person_id)
        if record is None:
            raise NotFound(f"{field}: no person {person_id!r} in this collection")
        return record

    async def _label(
        self, coll: Collection, points: list[rpb.Point], person_id: str | None, b: CallBudget
    ) -> int:
        """Set (or, with None, remove) the person label of these stored points."""
        changed = []
        for p in points:
            current = p.metadata["person_id"].string_value if "person_id" in p.metadata else None
            if current == person_id:
                continue
            q = rpb.Point()
            q.CopyFrom(p)
            if person_id is None:
                del q.metadata["person_id"]
            else:
                q.metadata["person_id"].string_value = person_id
            changed.append(q)
        for i in range(0, len(changed), 1024):
            await coll.shards.upsert(changed[i : i + 1024], True, b)
        return len(changed)

    async def _reference_points(
        self,
        coll: Collection,
        store: PersonStore,
        ids: list[str],
        field: str,
        vector_field: str,
        person_id: str,
        b: CallBudget,
    ) -> tuple[list[rpb.Point], dict[str, np.ndarray]]:
        points = await coll.shards.get(ids, True, b)
        found = {p.id for p in points}
        missing = [i for i in ids if i not in found]
        if missing:
            shown = ", ".join(repr(m[:40]) for m in missing[:5])
            raise NotFound(f"{field}: {len(missing)} face(s) not in the collection: {shown}")
        vectors = {}
        for p in points:
            if vector_field not in p.vectors:
                raise FailedPrecondition(
                    f"{field}: face {p.id!r} has no {vector_field!r} vector to identify by"
                )
            owner = p.metadata["person_id"].string_value if "person_id" in p.metadata else ""
            if owner and owner != person_id:
                raise FailedPrecondition(
                    f"{field}: face {p.id!r} is labelled {owner!r}; merge the persons or "
                    "relabel the face first"
                )
            v = np.asarray(p.vectors[vector_field].values, np.float32)
            vectors[p.id] = v / max(float(np.linalg.norm(v)), 1e-12)
        taken = store.owner_of(ids)
        others = {k: v for k, v in taken.items() if v != person_id}
        if others:
            pid, owner = next(iter(others.items()))
            raise FailedPrecondition(f"{field}: face {pid!r} is a reference of {owner!r}")
        return points, vectors

    # ---- identification settings --------------------------------------------------------
    async def ConfigureIdentification(
        self, request: pb.ConfigureIdentificationRequest, context: grpc.aio.ServicerContext
    ) -> pb.ConfigureIdentificationResponse:
        coll = self._collection(request.collection)
        settings = pb.IdentificationSettings()
        settings.CopyFrom(request.settings)
        calibration = calibration_from_proto(settings.calibration)
        points = rules.points_from_proto(settings.operating_points, "settings.operating_points")
        field = coll.field(settings.vector_field, "settings.vector_field")
        if field.model_id and calibration.model_id != field.model_id:
            raise FailedPrecondition(
                f"settings.calibration.model_id is {calibration.model_id!r} but field "
                f"{field.name!r} holds {field.model_id!r} vectors: use that model's card"
            )
        settings.vector_field = field.name
        settings.operating_points.CopyFrom(rules.points_to_proto(points))
        store = self._store(coll)
        async with self._lock(coll):
            await asyncio.to_thread(store.put_setting, SETTINGS_KEY, settings.SerializeToString())
        return pb.ConfigureIdentificationResponse(settings=settings)

    async def GetIdentificationSettings(
        self, request: pb.GetIdentificationSettingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetIdentificationSettingsResponse:
        store = self._store(self._collection(request.collection))
        settings = self._settings(store)
        persons, refs = await asyncio.to_thread(store.count)
        return pb.GetIdentificationSettingsResponse(
            settings=settings, persons=persons, references=refs
        )

    # ---- persons -------------------------------------------------------------------------
    async def EnrollPerson(
        self, request: pb.EnrollPersonRequest, context: grpc.aio.ServicerContext
    ) -> pb.EnrollPersonResponse:
        coll = self._collection(request.collection)
        p = request.person
        person_id = rules.check_person_id(p.person_id, "person.person_id")
        record = PersonRecord(
            person_id,
            rules.check_display_name(p.display_name, "person.display_name") or person_id,
            rules.check_attributes(dict(p.attributes), "person.attributes"),
        )
        ids = rules.check_ids(list(p.reference_ids), "person.reference_ids", rules.MAX_REFERENCES)
        store = self._store(coll)
        settings = self._settings(store)
        b = self._budget(context)
        async with self._lock(coll):
            if await asyncio.to_thread(store.get, person_id) is not None:
                raise AlreadyExists(f"person.person_id: {person_id!r} is already enrolled")
            points, vectors = await self._reference_points(
                coll, store, ids, "person.reference_ids", settings.vector_field, person_id, b
            )
            created = await asyncio.to_thread(store.create, record, vectors)
            try:
                await self._label(coll, points, person_id, b)
            except BaseException:
                await asyncio.to_thread(store.delete, person_id)
                raise
        return pb.EnrollPersonResponse(person=await self._to_proto(coll, created, b))

    async def AddReferences(
        self, request: pb.AddReferencesRequest, context: grpc.aio.ServicerContext
    ) -> pb.AddReferencesResponse:
        coll = self._collection(request.collection)
        store = self._store(coll)
        settings = self._settings(store)
        ids = rules.check_ids(list(request.reference_ids), "reference_ids", rules.MAX_REFERENCES)
        b = self._budget(context)
        async with self._lock(coll):
            record = self._get(store, request.person_id, "person_id")
            fresh = [i for i in ids if i not in record.reference_ids]
            if len(record.reference_ids) + len(fresh) > rules.MAX_REFERENCES:
                raise FailedPrecondition(
                    f"reference_ids: {request.person_id!r} would hold "
                    f"{len(record.reference_ids) + len(fresh)} references; at most "
                    f"{rules.MAX_REFERENCES}"
                )
            points, vectors = await self._reference_points(
                coll, store, fresh, "reference_ids", settings.vector_field, record.person_id, b
            )
            await asyncio.to_thread(store.add_references, record.person_id, vectors)
            try:
                await self._label(coll, points, record.person_id, b)
            except BaseException:
                await asyncio.to_thread(store.remove_references, list(vectors))
                raise
            record = self._get(store, request.person_id, "person_id")
        return pb.AddReferencesResponse(person=await self._to_proto(coll, record, b))

    async def GetPerson(
        self, request: pb.GetPersonRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetPersonResponse:
        coll = self._collection(request.collection)
        record = self._get(self._store(coll), request.person_id, "person_id")
        return pb.GetPersonResponse(
            person=await self._to_proto(coll, record, self._budget(context))
        )

    async def ListPersons(
        self, request: pb.ListPersonsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPersonsResponse:
        coll = self._collection(request.collection)
        store = self._store(coll)
        size = request.page_size or rules.DEFAULT_PAGE
        if size > rules.MAX_PAGE:
            raise InvalidArgument("page_size", f"is {size}; at most {rules.MAX_PAGE}")
        after = ""
        if request.page_token:
            try:
                after = base64.urlsafe_b64decode(request.page_token.encode()).decode()
                rules.check_person_id(after, "page_token")
            except (ValueError, InvalidArgument):
                raise InvalidArgument(
                    "page_token", "is not a token this server issued: start from the first page"
                ) from None
        records = await asyncio.to_thread(store.list, after, size + 1)
        more = len(records) > size
        records = records[:size]
        b = self._budget(context)
        persons, _ = await asyncio.to_thread(store.count)
        out = pb.ListPersonsResponse(total=persons)
        for r in records:
            out.persons.append(await self._to_proto(coll, r, b))
        if more:
            out.next_page_token = base64.urlsafe_b64encode(records[-1].person_id.encode()).decode()
        return out

    async def UpdatePerson(
        self, request: pb.UpdatePersonRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdatePersonResponse:
        coll = self._collection(request.collection)
        store = self._store(coll)
        name = (
            rules.check_display_name(request.display_name, "display_name")
            if request.HasField("display_name")
            else None
        )
        attrs = rules.check_attributes(dict(request.attributes), "attributes")
        async with self._lock(coll):
            record = self._get(store, request.person_id, "person_id")
            merged = {**record.attributes, **attrs}
            for key in request.remove_attributes:
                merged.pop(key, None)
            rules.check_attributes(merged, "attributes")
            await asyncio.to_thread(
                store.update, record.person_id, name, attrs, list(request.remove_attributes)
            )
            record = self._get(store, request.person_id, "person_id")
        return pb.UpdatePersonResponse(
            person=await self._to_proto(coll, record, self._budget(context))
        )

    async def MergePersons(
        self, request: pb.MergePersonsRequest, context: grpc.aio.ServicerContext
    ) -> pb.MergePersonsResponse:
        coll = self._collection(request.collection)
        store = self._store(coll)
        if request.source_person_id == request.target_person_id:
            raise InvalidArgument(
                "target_person_id", "equals source_person_id: a person cannot merge into itself"
            )
        b = self._budget(context)
        async with self._lock(coll):
            source = self._get(store, request.source_person_id, "source_person_id")
            target = self._get(store, request.target_person_id, "target_person_id")
            together = len(set(source.reference_ids) | set(target.reference_ids))
            if together > rules.MAX_REFERENCES:
                raise FailedPrecondition(
                    f"together the persons hold {together} references; at most "
                    f"{rules.MAX_REFERENCES}: remove some first"
                )
            faces = await self._faces_of(coll, source.person_id, b)
            # Labels first: a failure here leaves both persons, with some faces relabelled to
            # the target, which a second merge finishes.
            relabelled = await self._label(coll, faces, target.person_id, b)
            await asyncio.to_thread(store.merge, source.person_id, target.person_id)
            merged = self._get(store, target.person_id, "target_person_id")
        return pb.MergePersonsResponse(
            person=await self._to_proto(coll, merged, b), relabelled_faces=relabelled
        )

    async def SplitPerson(
        self, request: pb.SplitPersonRequest, context: grpc.aio.ServicerContext
    ) -> pb.SplitPersonResponse:
        coll = self._collection(request.collection)
        store = self._store(coll)
        new_id = rules.check_person_id(request.new_person.person_id, "new_person.person_id")
        new = PersonRecord(
            new_id,
            rules.check_display_name(request.new_person.display_name, "new_person.display_name")
            or new_id,
            rules.check_attributes(dict(request.new_person.attributes), "new_person.attributes"),
        )
        ids = rules.check_ids(list(request.face_ids), "face_ids", rules.MAX_FACE_IDS)
        b = self._budget(context)
        async with self._lock(coll):
            old = self._get(store, request.person_id, "person_id")
            if store.get(new_id) is not None:
                raise AlreadyExists(f"new_person.person_id: {new_id!r} exists")
            points = await coll.shards.get(ids, False, b)
            labels = {
                p.id: (p.metadata["person_id"].string_value if "person_id" in p.metadata else "")
                for p in points
            }
            strangers = [i for i in ids if labels.get(i) != old.person_id]
            if strangers:
                raise FailedPrecondition(
                    f"face_ids: {len(strangers)} face(s) are not labelled {old.person_id!r}, "
                    f"e.g. {strangers[0][:40]!r}"
                )
            moved_refs = [r for r in old.reference_ids if r in set(ids)]
            if not moved_refs:
                raise FailedPrecondition(
                    "face_ids: no reference face of the person moves, so the new person would "
                    f"have nothing to be identified by; include one of {old.reference_ids[:5]}"
                )
            if len(moved_refs) == len(old.reference_ids):
                raise FailedPrecondition(
                    f"face_ids: every reference of {old.person_id!r} would move; keep one"
                )
            await asyncio.to_thread(store.split, old.person_id, new, moved_refs)
            try:
                moved = await self._label(coll, points, new_id, b)
            except BaseException:
                await asyncio.to_thread(store.merge, new_id, old.person_id)
                raise
            old, new = self._get(store, old.person_id, "person_id"), self._get(store, new_id, "x")
        return pb.SplitPersonResponse(
            person=await self._to_proto(coll, old, b),
            new_person=await self._to_proto(coll, new, b),
            moved_faces=moved,
        )

    async def LabelFaces(
        self, request: pb.LabelFacesRequest, context: grpc.aio.ServicerContext
    ) -> pb.LabelFacesResponse:
        coll = self._collection(request.collection)
        store = self._store(coll)
        ids = rules.check_ids(list(request.face_ids), "face_ids", rules.MAX_FACE_IDS)
        b = self._budget(context)
        async with self._lock(coll):
            person = None
            if request.person_id:
                person = self._get(store, request.person_id, "person_id").person_id
            points = await coll.shards.get(ids, True, b)
            found = {p.id for p in points}
            refs = store.owner_of(ids)
            for p in points:
                owner = p.metadata["person_id"].string_value if "person_id" in p.metadata else ""
                if owner and owner != person and not request.relabel:
                    raise FailedPrecondition(
                        f"face_ids: {p.id[:40]!r} is labelled {owner!r}; set relabel to change it"
                    )
                if p.id in refs and refs[p.id] != person:
                    raise FailedPrecondition(
                        f"face_ids: {p.id[:40]!r} is a reference of {refs[p.id]!r}: split or "
                        "merge persons instead"
                    )
            labelled = await self._label(coll, points, person, b)
        return pb.LabelFacesResponse(
            labelled=labelled, missing_ids=[i for i in ids if i not in found]
        )

    async def ForgetPerson(
        self, request: pb.ForgetPersonRequest, context: grpc.aio.ServicerContext
    ) -> pb.ForgetPersonResponse:
        coll = self._collection(request.collection)
        store = self._store(coll)
        b = self._budget(context)
        async with self._lock(coll):
            record = self._get(store, request.person_id, "person_id")
            labelled = {p.id for p in await self._faces_of(coll, record.person_id, b)}
            labelled |= set(record.reference_ids)
            matches: list[str] = []
            if request.include_unlabelled_matches:
                matches = await self._unlabelled_matches(coll, store, record, b)
            ids = sorted(labelled) + sorted(set(matches) - labelled)
            if not request.dry_run:
                for i in range(0, len(ids), 10_000):
                    await coll.shards.delete_ids(ids[i : i + 10_000], b)
                await asyncio.to_thread(store.delete, record.person_id)
        return pb.ForgetPersonResponse(
            labelled_faces=len(labelled),
            unlabelled_matches=len(set(matches) - labelled),
            face_ids=ids[:10_000],
            truncated=len(ids) > 10_000,
            dry_run=request.dry_run,
        )

    async def _unlabelled_matches(
        self, coll: Collection, store: PersonStore, record: PersonRecord, b: CallBudget
    ) -> list[str]:
        """Unlabelled faces that identify as this person at the match operating point."""
        settings, calibration, points = self._decider(store)
        index = self._index(coll, store)
        mine = [i for i, p in enumerate(index.point_ids) if p in set(record.reference_ids)]
        if not mine:
            return []
        field = coll.field(settings.vector_field, "settings.vector_field")
        flt = cpb.Filter(must=[cpb.FieldCondition(field="person_id", exists=False)])
        pred = coll.compile(flt, "filter")
        search = ShardSearch(
            search=FieldSearch(
                field=field.name,
                queries=index.vectors[mine],
                k=UNLABELLED_PER_REFERENCE,
                pred=pred,
                exclude=[],
                params=rpb.SearchParams(),
                with_meta=True,
                with_vectors=True,
            ),
            model_id=field.model_id,
            flt=flt,
        )
        lists, _ = await coll.shards.search(search, b, False)
        out = []
        seen: set[str] = set()
        for hits in lists:
            for _, point in hits:
                if point.id in seen:
                    continue
                seen.add(point.id)
                v = np.asarray(point.vectors[field.name].values, np.float32)
                quality = (
                    point.metadata["quality"].double_value if "quality" in point.metadata else 0.0
                )
                answer = index.identify(v, float(quality), 1, calibration, points)
                top = answer.candidates[0] if answer.candidates else None
                if (
                    top is not None
                    and top.person_id == record.person_id
                    and top.result.decision is Decision.MATCH
                ):
                    out.append(point.id)
        return out

    # ---- candidate persons ---------------------------------------------------------------
    def _clusters(self, coll: Collection) -> ClusterStore:
        store = self._cluster_stores.get(coll.uid)
        if store is None:
            path = Path(self.catalog.dir) / "collections" / coll.uid / CLUSTER_FILE
            store = self._cluster_stores[coll.uid] = ClusterStore(path)
        return store

    async def _refresh_clusters(
        self, coll: Collection, recluster: bool, context: grpc.aio.ServicerContext
    ) -> tuple[cluster_book.Refresh, dict[str, float], bool]:
        """The kept clusters brought up to date with the unlabelled faces now."""
        store = self._store(coll)
        settings, calibration, _ = self._decider(store)
        field = coll.field(settings.vector_field, "settings.vector_field")
        flt = cpb.Filter(must=[cpb.FieldCondition(field="person_id", exists=False)])
        pred = coll.compile(flt, "filter")
        assert pred is not None
        points, _ = await coll.shards.get_matching(
            flt, pred, field.name, MAX_CLUSTERED_FACES + 1, self._budget(context)
        )
        truncated = len(points) > MAX_CLUSTERED_FACES
        points = points[:MAX_CLUSTERED_FACES]
        ids = [p.id for p in points]
        vectors = np.array([p.vectors[field.name].values for p in points], np.float32)
        quality = {
            p.id: p.metadata["quality"].double_value if "quality" in p.metadata else 0.0
            for p in points
        }
        # One cut for all: the clean band's threshold (bands differ by ~0.01 on SFace).
        threshold = calibration.threshold(face_clusters.CLUSTER_FMR, 1.0, 1)
        refreshed = await asyncio.to_thread(
            cluster_book.refresh,
            self._clusters(coll),
            ids,
            vectors.reshape(len(ids), -1),
            threshold,
            recluster,
        )
        return refreshed, quality, truncated

    @staticmethod
    def _cluster_proto(
        cluster_id: str, faces: list[str], quality: dict[str, float]
    ) -> pb.FaceCluster:
        ordered = sorted(faces, key=lambda f: (-quality.get(f, 0.0), f))
        return pb.FaceCluster(cluster_id=cluster_id, face_ids=ordered, representative_id=ordered[0])

    async def ListClusters(
        self, request: pb.ListClustersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListClustersResponse:
        coll = self._collection(request.collection)
        min_size = request.min_size or 2
        most = request.max_clusters or 50
        if not 2 <= min_size <= rules.MAX_CLUSTER_LIST:
            raise InvalidArgument("min_size", f"is {min_size}; it is 2..{rules.MAX_CLUSTER_LIST}")
        if most > rules.MAX_CLUSTER_LIST:
            raise InvalidArgument("max_clusters", f"is {most}; at most {rules.MAX_CLUSTER_LIST}")
        async with self._lock(coll):
            refreshed, quality, truncated = await self._refresh_clusters(
                coll, request.recluster, context
            )
        clusters = face_clusters.listing(refreshed.assignment, quality, min_size)
        return pb.ListClustersResponse(
            clusters=[
                self._cluster_proto(c.cluster_id, c.face_ids, quality) for c in clusters[:most]
            ],
            unlabelled_faces=len(refreshed.assignment),
            truncated=truncated,
            new_faces=refreshed.new_faces,
            departed_faces=refreshed.departed_faces,
            total_clusters=len(set(refreshed.assignment.values())),
        )

    async def MergeClusters(
        self, request: pb.MergeClustersRequest, context: grpc.aio.ServicerContext
    ) -> pb.MergeClustersResponse:
        coll = self._collection(request.collection)
        ids = rules.check_cluster_ids(list(request.cluster_ids), "cluster_ids")
        async with self._lock(coll):
            _, quality, _ = await self._refresh_clusters(coll, False, context)
            faces = await asyncio.to_thread(cluster_book.merge, self._clusters(coll), ids)
        return pb.MergeClustersResponse(cluster=self._cluster_proto(ids[0], faces, quality))

    async def SplitCluster(
        self, request: pb.SplitClusterRequest, context: grpc.aio.ServicerContext
    ) -> pb.SplitClusterResponse:
        coll = self._collection(request.collection)
        (cluster_id,) = rules.check_cluster_ids([request.cluster_id], "cluster_id")
        moving = list(request.face_ids)
        batch_size(moving, "face_ids", rules.MAX_SPLIT_FACES)
        async with self._lock(coll):
            _, quality, _ = await self._refresh_clusters(coll, False, context)
            kept, new_id = await asyncio.to_thread(
                cluster_book.split, self._clusters(coll), cluster_id, moving
            )
        return pb.SplitClusterResponse(
            kept=self._cluster_proto(cluster_id, kept, quality),
            split=self._cluster_proto(new_id, moving, quality),
        )

    # ---- identification ------------------------------------------------------------------
    async def Identify(
        self, request: pb.IdentifyRequest, context: grpc.aio.ServicerContext
    ) -> pb.IdentifyResponse:
        coll = self._collection(request.collection)
        store = self._store(coll)
        settings, calibration, points = self._decider(store)
        field = coll.field(settings.vector_field, "settings.vector_field")
        faces = list(request.faces)
        if not faces:
            raise InvalidArgument("faces", "is empty: send at least one face")
        if len(faces) > rules.MAX_PROBES:
            raise InvalidArgument("faces", f"has {len(faces)} faces; at most {rules.MAX_PROBES}")
        k = request.max_candidates or rules.DEFAULT_CANDIDATES
        if k > rules.MAX_CANDIDATES:
            raise InvalidArgument("max_candidates", f"is {k}; at most {rules.MAX_CANDIDATES}")
        probes = []
        for i, f in enumerate(faces):
            path = f"faces[{i}]"
            if len(f.vector.values) != field.dimension:
                raise InvalidArgument(
                    f"{path}.vector",
                    f"has {len(f.vector.values)} values; field {field.name!r} has dimension "
                    f"{field.dimension}",
                )
            check_model(f.model_id, field, f"{path}.model_id")
            v = np.asarray(f.vector.values, np.float32)
            if not np.isfinite(v).all():
                raise InvalidArgument(f"{path}.vector", "has NaN or Inf values")
            if not 0.0 <= f.quality <= 1.0 or np.isnan(f.quality):
                raise InvalidArgument(f"{path}.quality", f"is {f.quality}; it is in [0, 1]")
            if len(f.ref.encode()) > 256:
                raise InvalidArgument(f"{path}.ref", "is longer than 256 bytes")
            probes.append(v / max(float(np.linalg.norm(v)), 1e-12))
        index = await asyncio.to_thread(self._index, coll, store)
        names = {}
        out = pb.IdentifyResponse(
            persons=len(index.persons),
            references_searched=index.references,
            operating_points=rules.points_to_proto(points),
        )
        for f, v in zip(faces, probes, strict=True):
            answer = index.identify(v, float(f.quality), k, calibration, points)
            face = pb.FaceIdentification(
                ref=f.ref,
                decision=pb.DECISION_UNKNOWN,
                match_threshold=answer.match_threshold,
                possible_threshold=answer.possible_threshold,
                quality=f.quality,
            )
            for c in answer.candidates:
                if c.person_id not in names:
                    record = store.get(c.person_id)
                    names[c.person_id] = record.display_name if record else c.person_id
                face.candidates.append(
                    pb.PersonCandidate(
                        person_id=c.person_id,
                        display_name=names[c.person_id],
                        score=c.score,
                        decision=_DECISIONS[c.result.decision],
                        estimated_fpir=c.result.estimated_fpir,
                        reference_id=c.reference_id,
                    )
                )
            if face.candidates:
                face.decision = face.candidates[0].decision
            out.faces.append(face)
        return out
