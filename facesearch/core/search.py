"""Searches: by a face, by text, a person in a context, a face with a description."""

from __future__ import annotations

import math
from dataclasses import dataclass

import grpc

from facesearch import messages
from facesearch.async_client import AsyncFacesearchClient
from facesearch.core.collections import collection_fields
from facesearch.core.context_terms import ContextTerm, context_terms, scene_coverage_notes
from facesearch.core.context_terms import score as context_score
from facesearch.core.image_faces import embed_image_faces
from facesearch.core.persons import ensure_identification
from facesearch.errors import CollectionMismatch, FacesearchError, NoFaceFound
from facesearch_contract.v1 import common_pb2, embedder_pb2, persons_pb2, retriever_pb2


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
    face: int = 0,
) -> list[messages.Hit]:
    """Faces most like one face of ``image``: ``face`` 0 is the largest, 1 the next, ...
    (FacesearchError naming the faces there are when there is no such face). Every face at
    once, each with its box: ``search_image_faces``."""
    (found,) = await search_image_faces(client, collection, image, k=k, where=where, face=face)
    return found.hits


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
    for attempt in range(2):
        faces = await embed_image_faces(client, image, fields.face_model)
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
        try:
            results = (await client.retriever.Search(request)).results
            break
        except grpc.RpcError as err:
            moved = None if attempt else await _moved_fields(client, collection, fields, err)
            if moved is None:
                raise
            fields = moved
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


async def _moved_fields(
    client: AsyncFacesearchClient,
    collection: str,
    fields: messages.CollectionFields,
    err: grpc.RpcError,
) -> messages.CollectionFields | None:
    """The collection's fields now, when a search was refused because the alias it went
    through moved to a collection of other models between describe and search (a re-embedding
    rolling out): the query is then built again for the new one. None for any other refusal."""
    if err.code() != grpc.StatusCode.INVALID_ARGUMENT:  # type: ignore[attr-defined]
        return None
    now = await collection_fields(client, collection)
    if (now.face_model, now.text_fields) == (fields.face_model, fields.text_fields):
        return None
    return now


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
    scene_weight: float | None = None,
) -> list[messages.Hit]:
    """Faces whose photo's context is most like ``text``: its stored text (caption, tags) and,
    where the collection holds scene vectors, its pixels (the image-text model), fused by
    weighted sum (core.context_terms; a hit's term_scores: caption cosine, then scene cosine,
    for the terms the collection has). ``field`` matches one field alone (a text field or
    "scene"). A collection with neither captions nor scene vectors is refused saying what to
    index."""
    fields = await collection_fields(client, collection)
    terms = await context_terms(
        client, fields, collection, text, field=field, scene_weight=scene_weight
    )
    request = messages.search_request(collection, [t.term() for t in terms], k=k, where=where)
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


# Person in context: unlabelled faces checked against the person per search (the nearest ones
# by face; the notes say when there may be more), sent to Identify this many at a time
# (persons.proto IdentifyRequest.faces).
UNLABELLED_CANDIDATES = 256
IDENTIFY_BATCH = 64
# Weight of the context term beside the face term (1) in the query for unlabelled candidates:
# enough for the faces nearest the context to be gathered and checked too, too small to reorder
# the face ranking.
CONTEXT_GATHER_WEIGHT = 1e-3


class ContextHits(list[messages.Hit]):
    """The hits of a person-in-context search, best context first. ``used`` names the context
    terms ("captions": the caption's cosine with the context; "scene": the photo's scene
    vector's, from the image-text model), in the order of each hit's term scores; a hit's
    score is their weighted sum (core.context_terms). ``identified`` holds the ids of
    unlabelled faces that are in because they identify as the person at the match operating
    point; ``notes`` says what a user must know (e.g. that more unlabelled faces may match)."""

    def __init__(self, hits: list[messages.Hit]) -> None:
        super().__init__(hits)
        self.used: list[str] = []
        self.identified: set[str] = set()
        self.notes: list[str] = []


