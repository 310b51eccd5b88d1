"""Every protobuf message the SDK builds or reads, in one place.

Flows (sync and async) and the CLI call these; nothing else builds requests, so a contract
change is made here once. Pure functions, no I/O except reading an image file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from facesearch.errors import CollectionMismatch
from facesearch_contract.limits import max_bytes
from facesearch_contract.v1 import common_pb2, embedder_pb2, personalizer_pb2, retriever_pb2

# Image files the index flow picks up (what the embedder decodes).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".pgm", ".gif"})

MetadataInput = str | bool | int | float | dt.datetime | Sequence[str]
# A filter as a mapping {field: value or [values]} (AND of equalities / in-sets) or the message.
FilterSpec = Mapping[str, Any] | common_pb2.Filter | None
ImageSource = str | Path | bytes

# The vector field of a collection that holds each face's attribute vector
# (embedder.proto FaceAttributes.vector); description searches score it (TGFR).
ATTRIBUTE_FIELD = "attributes"
# The vector field that holds each photo's scene vector (embedder.proto ImageResult.scene, an
# image-text model's image tower), stored on every face of the photo: a context query's text,
# embedded by the same model, matches the photo's pixels through it.
SCENE_FIELD = "scene"

# The retriever's id limit, read from the contract (retriever.proto, Point.id).
MAX_POINT_ID_BYTES = max_bytes(retriever_pb2.Point, "id")


# ---------------------------------------------------------------- metadata and filters


def metadata_value(value: MetadataInput) -> common_pb2.MetadataValue:
    # bool before int: bool is an int in Python.
    if isinstance(value, bool):
        return common_pb2.MetadataValue(bool_value=value)
    if isinstance(value, int):
        return common_pb2.MetadataValue(int_value=value)
    if isinstance(value, float):
        return common_pb2.MetadataValue(double_value=value)
    if isinstance(value, str):
        return common_pb2.MetadataValue(string_value=value)
    if isinstance(value, dt.datetime):
        stamp = Timestamp()
        stamp.FromDatetime(value.astimezone(dt.UTC) if value.tzinfo else value)
        return common_pb2.MetadataValue(time_value=stamp)
    if isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(v, str) for v in value):
        return common_pb2.MetadataValue(string_list_value=common_pb2.StringList(values=list(value)))
    raise TypeError(f"metadata value {value!r}: use str, bool, int, float, datetime or a str list")


def python_value(value: common_pb2.MetadataValue) -> Any:
    kind = value.WhichOneof("kind")
    if kind is None:
        return None
    if kind == "time_value":
        return value.time_value.ToDatetime(tzinfo=dt.UTC)
    if kind == "string_list_value":
        return list(value.string_list_value.values)
    return getattr(value, kind)


def metadata_map(values: Mapping[str, MetadataInput]) -> dict[str, common_pb2.MetadataValue]:
    return {k: metadata_value(v) for k, v in values.items() if v is not None}


def python_metadata(values: Mapping[str, common_pb2.MetadataValue]) -> dict[str, Any]:
    return {k: python_value(v) for k, v in sorted(values.items())}


def filter_from(spec: FilterSpec) -> common_pb2.Filter | None:
    """``{"person_id": "p1", "source": ["a", "b"]}`` -> person_id == p1 AND source in {a, b}."""
    if spec is None or isinstance(spec, common_pb2.Filter):
        return spec
    conditions = []
    for name, value in spec.items():
        if isinstance(value, (list, tuple, set, frozenset)):
            values = common_pb2.MetadataValueList(values=[metadata_value(v) for v in value])
            conditions.append(common_pb2.FieldCondition(field=name, in_set=values))
        else:
            conditions.append(common_pb2.FieldCondition(field=name, equals=metadata_value(value)))
    return common_pb2.Filter(must=conditions)


def parse_where(items: Iterable[str]) -> dict[str, Any]:
    """CLI filters: ``key=value`` (equality) or ``key=a,b`` (any of); ints stay ints."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"filter {item!r}: write it as key=value or key=a,b")
        parts = [_scalar(p) for p in raw.split(",")] if "," in raw else _scalar(raw)
        out[key.strip()] = parts
    return out


