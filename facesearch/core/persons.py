"""Persons and open-set identification: who is in a photo, and is it anyone we know?

Identification answers per face and per candidate person with a decision (``match`` /
``possible`` / ``unknown``) and the estimated false-positive identification rate at its score
(README, "Who is this?"). A collection is set up for it from the embedder's model card
(``enable_identification``); ``identify_image`` embeds every face of a photo and identifies each.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from facesearch import messages
from facesearch.async_client import AsyncFacesearchClient
from facesearch.core import face_context
from facesearch.core.collections import collection_fields
from facesearch.core.image_faces import embed_image_faces
from facesearch.errors import FacesearchError
from facesearch_contract.v1 import common_pb2, embedder_pb2, persons_pb2, retriever_pb2

DECISIONS = {
    persons_pb2.DECISION_MATCH: "match",
    persons_pb2.DECISION_POSSIBLE: "possible",
    persons_pb2.DECISION_UNKNOWN: "unknown",
}


@dataclass
class IdentifiedFace:
    """One face of a photo: where it is, how good it is, and who it may be."""

    index: int
    box: tuple[float, float, float, float]
    quality: float
    decision: str
    candidates: list[persons_pb2.PersonCandidate]
    match_threshold: float
    possible_threshold: float

    @property
    def person_id(self) -> str | None:
        """The matched person, only when the decision is ``match``."""
        return self.candidates[0].person_id if self.decision == "match" else None


async def enable_identification(
    client: AsyncFacesearchClient,
    collection: str,
    *,
    match_fpir: float = 0.0,
    possible_fpir: float = 0.0,
    min_match_quality: float | None = None,
) -> persons_pb2.IdentificationSettings:
    """Give the collection its face model's calibration (from the embedder's model card) and
    the operating points; 0 / None keep the service's defaults (FPIR 1e-3 and 1e-2)."""
    fields = await collection_fields(client, collection)
    models = (await client.embedder.ListModels(embedder_pb2.ListModelsRequest())).models
    model = next((m for m in models if m.model_id == fields.face_model), None)
    if model is None or not model.calibration.bands:
        raise FacesearchError(
            f"the embedder has no calibration for {fields.face_model!r} (its model card has "
            "none): identification needs one"
        )
    points = persons_pb2.OperatingPoints(match_fpir=match_fpir, possible_fpir=possible_fpir)
    if min_match_quality is not None:
        points.min_match_quality = min_match_quality
    settings = persons_pb2.IdentificationSettings(
        calibration=model.calibration, operating_points=points, vector_field=fields.face
    )
    reply = await client.persons.ConfigureIdentification(
        persons_pb2.ConfigureIdentificationRequest(collection=collection, settings=settings)
    )
    return reply.settings


async def ensure_identification(client: AsyncFacesearchClient, collection: str) -> None:
    """Configure identification from the model card unless the collection already is."""
    try:
        await client.persons.GetIdentificationSettings(
            persons_pb2.GetIdentificationSettingsRequest(collection=collection)
        )
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.FAILED_PRECONDITION:  # type: ignore[attr-defined]
            raise
        await enable_identification(client, collection)


async def identify_image(
    client: AsyncFacesearchClient,
    collection: str,
    image: messages.ImageSource,
    *,
    max_candidates: int = 3,
) -> list[IdentifiedFace]:
    """Every face of ``image``, identified among the collection's persons (largest first)."""
    fields = await collection_fields(client, collection)
    faces = await embed_image_faces(client, image, fields.face_model)
    await ensure_identification(client, collection)
    request = persons_pb2.IdentifyRequest(
        collection=collection,
        max_candidates=max_candidates,
        faces=[
            persons_pb2.FaceProbe(
                vector=common_pb2.Vector(values=f.embedding.values),
                quality=min(max(f.quality.score, 0.0), 1.0),
                ref=str(i),
                model_id=fields.face_model,
            )
            for i, f in enumerate(faces)
        ],
    )
    answer = await client.persons.Identify(request)
    return [
        IdentifiedFace(
            index=i,
            box=(f.box.x, f.box.y, f.box.width, f.box.height),
            quality=a.quality,
            decision=DECISIONS.get(a.decision, "unknown"),
            candidates=list(a.candidates),
            match_threshold=a.match_threshold,
            possible_threshold=a.possible_threshold,
        )
        for i, (f, a) in enumerate(zip(faces, answer.faces, strict=True))
    ]