async def search_person_in_context(
    client: AsyncFacesearchClient,
    collection: str,
    person_id: str,
    context: str,
    *,
    k: int = 10,
    include_unlabelled: bool = False,
    person_collection: str = "",
    where: messages.FilterSpec = None,
    scene_weight: float | None = None,
    identity_token: bool = False,
) -> ContextHits:
    """A named person in a context ("Anna Berg shaking hands at a summit", Id-CLIP's task):
    only the faces of ``person_id``, ranked by how well their photo's context matches
    ``context``: its caption and, where the collection holds scene vectors, its pixels
    (core.context_terms).

    The person's faces are those labelled with them; with ``include_unlabelled`` also the
    unlabelled faces that identify as them at the ``match`` operating point (the Persons
    service's Identify against the person's references, in ``person_collection`` when given;
    identification is configured from the model card when it is not yet), checked among the
    UNLABELLED_CANDIDATES unlabelled faces nearest the person's faces or the context. A face
    without a caption or scene vector cannot be ranked by it and is left out. With
    ``identity_token`` the scene query also names the person by the image-text model's Id-CLIP
    translator (their mean labelled face; core.context_terms). A collection
    with neither a caption nor a scene field raises CollectionMismatch, one whose fields hold
    no vector is refused by the retriever (FAILED_PRECONDITION): both say what to index."""
    fields = await collection_fields(client, collection)
    terms = await context_terms(
        client,
        fields,
        collection,
        context,
        scene_weight=scene_weight,
        person=person_id if identity_token else None,
    )
    request = messages.search_request(collection, [t.term() for t in terms], k=k, where=where)
    request.queries[0].filter.must.append(
        common_pb2.FieldCondition(
            field="person_id", equals=common_pb2.MetadataValue(string_value=person_id)
        )
    )
    reply = await client.retriever.Search(request)
    out = ContextHits(messages.hits(reply.results[0]))
    out.used = [t.name for t in terms]
    out.notes.extend(scene_coverage_notes(reply, collection))
    if include_unlabelled:
        found = await _unlabelled_in_context(
            client,
            collection,
            fields,
            person_id,
            terms,
            person_collection=person_collection,
            where=where,
            out=out,
        )
        out.identified = {h.id for h in found}
        out.extend(found)
        out.sort(key=lambda h: -h.score)
        del out[k:]
        out.identified &= {h.id for h in out}
    if out and len(out) < k and not include_unlabelled:
        # On a partly labelled archive the labelled faces are a fraction of the person's photos
        # (bench/idclip: a third of the right answers at 5 of 15 labelled), so say so.
        out.notes.append(
            f"only {len(out)} labelled face(s) of {person_id!r} with context text; their "
            "unlabelled faces were not searched (CLI --unlabelled, SDK include_unlabelled=True "
            "also searches those that identify as them)"
        )
    if not out:
        out.notes.append(
            f"no face of {person_id!r} with context text (none labelled, or none captioned): "
            "label their faces, index captions of their photos "
            "(IPTC/XMP/EXIF, sidecar .txt/.json, .srt/.vtt)"
            + (
                ""
                if include_unlabelled
                else ", or include unlabelled faces that identify as them (CLI --unlabelled, "
                "SDK include_unlabelled=True)"
            )
        )
    return out


async def _unlabelled_in_context(
    client: AsyncFacesearchClient,
    collection: str,
    fields: messages.CollectionFields,
    person_id: str,
    context: list[ContextTerm],
    *,
    person_collection: str,
    where: messages.FilterSpec,
    out: ContextHits,
) -> list[messages.Hit]:
    """Unlabelled faces that identify as ``person_id`` at the match point, each scored by its
    context (the retriever scores every candidate on every term: face, then the context's)."""
    terms = [
        messages.person_term(fields.face, person_id, person_collection=person_collection),
        *(t.term(CONTEXT_GATHER_WEIGHT) for t in context),
    ]
    request = messages.search_request(
        collection, terms, k=UNLABELLED_CANDIDATES, where=where, with_vectors=True
    )
    request.queries[0].filter.must.append(
        common_pb2.FieldCondition(field="person_id", exists=False)
    )
    candidates = list((await client.retriever.Search(request)).results[0].hits)
    persons_of = person_collection or collection
    await ensure_identification(client, persons_of)
    matched = []
    for i in range(0, len(candidates), IDENTIFY_BATCH):
        batch = candidates[i : i + IDENTIFY_BATCH]
        reply = await client.persons.Identify(
            persons_pb2.IdentifyRequest(
                collection=persons_of,
                max_candidates=1,
                faces=[
                    persons_pb2.FaceProbe(
                        vector=h.vectors[fields.face],
                        quality=min(max(_quality(h), 0.0), 1.0),
                        ref=h.id,
                        model_id=fields.face_model,
                    )
                    for h in batch
                ],
            )
        )
        for h, answer in zip(batch, reply.faces, strict=True):
            top = answer.candidates[0] if answer.candidates else None
            if (
                answer.decision == persons_pb2.DECISION_MATCH
                and top is not None
                and top.person_id == person_id
            ):
                matched.append(h)
    with_context = [h for h in matched if any(t.field in h.vectors for t in context)]
    if len(with_context) < len(matched):
        out.notes.append(
            f"{len(matched) - len(with_context)} unlabelled face(s) identify as {person_id!r} "
            "but have no context text to rank by: left out"
        )
    if len(candidates) == UNLABELLED_CANDIDATES:
        out.notes.append(
            f"checked the {UNLABELLED_CANDIDATES} unlabelled faces nearest {person_id!r}; more "
            "may identify as them: label them (facesearch persons) to include them all"
        )
    return [
        messages.Hit(
            h.id,
            context_score(context, tuple(h.term_scores[1:])),
            tuple(h.term_scores[1:]),
            messages.python_metadata(h.metadata),
        )
        for h in with_context
    ]