def _scalar(raw: str) -> Any:
    raw = raw.strip()
    try:
        return int(raw)
    except ValueError:
        return raw


# ---------------------------------------------------------------- embedder requests


def describe_image(image: ImageSource) -> str:
    return f"{len(image)} bytes of image data" if isinstance(image, bytes) else str(image)


def image_input(image: ImageSource, media_id: str | None = None) -> embedder_pb2.ImageInput:
    if isinstance(image, bytes):
        return embedder_pb2.ImageInput(data=image, media_id=media_id or "")
    path = Path(image)
    return embedder_pb2.ImageInput(data=path.read_bytes(), media_id=media_id or str(path))


def embed_images_request(
    images: Sequence[ImageSource], *, model_id: str = "", max_faces: int = 0
) -> embedder_pb2.EmbedImagesRequest:
    return embedder_pb2.EmbedImagesRequest(
        images=[image_input(i) for i in images],
        model_id=model_id,
        options=embedder_pb2.DetectionOptions(max_faces=max_faces),
    )


def embed_text_request(
    texts: Sequence[str], *, model_id: str = "", role: int = embedder_pb2.TEXT_ROLE_QUERY
) -> embedder_pb2.EmbedTextRequest:
    return embedder_pb2.EmbedTextRequest(texts=list(texts), model_id=model_id, role=role)  # type: ignore[arg-type]


def embed_stream_requests(
    images: Iterable[tuple[str, bytes]], *, model_id: str = ""
) -> Iterable[embedder_pb2.EmbedStreamRequest]:
    """(media_id, bytes) pairs -> the bulk stream; options ride on the first message."""
    first = True
    for media_id, data in images:
        yield embedder_pb2.EmbedStreamRequest(
            image=embedder_pb2.ImageInput(data=data, media_id=media_id),
            model_id=model_id if first else "",
        )
        first = False


def largest_face(result: embedder_pb2.ImageResult) -> embedder_pb2.Face | None:
    """The face with the largest box (the subject of a portrait), or None."""
    if not result.faces:
        return None
    return max(result.faces, key=lambda f: (f.box.width * f.box.height, f.detection_score))


# ---------------------------------------------------------------- collections


@dataclass(frozen=True)
class CollectionFields:
    """The vector fields of a collection, as the flows need them."""

    face: str
    face_model: str
    text_fields: dict[str, str] = field(default_factory=dict)  # name -> model id
    # The face attribute field (ATTRIBUTE_FIELD) and its attribute model; "" when none.
    attributes: str = ""
    attributes_model: str = ""
    # Vectors stored per field (DescribeCollection's field_stats).
    stored: dict[str, int] = field(default_factory=dict)
    # The scene field (SCENE_FIELD) and its image-text model; "" when none.
    scene: str = ""
    scene_model: str = ""

    @classmethod
    def of(cls, info: retriever_pb2.CollectionInfo) -> CollectionFields:
        if not info.vector_fields:
            raise CollectionMismatch(f"collection {info.name!r} has no vector field")
        primary = info.vector_fields[0]
        rest = info.vector_fields[1:]
        text = {f.name: f.model_id for f in rest if f.name not in (ATTRIBUTE_FIELD, SCENE_FIELD)}
        attrs = next((f for f in rest if f.name == ATTRIBUTE_FIELD), None)
        scene = next((f for f in rest if f.name == SCENE_FIELD), None)
        return cls(
            primary.name,
            primary.model_id,
            text,
            attrs.name if attrs else "",
            attrs.model_id if attrs else "",
            {s.name: int(s.vectors) for s in info.field_stats},
            scene=scene.name if scene else "",
            scene_model=scene.model_id if scene else "",
        )

    @property
    def attribute_field(self) -> tuple[str, str] | None:
        """(field, attribute model) where faces store their attribute vectors, or None."""
        return (self.attributes, self.attributes_model) if self.attributes else None

    @property
    def scene_field(self) -> tuple[str, str] | None:
        """(field, image-text model) where faces store their photo's scene vector, or None."""
        return (self.scene, self.scene_model) if self.scene else None

    def text_field(self, name: str | None = None) -> tuple[str, str]:
        """(field, model id) of the text field to search: ``name`` or the only/"caption" one."""
        if name:
            if name not in self.text_fields:
                raise CollectionMismatch(
                    f"the collection has no text field {name!r}; it has {sorted(self.text_fields)}"
                )
            return name, self.text_fields[name]
        if "caption" in self.text_fields:
            return "caption", self.text_fields["caption"]
        if len(self.text_fields) == 1:
            return next(iter(self.text_fields.items()))
        raise CollectionMismatch(
            "the collection has no text field to search: it was created without a caption "
            "field (facesearch index --no-captions, or by hand); index the photos into a new "
            "collection without --no-captions, with their captions (IPTC/XMP/EXIF text in the "
            "files, or sidecar .txt/.json)"
            if not self.text_fields
            else f"name the text field to search, one of {sorted(self.text_fields)}"
        )


