"""What a context (text) query is matched by: the captions indexed with the photos (the text
encoder's vectors, field "caption") and the photos' own pixels (scene vectors of the embedder's
image-text model, field "scene"), each where the collection holds such vectors, fused by the
retriever as a weighted sum of cosines.

The two cosines live on different scales (a MiniLM paraphrase scores 0.6-0.8, a CLIP text-image
match 0.3 or so), and a face without a caption or scene vector scores 0 on that term. The
weights below are a starting point, not a measurement: no image-text weights install here, so
the scene weight cannot be tuned on this machine. services/embedder/README.md ("Image-text
models") gives the command that measures text->image recall once an operator has weights.

With an Id-CLIP identity translator in the image-text model (`facesearch train idclip`), a
person-in-context query can name the person inside the scene query itself: the context becomes
"<placeholder> <context>" and the person's face (the mean of their labelled faces) goes in
as the placeholder's token (``person``).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import grpc
import numpy as np

from facesearch import messages
from facesearch.async_client import AsyncFacesearchClient
from facesearch.errors import CollectionMismatch, FacesearchError
from facesearch_contract.v1 import common_pb2, embedder_pb2, retriever_pb2

CAPTIONS, SCENE = "captions", "scene"
CAPTION_WEIGHT = 1.0
SCENE_WEIGHT = 1.0


@dataclass(frozen=True)
class ContextTerm:
    """One way the context is matched: ``name`` (CAPTIONS or SCENE), the field, the query
    vector (the context embedded by the field's model) and its weight."""

    name: str
    field: str
    vector: common_pb2.Vector
    model_id: str
    weight: float

    def term(self, scale: float = 1.0) -> retriever_pb2.QueryTerm:
        return messages.text_term(self.field, self.vector, self.model_id, self.weight * scale)


def score(terms: list[ContextTerm], sims: tuple[float, ...]) -> float:
    """The fused context score of a hit from its cosines on ``terms`` (in order)."""
    return sum(t.weight * s for t, s in zip(terms, sims, strict=True))


async def context_terms(
    client: AsyncFacesearchClient,
    fields: messages.CollectionFields,
    collection: str,
    text: str,
    *,
    field: str | None = None,
    scene_weight: float | None = None,
    person: str | None = None,
) -> list[ContextTerm]:
    """The terms that match ``text`` in ``collection``: captions and scene vectors, each where
    faces hold some (``field`` picks one field by name). When neither holds any vector, the
    term of an empty field is still sent, and the retriever refuses it with
    FAILED_PRECONDITION saying what to index; a collection with neither field raises
    CollectionMismatch saying the same. ``person``: the scene query names that person by the
    image-text model's identity token (module doc)."""
    caption = _caption_field(fields, field)
    scene = fields.scene_field if field in (None, messages.SCENE_FIELD) else None
    if field == messages.SCENE_FIELD and scene is None:
        raise CollectionMismatch(
            f"collection {collection!r} has no {messages.SCENE_FIELD!r} field: create it while "
            "the embedder serves an image-text model, or add and fill it with `facesearch "
            f"backfill {collection} --field {messages.SCENE_FIELD}`"
        )
    if caption is None and scene is None:
        raise CollectionMismatch(
            f"collection {collection!r} has no context to match: no text field (captions) and "
            f"no {messages.SCENE_FIELD!r} field (pixels). Index the photos with their captions "
            "(IPTC/XMP/EXIF inside the files, sidecar .txt/.json, .srt/.vtt) into a collection "
            "created while the embedder serves a text encoder (`facesearch index` adds a "
            "caption field), or with an embedder that serves an image-text model (a scene "
            "field: the photos' pixels)"
        )
    chosen = [(CAPTIONS, f) for f in [caption] if f and fields.stored.get(f[0], 0)]
    chosen += [(SCENE, f) for f in [scene] if f and fields.stored.get(f[0], 0)]
    if not chosen:  # no vector anywhere: the retriever says what to index
        chosen = [(CAPTIONS, caption)] if caption else [(SCENE, scene)]  # type: ignore[list-item]
    if person is not None and all(name != SCENE for name, _ in chosen):
        raise FacesearchError(
            f"the identity token goes into the scene query, and collection {collection!r} holds "
            "no scene vectors: index (or back-fill) them with an image-text model first"
        )
    weights = {
        CAPTIONS: CAPTION_WEIGHT,
        SCENE: SCENE_WEIGHT if scene_weight is None else scene_weight,
    }

    async def embed(name: str, pair: tuple[str, str]) -> ContextTerm:
        request = messages.embed_text_request(
            [text], model_id=pair[1], role=embedder_pb2.TEXT_ROLE_QUERY
        )
        if name == SCENE and person is not None:
            await _name_the_person(client, fields, collection, person, request)
        reply = await client.embedder.EmbedText(request)
        return ContextTerm(
            name, pair[0], reply.embeddings[0], reply.model_id or pair[1], weights[name]
        )

    return list(await asyncio.gather(*(embed(name, pair) for name, pair in chosen)))


async def _name_the_person(
    client: AsyncFacesearchClient,
    fields: messages.CollectionFields,
    collection: str,
    person: str,
    request: embedder_pb2.EmbedTextRequest,
) -> None:
    """Put the person into a scene query: the model's placeholder word before the context
    (unless the context has it) and the person's mean labelled face as its token."""
    models = (await client.embedder.ListModels(embedder_pb2.ListModelsRequest())).models
    model = next((m for m in models if m.model_id == request.model_id), None)
    card = json.loads(model.card_json) if model is not None and model.card_json else {}
    identity = card.get("identity")
    if not identity:
        raise FacesearchError(
            f"the image-text model {request.model_id!r} has no identity translator: train one "
            "with `facesearch train idclip`, or search without the identity token"
        )
    if fields.face_model != identity["face_model"]:
        raise FacesearchError(
            f"the identity translator reads {identity['face_model']!r} faces; the collection's "
            f"are {fields.face_model!r}: search without the identity token"
        )
    # The person's own faces: the person term ranks them first (similarity 1), the filter
    # keeps only them.
    request_faces = messages.search_request(
        collection,
        [messages.person_term(fields.face, person)],
        k=100,
        where={"person_id": person},
        with_vectors=True,
    )
    try:
        found = (await client.retriever.Search(request_faces)).results[0].hits
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
            raise
        found = []  # the retriever knows no face of theirs
    faces = [list(h.vectors[fields.face].values) for h in found]
    if not faces:
        raise FacesearchError(
            f"no labelled face of {person!r} to stand for the identity token: label their "
            "faces, or search without it"
        )
    mean = np.mean(np.asarray(faces, dtype=np.float32), axis=0)
    word = str(identity["placeholder"])
    if word not in request.texts[0].lower().split():
        request.texts[0] = f"{word} {request.texts[0]}"
    request.identities.add().values.extend((mean / np.linalg.norm(mean)).tolist())


def _caption_field(fields: messages.CollectionFields, field: str | None) -> tuple[str, str] | None:
    if field == messages.SCENE_FIELD or not fields.text_fields:
        return None
    return fields.text_field(field)


def scene_coverage_notes(reply: retriever_pb2.SearchResponse, collection: str) -> list[str]:
    """What a user must know when only part of the faces hold scene vectors (an older
    collection being back-filled): the others were matched by their captions only."""
    return [
        f"{c.points_without:,} of the {c.points:,} faces have no {c.field!r} vector: their "
        f"photos were not matched by their pixels; fill them with `facesearch backfill "
        f"{collection} --field {c.field}`"
        for c in reply.partial_fields
        if c.field == messages.SCENE_FIELD
    ]