def _quality(hit: retriever_pb2.ScoredPoint) -> float:
    # Unset quality reads as the poorest (persons.proto FaceProbe.quality).
    return float(hit.metadata["quality"].double_value) if "quality" in hit.metadata else 0.0


# TGFR fusion: the face term's weight follows the probe's quality (embedder.proto FaceQuality,
# 0..1): FACE_WEIGHT_FLOOR for an unusable face (a 16 px face scores 0 yet still ranks its
# person first about two times in three), 1 for a good one. Both weights were chosen on the
# training identities of bench/tgfr with out-of-fold attribute predictions, never on the
# held-out ones (bench/tgfr/README.md); there the attribute term barely moves rank-1, so the
# weight is small: the attribute model is the limit, not the fusion.
FACE_WEIGHT_FLOOR = 0.5
# Weight of the attribute term (mean log-likelihood of the description's evidence, -3.9..0)
# and of the caption term (cosine, today's fusion) beside a face term of weight 1.
ATTRIBUTE_WEIGHT = 0.03
CAPTION_WEIGHT = 0.5


@dataclass(frozen=True)
class AttributeReading:
    """One attribute a description states (embedder.proto AttributeEvidence)."""

    name: str
    present: bool
    confidence: float
    phrase: str

    def __str__(self) -> str:
        return f"{'' if self.present else 'no '}{self.name} ({self.phrase!r} {self.confidence:.2f})"


class DescriptionHits(list[messages.Hit]):
    """The hits of a description search (a list, best first), with what was understood and
    how it was used: ``evidence`` (the attributes the description states), ``used`` ("face",
    "attributes", "captions": the terms, in the order of each hit's ``term_scores``),
    ``face_quality`` and ``face_weight`` (None when the probe had no usable face), and
    ``notes`` (what a user must know, e.g. that no face was found and the description
    searched alone).

    ``fusion`` says which fusion ran: "attributes" (the default: face term plus the
    description scored against stored attributes or captions) or "learned" (one fused probe
    from the embedder's description fusion model, FuseDescription, searched against the face
    field; ``used`` is then ["learned"]), with ``fusion_model``, ``description_weight`` (how
    much the description moved the probe, 0 = the face alone) and ``query_vector`` (the
    fused probe searched)."""

    def __init__(self, hits: list[messages.Hit]) -> None:
        super().__init__(hits)
        self.evidence: list[AttributeReading] = []
        self.used: list[str] = []
        self.face_quality: float | None = None
        self.face_weight: float | None = None
        self.notes: list[str] = []
        self.fusion = "attributes"
        self.fusion_model: str | None = None
        self.description_weight: float | None = None
        self.query_vector: list[float] | None = None
        # The attribute term's score for a face stored without attributes (the description's
        # mean log-likelihood under the attribute priors); None when no attribute term ran.
        self.missing_attribute_score: float | None = None

    def face_score(self, hit: messages.Hit) -> float | None:
        """The hit's cosine with the probe face, or None when no face term ran."""
        return hit.term_scores[self.used.index("face")] if "face" in self.used else None

    def description_score(self, hit: messages.Hit) -> float | None:
        """How well the hit fits the description: for attributes, the geometric mean of the
        probabilities of the stated readings (0..1); for captions, the cosine; None when no
        description term ran."""
        if "attributes" in self.used:
            return math.exp(hit.term_scores[self.used.index("attributes")])
        if "captions" in self.used:
            return hit.term_scores[self.used.index("captions")]
        return None


# How a description search fuses face and description (search_face_with_description).
FUSIONS = ("attributes", "learned")