def create_collection_request(
    name: str,
    face_model: embedder_pb2.ModelInfo,
    text_model: embedder_pb2.ModelInfo | None = None,
    *,
    shards: int = 1,
    description: str = "",
    attribute_model: embedder_pb2.ModelInfo | None = None,
    scene_model: embedder_pb2.ModelInfo | None = None,
    face_index: retriever_pb2.IndexParams | None = None,
) -> retriever_pb2.CreateCollectionRequest:
    """A collection with a "face" field and, given a text model, a "caption" field; given an
    attribute model, an "attributes" field (what description searches read, TGFR); given an
    image-text model, a "scene" field (SCENE_FIELD: what context queries match pixels in).
    ``face_index``: the face field's index (index_choice.FaceIndex.params()); None = the
    retriever's default."""
    fields = [
        retriever_pb2.VectorFieldSpec(
            name="face",
            dimension=face_model.dimension,
            metric=retriever_pb2.METRIC_INNER_PRODUCT,
            model_id=face_model.model_id,
            index=face_index,
        )
    ]
    if text_model is not None:
        fields.append(
            retriever_pb2.VectorFieldSpec(
                name="caption",
                dimension=text_model.dimension,
                metric=retriever_pb2.METRIC_INNER_PRODUCT,
                model_id=text_model.model_id,
            )
        )
    if attribute_model is not None:
        fields.append(
            retriever_pb2.VectorFieldSpec(
                name=ATTRIBUTE_FIELD,
                dimension=attribute_model.dimension,
                metric=retriever_pb2.METRIC_INNER_PRODUCT,
                model_id=attribute_model.model_id,
                # A few dozen numbers per face: exact search is cheap and needs no training.
                index=retriever_pb2.IndexParams(kind=retriever_pb2.INDEX_KIND_FLAT),
            )
        )
    if scene_model is not None:
        fields.append(
            retriever_pb2.VectorFieldSpec(
                name=SCENE_FIELD,
                dimension=scene_model.dimension,
                metric=retriever_pb2.METRIC_INNER_PRODUCT,
                model_id=scene_model.model_id,
            )
        )
    return retriever_pb2.CreateCollectionRequest(
        name=name, vector_fields=fields, shard_count=shards, description=description
    )


def default_model(
    models: Iterable[embedder_pb2.ModelInfo], kind: int
) -> embedder_pb2.ModelInfo | None:
    """The default model of a kind (or the only one) from ListModels."""
    of_kind = [m for m in models if m.kind == kind]
    for model in of_kind:
        if model.is_default:
            return model
    return of_kind[0] if len(of_kind) == 1 else None


# ---------------------------------------------------------------- points


def point_id(media_id: str, face_index: int) -> str:
    """Stable id of the n-th face of a media item: re-indexing replaces, never duplicates.

    Long media ids are hashed so the id stays within the retriever's limit (MAX_POINT_ID_BYTES)."""
    base = media_id
    if len(base.encode()) > MAX_POINT_ID_BYTES - 8:
        base = hashlib.sha256(media_id.encode()).hexdigest()[:32]
    return f"{base}#{face_index}"