async def enroll_person(
    client: AsyncFacesearchClient,
    collection: str,
    person_id: str,
    photos: list[messages.ImageSource],
    *,
    display_name: str = "",
    attributes: dict[str, str] | None = None,
) -> persons_pb2.Person:
    """Enrol a person with reference faces from photos showing only them (one face each): the
    faces are indexed into the collection and become the person's references.

    They are stored as ``index`` stores a face: with the photo's context text (read from the
    file when a photo is a path) and its caption vector, the face's attribute vector and the
    photo's scene vector where the collection has those fields and the embedder serves their
    models, so a reference answers context and description queries like the person's other
    faces."""
    if not photos:
        raise FacesearchError("enrolment needs at least one photo of the person")
    fields = await collection_fields(client, collection)
    scene = fields.scene_field
    with_scene = scene is not None and await face_context.scene_not_served(client, scene) is None
    request = messages.embed_images_request(photos, model_id=fields.face_model)
    request.with_scene = with_scene
    reply = await client.embedder.EmbedImages(request)
    contexts = [face_context.photo_context(image)[0] for image in photos]
    text_field = fields.text_field() if fields.text_fields else None
    captions = await face_context.caption_vectors(client, text_field, contexts)
    points = []
    for image, result, meta, caption in zip(photos, reply.results, contexts, captions, strict=True):
        where = messages.describe_image(image)
        if result.error_code:
            raise FacesearchError(f"{where}: {result.error_message}")
        if len(result.faces) != 1:
            raise FacesearchError(
                f"{where} shows {len(result.faces)} faces: a reference photo must show the "
                "person alone (crop it, or enrol from an existing face with add_references)"
            )
        points.extend(
            messages.face_points(
                result,
                face_field=fields.face,
                metadata=meta,
                text_vectors={**caption, **face_context.scene_vector(result, scene)},
                attribute_field=fields.attribute_field,
            )
        )
    await client.retriever.Upsert(retriever_pb2.UpsertRequest(collection=collection, points=points))
    await ensure_identification(client, collection)
    person = persons_pb2.Person(
        person_id=person_id,
        display_name=display_name,
        attributes=attributes or {},
        reference_ids=[p.id for p in points],
    )
    try:
        reply_p = await client.persons.EnrollPerson(
            persons_pb2.EnrollPersonRequest(collection=collection, person=person)
        )
    except grpc.RpcError:
        # The faces were only indexed to become references: do not leave them behind.
        await client.retriever.Delete(
            retriever_pb2.DeleteRequest(
                collection=collection, ids=retriever_pb2.IdList(ids=[p.id for p in points])
            )
        )
        raise
    return reply_p.person


async def list_persons(
    client: AsyncFacesearchClient, collection: str, *, page_size: int = 100
) -> list[persons_pb2.Person]:
    out: list[persons_pb2.Person] = []
    token = ""
    while True:
        reply = await client.persons.ListPersons(
            persons_pb2.ListPersonsRequest(
                collection=collection, page_size=page_size, page_token=token
            )
        )
        out.extend(reply.persons)
        token = reply.next_page_token
        if not token:
            return out


async def forget_person(
    client: AsyncFacesearchClient,
    collection: str,
    person_id: str,
    *,
    include_unlabelled_matches: bool = False,
    dry_run: bool = False,
) -> persons_pb2.ForgetPersonResponse:
    """Hard-delete a person and their faces (``dry_run`` lists them first)."""
    return await client.persons.ForgetPerson(
        persons_pb2.ForgetPersonRequest(
            collection=collection,
            person_id=person_id,
            include_unlabelled_matches=include_unlabelled_matches,
            dry_run=dry_run,
        )
    )


async def list_clusters(
    client: AsyncFacesearchClient,
    collection: str,
    *,
    min_size: int = 2,
    max_clusters: int = 50,
    recluster: bool = False,
) -> persons_pb2.ListClustersResponse:
    """Unlabelled faces grouped into candidate persons, largest group first. The service
    keeps the clusters and places only faces new since the last listing, so ids stay;
    ``recluster`` groups everything again (new ids, earlier merges and splits undone)."""
    await ensure_identification(client, collection)
    return await client.persons.ListClusters(
        persons_pb2.ListClustersRequest(
            collection=collection,
            min_size=min_size,
            max_clusters=max_clusters,
            recluster=recluster,
        )
    )


async def merge_clusters(
    client: AsyncFacesearchClient, collection: str, cluster_ids: list[str]
) -> persons_pb2.FaceCluster:
    """Join clusters that are one person; the first id is kept."""
    reply = await client.persons.MergeClusters(
        persons_pb2.MergeClustersRequest(collection=collection, cluster_ids=cluster_ids)
    )
    return reply.cluster


async def split_cluster(
    client: AsyncFacesearchClient, collection: str, cluster_id: str, face_ids: list[str]
) -> persons_pb2.SplitClusterResponse:
    """Move ``face_ids`` out of a cluster into a new one (``.kept`` and ``.split``)."""
    return await client.persons.SplitCluster(
        persons_pb2.SplitClusterRequest(
            collection=collection, cluster_id=cluster_id, face_ids=face_ids
        )
    )


async def name_cluster(
    client: AsyncFacesearchClient,
    collection: str,
    cluster_id: str,
    person_id: str,
    *,
    display_name: str = "",
    max_references: int = 3,
) -> persons_pb2.Person:
    """Give a cluster's faces a person: a new person is enrolled with the cluster's best
    faces as references; an existing one gets the faces labelled (a merge of the cluster into
    the person). The cluster is looked up again, so an id from an outdated listing fails."""
    listed = await list_clusters(client, collection, max_clusters=1000)
    cluster = next((c for c in listed.clusters if c.cluster_id == cluster_id), None)
    if cluster is None:
        raise FacesearchError(
            f"no cluster {cluster_id!r} now: its faces changed since it was listed; list again"
        )
    try:
        await client.persons.GetPerson(
            persons_pb2.GetPersonRequest(collection=collection, person_id=person_id)
        )
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
            raise
        person = persons_pb2.Person(
            person_id=person_id,
            display_name=display_name,
            reference_ids=list(cluster.face_ids[:max_references]),
        )
        await client.persons.EnrollPerson(
            persons_pb2.EnrollPersonRequest(collection=collection, person=person)
        )
    await client.persons.LabelFaces(
        persons_pb2.LabelFacesRequest(
            collection=collection, person_id=person_id, face_ids=list(cluster.face_ids)
        )
    )
    reply = await client.persons.GetPerson(
        persons_pb2.GetPersonRequest(collection=collection, person_id=person_id)
    )
    return reply.person