def face_weight_for(quality: float, floor: float = FACE_WEIGHT_FLOOR) -> float:
    """The face term's weight for a probe of this quality (0..1)."""
    return floor + (1.0 - floor) * min(max(quality, 0.0), 1.0)


async def search_face_with_description(
    client: AsyncFacesearchClient,
    collection: str,
    image: messages.ImageSource | None,
    description: str,
    *,
    k: int = 10,
    face_weight: float | None = None,
    description_weight: float | None = None,
    where: messages.FilterSpec = None,
    fusion: str = "attributes",
) -> DescriptionHits:
    """A (possibly poor) face plus a description of it (TGFR), or a description alone
    (``image`` None).

    ``fusion`` "learned" fuses face and description into one probe with the embedder's
    learned description fusion model (FuseDescription; measured no better than the face
    alone, bench/tgfr) and searches the face field with it; it needs an image (ValueError
    without one) and ignores ``face_weight`` / ``description_weight``; a photo with no
    detectable face is searched by the description alone, as below, and ``notes`` says so.
    The default, "attributes", is described below.

    The description is read into attribute evidence by the embedder ("an older man with
    glasses and no beard": young absent, male present, eyeglasses present, beard absent) and
    scored against the attribute vectors stored with every face; a collection without them
    falls back to captions. The face term's weight follows the probe's quality
    (``face_weight_for``) unless ``face_weight`` is given. A photo with no detectable face is
    searched by the description alone, and ``notes`` says so. A collection with neither
    attribute vectors nor captions raises CollectionMismatch saying how to back-fill, never
    the plain face result."""
    if fusion not in FUSIONS:
        raise ValueError(f"fusion is {fusion!r}; use one of {', '.join(FUSIONS)}")
    fields = await collection_fields(client, collection)
    reply = await client.embedder.EmbedText(
        messages.embed_text_request(
            [description],
            model_id=fields.text_fields.get("caption", ""),
            role=embedder_pb2.TEXT_ROLE_DESCRIPTION,
        )
    )
    parsed = reply.descriptions[0] if reply.descriptions else None
    out = DescriptionHits([])
    if parsed is not None:
        out.evidence = [
            AttributeReading(e.name, e.present, e.confidence, e.phrase) for e in parsed.evidence
        ]
    terms: list[retriever_pb2.QueryTerm] = []
    if fusion == "learned" and image is None:
        raise ValueError("learned fusion fuses a face with its description: give an image")
    if image is not None:
        try:
            face = await embed_largest_face(client, image, fields.face_model)
        except NoFaceFound:
            # As TGFR asks: a photo without a usable face still has its description.
            learned = (
                " (learned fusion needs a face, so the description ran through attribute fusion)"
                if fusion == "learned"
                else ""
            )
            out.notes.append(
                f"no face found in {messages.describe_image(image)}: searched by the "
                f"description alone{learned}"
            )
        else:
            if fusion == "learned":
                return await _search_learned(
                    client, collection, fields, face, description, k, where, out
                )
            out.face_quality = float(face.quality.score)
            out.face_weight = (
                face_weight if face_weight is not None else face_weight_for(out.face_quality)
            )
            terms.append(messages.vector_term(fields.face, face, weight=out.face_weight))
            out.used.append("face")
    term = _description_term(fields, collection, parsed, reply, description_weight, out)
    terms.append(term)
    request = messages.search_request(collection, terms, k=k, where=where)
    reply = await client.retriever.Search(request)
    out.extend(messages.hits(reply.results[0]))
    out.notes.extend(_coverage_notes(reply, collection, out))
    return out


async def _search_learned(
    client: AsyncFacesearchClient,
    collection: str,
    fields: messages.CollectionFields,
    face: embedder_pb2.Face,
    description: str,
    k: int,
    where: messages.FilterSpec,
    out: DescriptionHits,
) -> DescriptionHits:
    """Learned fusion: the face's embedding and the description fused by the embedder into
    one probe in the face model's space, searched against the collection's face vectors."""
    fused = await client.embedder.FuseDescription(
        embedder_pb2.FuseDescriptionRequest(
            embedding=face.embedding,
            face_model_id=face.model_id,
            quality=face.quality.score,
            description=description,
        )
    )
    out.fusion, out.fusion_model = "learned", fused.model_id
    out.description_weight = float(fused.description_weight)
    out.face_quality = float(face.quality.score)
    out.query_vector = list(fused.fused.values)
    out.used.append("learned")
    term = retriever_pb2.QueryTerm(
        field=fields.face, vector=fused.fused, model_id=fused.face_model_id
    )
    reply = await client.retriever.Search(
        messages.search_request(collection, [term], k=k, where=where)
    )
    out.extend(messages.hits(reply.results[0]))
    return out


