"""Searches: by a face, by text, a person in a context, a face with a description."""

from __future__ import annotations

from dataclasses import dataclass

from facesearch import messages
from facesearch.async_client import AsyncFacesearchClient
from facesearch.core.collections import collection_fields
from facesearch.errors import FacesearchError, NoFaceFound
from facesearch_contract.v1 import embedder_pb2, retriever_pb2


async def embed_largest_face(
    client: AsyncFacesearchClient, image: messages.ImageSource, model_id: str = ""
) -> embedder_pb2.Face:
    """The largest face of ``image``, embedded; NoFaceFound when it shows none."""
    reply = await client.embedder.EmbedImages(
        messages.embed_images_request([image], model_id=model_id)
    )
    result = reply.results[0]
    if result.error_code:
        raise FacesearchError(f"{messages.describe_image(image)}: {result.error_message}")
    face = messages.largest_face(result)
    if face is None:
        raise NoFaceFound(messages.describe_image(image))
    return face


async def search_by_image(
    client: AsyncFacesearchClient,
    collection: str,
    image: messages.ImageSource,
    *,
    k: int = 10,
    where: messages.FilterSpec = None,
) -> list[messages.Hit]:
    """Faces most like the largest face in ``image`` (embed, then Search)."""
    fields = await collection_fields(client, collection)
    face = await embed_largest_face(client, image, fields.face_model)
    request = messages.search_request(
        collection, [messages.vector_term(fields.face, face)], k=k, where=where
    )
    return await _search_one(client, request)


@dataclass
class FaceHits:
    """The matches of one face of a query photo (faces ordered largest first)."""

    index: int
    box: tuple[float, float, float, float]
    quality: float
    hits: list[messages.Hit]


async def search_image_faces(
    client: AsyncFacesearchClient,
    collection: str,
    image: messages.ImageSource,
    *,
    k: int = 10,
    where: messages.FilterSpec = None,
    face: int | None = None,
    by_person: bool = False,
) -> list[FaceHits]:
    """Every face of ``image`` searched at once (one query per face), largest face first;
    ``face`` picks one (0 = the largest). With ``by_person`` each list holds a person's best
    face once (faces without a label stay one by one), not ten copies of one person."""
    fields = await collection_fields(client, collection)
    reply = await client.embedder.EmbedImages(
        messages.embed_images_request([image], model_id=fields.face_model)
    )
    result = reply.results[0]
    if result.error_code:
        raise FacesearchError(f"{messages.describe_image(image)}: {result.error_message}")
    faces = sorted(result.faces, key=lambda f: -(f.box.width * f.box.height))
    if not faces:
        raise NoFaceFound(messages.describe_image(image))
    chosen = list(enumerate(faces))
    if face is not None:
        if not 0 <= face < len(faces):
            raise FacesearchError(
                f"face {face}: {messages.describe_image(image)} has faces 0..{len(faces) - 1}"
            )
        chosen = [chosen[face]]
    # Grouping drops repeats of a person: ask for more so k persons remain.
    wanted = min(k * 5, 1000) if by_person else k
    request = messages.search_request(collection, [], k=wanted, where=where)
    template = request.queries[0]
    del request.queries[:]
    for _, f in chosen:
        q = request.queries.add()
        q.CopyFrom(template)
        q.terms.append(messages.vector_term(fields.face, f))
    results = (await client.retriever.Search(request)).results
    out = []
    for (i, f), found in zip(chosen, results, strict=True):
        hits = messages.hits(found)
        if by_person:
            hits = _best_per_person(hits)
        out.append(
            FaceHits(
                index=i,
                box=(f.box.x, f.box.y, f.box.width, f.box.height),
                quality=f.quality.score,
                hits=hits[:k],
            )
        )
    return out


def _best_per_person(hits: list[messages.Hit]) -> list[messages.Hit]:
    seen: set[str] = set()
    out = []
    for h in hits:
        person = str(h.metadata.get("person_id") or "")
        if person and person in seen:
            continue
        seen.add(person)
        out.append(h)
    return out


async def search_by_text(
    client: AsyncFacesearchClient,
    collection: str,
    text: str,
    *,
    k: int = 10,
    field: str | None = None,
    where: messages.FilterSpec = None,
) -> list[messages.Hit]:
    """Faces whose stored text (caption, tags) is most like ``text``."""
    fields = await collection_fields(client, collection)
    name, model = fields.text_field(field)
    vector, model_id = await _embed_text(client, text, model, embedder_pb2.TEXT_ROLE_QUERY)
    request = messages.search_request(
        collection, [messages.text_term(name, vector, model_id)], k=k, where=where
    )
    return await _search_one(client, request)


async def search_by_person(
    client: AsyncFacesearchClient,
    collection: str,
    person_id: str,
    *,
    k: int = 10,
    person_collection: str = "",
    where: messages.FilterSpec = None,
) -> list[messages.Hit]:
    """Faces most like the enrolled faces of ``person_id`` (metadata person_id)."""
    fields = await collection_fields(client, collection)
    term = messages.person_term(fields.face, person_id, person_collection=person_collection)
    return await _search_one(client, messages.search_request(collection, [term], k=k, where=where))


async def search_person_in_context(
    client: AsyncFacesearchClient,
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
    fields = await collection_fields(client, collection)
    name, model = fields.text_field()
    vector, model_id = await _embed_text(client, context, model, embedder_pb2.TEXT_ROLE_QUERY)
    terms = [
        messages.person_term(
            fields.face, person_id, person_collection=person_collection, weight=person_weight
        ),
        messages.text_term(name, vector, model_id, weight=context_weight),
    ]
    return await _search_one(client, messages.search_request(collection, terms, k=k, where=where))


async def search_face_with_description(
    client: AsyncFacesearchClient,
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
    fields = await collection_fields(client, collection)
    face = await embed_largest_face(client, image, fields.face_model)
    name, model = fields.text_field()
    vector, model_id = await _embed_text(
        client, description, model, embedder_pb2.TEXT_ROLE_DESCRIPTION
    )
    terms = [
        messages.vector_term(fields.face, face, weight=face_weight),
        messages.text_term(name, vector, model_id, weight=description_weight),
    ]
    return await _search_one(client, messages.search_request(collection, terms, k=k, where=where))


async def _search_one(
    client: AsyncFacesearchClient, request: retriever_pb2.SearchRequest
) -> list[messages.Hit]:
    return messages.hits((await client.retriever.Search(request)).results[0])


async def _embed_text(client: AsyncFacesearchClient, text: str, model_id: str, role: int) -> tuple:
    reply = await client.embedder.EmbedText(
        messages.embed_text_request([text], model_id=model_id, role=role)
    )
    return reply.embeddings[0], reply.model_id or model_id