def face_points(
    result: embedder_pb2.ImageResult,
    *,
    face_field: str = "face",
    metadata: Mapping[str, MetadataInput] | None = None,
    text_vectors: Mapping[str, tuple[common_pb2.Vector, str]] | None = None,
    attribute_field: tuple[str, str] | None = None,
) -> list[retriever_pb2.Point]:
    """One point per face of an embedded image, with its box and quality as metadata.

    ``text_vectors`` (field -> (vector, model id)) are stored on every face of the image, e.g.
    the image's caption. ``attribute_field`` (field, attribute model): each face's attribute
    vector goes there when the embedder gave one of that model."""
    points = []
    for i, face in enumerate(result.faces):
        meta: dict[str, MetadataInput] = {
            "media_id": result.media_id,
            "face_index": i,
            "box_x": float(face.box.x),
            "box_y": float(face.box.y),
            "box_w": float(face.box.width),
            "box_h": float(face.box.height),
            "detection_score": float(face.detection_score),
            "quality": float(face.quality.score),
        }
        meta.update(metadata or {})
        point = retriever_pb2.Point(id=point_id(result.media_id, i), metadata=metadata_map(meta))
        point.vectors[face_field].CopyFrom(face.embedding)
        point.model_ids[face_field] = face.model_id
        for name, (vector, model_id) in (text_vectors or {}).items():
            point.vectors[name].CopyFrom(vector)
            point.model_ids[name] = model_id
        if attribute_field and face.attributes.model_id == attribute_field[1]:
            point.vectors[attribute_field[0]].CopyFrom(face.attributes.vector)
            point.model_ids[attribute_field[0]] = attribute_field[1]
        points.append(point)
    return points


def upsert_request(
    collection: str, points: Sequence[retriever_pb2.Point], *, durable: bool | None = None
) -> retriever_pb2.UpsertRequest:
    request = retriever_pb2.UpsertRequest(collection=collection, points=list(points))
    if durable is not None:
        request.durable = durable
    return request


# ---------------------------------------------------------------- search


def vector_term(
    field_name: str, face: embedder_pb2.Face, weight: float = 0.0
) -> retriever_pb2.QueryTerm:
    return retriever_pb2.QueryTerm(
        field=field_name, vector=face.embedding, model_id=face.model_id, weight=weight
    )


def text_term(
    field_name: str,
    vector: common_pb2.Vector,
    model_id: str,
    weight: float = 0.0,
    missing_similarity: float | None = None,
) -> retriever_pb2.QueryTerm:
    """``missing_similarity``: what a record without the field scores (None: 0)."""
    term = retriever_pb2.QueryTerm(
        field=field_name, vector=vector, model_id=model_id, weight=weight
    )
    if missing_similarity is not None:
        term.missing_similarity = missing_similarity
    return term


def person_term(
    field_name: str,
    person_id: str,
    *,
    person_collection: str = "",
    weight: float = 0.0,
    aggregation: int = retriever_pb2.PERSON_AGGREGATION_MAX,
) -> retriever_pb2.QueryTerm:
    return retriever_pb2.QueryTerm(
        field=field_name,
        person_id=person_id,
        person_collection=person_collection,
        weight=weight,
        person_aggregation=aggregation,  # type: ignore[arg-type]
    )


def search_request(
    collection: str,
    terms: Sequence[retriever_pb2.QueryTerm],
    *,
    k: int = 10,
    where: FilterSpec = None,
    fusion: int = retriever_pb2.FUSION_WEIGHTED_SUM,
    exclude_ids: Sequence[str] = (),
    with_vectors: bool = False,
) -> retriever_pb2.SearchRequest:
    query = retriever_pb2.Query(
        terms=list(terms),
        k=k,
        fusion=fusion,
        exclude_ids=list(exclude_ids),  # type: ignore[arg-type]
    )
    flt = filter_from(where)
    if flt is not None:
        query.filter.CopyFrom(flt)
    return retriever_pb2.SearchRequest(
        collection=collection, queries=[query], with_vectors=with_vectors
    )


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    term_scores: tuple[float, ...]
    metadata: dict[str, Any]