def _coverage_notes(
    reply: retriever_pb2.SearchResponse, collection: str, out: DescriptionHits
) -> list[str]:
    """What a user must know of a field searched that only part of the faces hold
    (SearchResponse.partial_fields): those faces were not scored by it."""
    notes = []
    for c in reply.partial_fields:
        head = f"{c.points_without:,} of the {c.points:,} faces have no {c.field!r} vector"
        if c.field == messages.ATTRIBUTE_FIELD:
            neutral = out.missing_attribute_score
            how = (
                "they score as a face of unknown attributes would (the description's "
                f"likelihood under the attribute priors, {math.exp(neutral):.2f})"
                if neutral
                # An embedder that states no priors: 0, the best a log-likelihood scores.
                else "they score as if they fitted it fully and may rank too high"
            )
            found = (
                ""
                if "face" in out.used
                else ", and a search by the description alone cannot find them"
            )
            notes.append(
                f"{head}: the description could not be checked against them, so {how}{found}; "
                f"fill them with `facesearch backfill {collection} --field {c.field}`"
            )
        else:
            notes.append(f"{head}: the description was not matched against them (score 0)")
    return notes


def _description_term(
    fields: messages.CollectionFields,
    collection: str,
    parsed: embedder_pb2.DescriptionEvidence | None,
    reply: embedder_pb2.EmbedTextResponse,
    weight: float | None,
    out: DescriptionHits,
) -> retriever_pb2.QueryTerm:
    """The attribute term when the collection stores attributes and the description states
    some; else the caption term when it stores captions; else a clear refusal."""
    has_attributes = bool(fields.attributes and fields.stored.get(fields.attributes, 0))
    caption = fields.text_fields.get("caption") and "caption"
    caption = caption or (next(iter(fields.text_fields)) if len(fields.text_fields) == 1 else "")
    has_captions = bool(caption and fields.stored.get(caption, 0))
    model = parsed.attribute_model_id if parsed is not None else ""
    if has_attributes and model and model != fields.attributes_model:
        raise CollectionMismatch(
            f"collection {collection!r} stores attributes of model {fields.attributes_model!r}, "
            f"but the embedder reads descriptions for {model!r}: search it "
            "through an embedder serving that model, or re-index the photos into a collection "
            "created for this one"
        )
    if has_attributes and out.evidence:
        out.used.append("attributes")
        assert parsed is not None
        # A face stored without attributes scores the description's likelihood under the
        # model's priors (neutral), not 0: 0 is the best a log-likelihood can score.
        out.missing_attribute_score = parsed.prior_score
        return messages.text_term(
            fields.attributes,
            parsed.query_vector,
            fields.attributes_model,
            weight=ATTRIBUTE_WEIGHT if weight is None else weight,
            missing_similarity=parsed.prior_score,
        )
    if has_captions:
        if has_attributes:
            out.notes.append(
                "the description names no attribute the model knows (sex, age, beard, "
                "moustache, goatee, glasses, bald, hair colour, hat, make-up, smile): "
                "matched against captions instead"
            )
        out.used.append("captions")
        return messages.text_term(
            caption,
            reply.embeddings[0],
            reply.model_id,
            weight=CAPTION_WEIGHT if weight is None else weight,
        )
    if has_attributes:
        raise CollectionMismatch(
            "the description names no attribute the model knows: describe sex, age, beard, "
            "moustache, goatee, glasses, baldness, hair colour, a hat, make-up or a smile "
            '(e.g. "an older man with glasses and no beard")'
        )
    raise CollectionMismatch(
        f"collection {collection!r} has neither face attributes nor captions, so a description "
        f"cannot change the result: back-fill attributes with `facesearch backfill "
        f"{collection} --field attributes` (SDK: flows.backfill; it adds the field when missing "
        "and needs an embedder serving an attribute model), or index the photos' captions "
        "(sidecar .txt/.json, IPTC/XMP/EXIF)"
    )


async def _search_one(
    client: AsyncFacesearchClient, request: retriever_pb2.SearchRequest
) -> list[messages.Hit]:
    return messages.hits((await client.retriever.Search(request)).results[0])


async def _embed_text(client: AsyncFacesearchClient, text: str, model_id: str, role: int) -> tuple:
    reply = await client.embedder.EmbedText(
        messages.embed_text_request([text], model_id=model_id, role=role)
    )
    return reply.embeddings[0], reply.model_id or model_id