def hits(result: retriever_pb2.QueryResult) -> list[Hit]:
    return [
        Hit(h.id, float(h.score), tuple(h.term_scores), python_metadata(h.metadata))
        for h in result.hits
    ]


# ---------------------------------------------------------------- sessions


def start_session_request(
    user_id: str,
    collection: str,
    *,
    k: int = 0,
    seed: personalizer_pb2.SessionSeed | None = None,
    where: FilterSpec = None,
    ephemeral: bool = False,
) -> personalizer_pb2.StartSessionRequest:
    request = personalizer_pb2.StartSessionRequest(
        user_id=user_id, collection=collection, k=k, ephemeral=ephemeral
    )
    if seed is not None:
        request.seed.CopyFrom(seed)
    flt = filter_from(where)
    if flt is not None:
        request.filter.CopyFrom(flt)
    return request


def seed_from(
    *,
    image: ImageSource | None = None,
    text: str | None = None,
    person_id: str | None = None,
    point_id: str | None = None,
) -> personalizer_pb2.SessionSeed | None:
    """At most one seed; None when none is given (the first round shows diverse faces)."""
    given = [n for n, v in (("image", image), ("text", text), ("person", person_id),
                            ("point", point_id)) if v]  # fmt: skip
    if len(given) > 1:
        raise ValueError(f"give one seed, not {' and '.join(given)}")
    if image:
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        return personalizer_pb2.SessionSeed(image=data)
    if text:
        return personalizer_pb2.SessionSeed(text=text)
    if person_id:
        return personalizer_pb2.SessionSeed(person_id=person_id)
    if point_id:
        return personalizer_pb2.SessionSeed(point_id=point_id)
    return None


LABELS = {
    "s": personalizer_pb2.FEEDBACK_LABEL_SIMILAR,
    "d": personalizer_pb2.FEEDBACK_LABEL_DISSIMILAR,
    "f": personalizer_pb2.FEEDBACK_LABEL_FOUND,
    "n": personalizer_pb2.FEEDBACK_LABEL_NOT_PERSON_BUT_SIMILAR,  # not them, but similar
    "o": personalizer_pb2.FEEDBACK_LABEL_NOT_PERSON_NOTHING_LIKE,  # not them, nothing like
}


def parse_labels(line: str, candidate_ids: Sequence[str]) -> list[personalizer_pb2.Feedback]:
    """Terminal feedback: ``"1s 3s 2d"`` labels candidates by their 1-based number shown;
    ``"4f"`` says number 4 is the person, ``"5n"`` that 5 is not the person but similar,
    ``"6o"`` that 6 is not the person and nothing like them. Candidates left out count as
    dissimilar (FaIRCoP), so they are sent as such."""
    labels: dict[int, int] = {}
    for token in line.replace(",", " ").split():
        number, letter = token[:-1], token[-1:].lower()
        if not number.isdigit() or letter not in LABELS:
            raise ValueError(
                f"{token!r}: write a candidate number and s (similar), d (dissimilar), "
                "f (found), n (not them, but similar) or o (not them, nothing like them), "
                "e.g. '1s 3d 4f 5n 6o'"
            )
        index = int(number) - 1
        if not 0 <= index < len(candidate_ids):
            raise ValueError(f"{token!r}: there are candidates 1 to {len(candidate_ids)}")
        labels[index] = LABELS[letter]
    if not labels:
        raise ValueError("no labels given: e.g. '1s 3d', or 'q' to stop")
    return [
        personalizer_pb2.Feedback(
            id=cid,
            label=labels.get(i, personalizer_pb2.FEEDBACK_LABEL_DISSIMILAR),  # type: ignore[arg-type]
        )
        for i, cid in enumerate(candidate_ids)
    ]


@dataclass(frozen=True)
class SessionOutcome:
    rounds: int
    finished: bool
    found_id: str
