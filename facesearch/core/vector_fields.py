"""Vector fields a collection can gain after it was created (AddVectorField), how each is filled
from a stored photo (``facesearch backfill``), and what a face stores in them.

A field is filled by a ``Filler``: which embedder model kind makes its vectors, how the field is
indexed, and how one face's vector is read from the embedder's answer for its photo
(``EmbedImagesStream``'s ImageResult). Adding a field filled from the photo (say ``scene``:
an image-text vector of the whole photo, the same for each of its faces) is one entry in
``FILLERS`` with a ``vector`` reading it from the ImageResult.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from facesearch import messages
from facesearch.async_client import AsyncFacesearchClient
from facesearch.errors import CollectionMismatch, FacesearchError
from facesearch_contract.limits import max_items
from facesearch_contract.v1 import common_pb2, embedder_pb2, retriever_pb2

# (vector, model id) of one face for a field, or None when the embedder gave none.
FaceVector = tuple[common_pb2.Vector, str] | None
MAX_GET_IDS = max_items(retriever_pb2.GetRequest, "ids")


def _face_attributes(result: embedder_pb2.ImageResult, face: embedder_pb2.Face) -> FaceVector:
    attrs = face.attributes
    return (attrs.vector, attrs.model_id) if attrs.model_id else None


@dataclass(frozen=True)
class Filler:
    """How a vector field is made and filled from a photo."""

    # The embedder model kind whose default model (ListModels) the field holds.
    model_kind: int
    # One face's vector for the field, from its photo's ImageResult.
    vector: Callable[[embedder_pb2.ImageResult, embedder_pb2.Face], FaceVector]
    # Index parameters of the field (zero values: the retriever's defaults).
    index: retriever_pb2.IndexParams = field(default_factory=retriever_pb2.IndexParams)
    # What a user is told to check when the embedder has no such model.
    needs: str = ""
    # A vector of the whole photo (the scene): asked of the embedder (with_scene) and given to
    # every stored face of the photo, whether or not its face is detected again.
    per_photo: bool = False


def _photo_scene(result: embedder_pb2.ImageResult, face: embedder_pb2.Face | None) -> FaceVector:
    return (result.scene, result.scene_model_id) if result.scene_model_id else None


FILLERS: dict[str, Filler] = {
    messages.ATTRIBUTE_FIELD: Filler(
        embedder_pb2.MODEL_KIND_FACE_ATTRIBUTES,
        _face_attributes,
        # A few dozen numbers per face: exact search is cheap and needs no training.
        retriever_pb2.IndexParams(kind=retriever_pb2.INDEX_KIND_FLAT),
        "an attribute model (celeba-attr-sface-v1)",
    ),
    messages.SCENE_FIELD: Filler(
        embedder_pb2.MODEL_KIND_IMAGE_TEXT_ENCODER,
        _photo_scene,
        needs="an image-text model (clip_import; FACESEARCH_EMBEDDER_IMAGE_TEXT_MODEL)",
        per_photo=True,
    ),
}


def fill_model(models: Sequence[embedder_pb2.ModelInfo], name: str) -> embedder_pb2.ModelInfo:
    """Of the embedder's models (ListModels), the one that fills field ``name``: the default
    model of its filler's kind. FacesearchError when the field has no filler or the embedder no
    such model."""
    filler = FILLERS.get(name)
    if filler is None:
        raise FacesearchError(
            f"no way to fill a vector field {name!r} from photos; fillable fields: "
            f"{sorted(FILLERS)}"
        )
    model = messages.default_model(models, filler.model_kind)
    if model is None:
        kind = embedder_pb2.ModelKind.Name(filler.model_kind)
        raise FacesearchError(
            f"the embedder serves no {kind} model, so field {name!r} cannot be made or filled: "
            f"run an embedder with {filler.needs or 'such a model'}"
        )
    return model


def _field_spec(name: str, model: embedder_pb2.ModelInfo) -> retriever_pb2.VectorFieldSpec:
    return retriever_pb2.VectorFieldSpec(
        name=name,
        dimension=model.dimension,
        metric=retriever_pb2.METRIC_INNER_PRODUCT,
        model_id=model.model_id,
        index=FILLERS[name].index,
    )


async def add_vector_field(
    client: AsyncFacesearchClient,
    collection: str,
    field: str = messages.ATTRIBUTE_FIELD,
    *,
    spec: retriever_pb2.VectorFieldSpec | None = None,
) -> bool:
    """Add vector field ``field`` to an existing collection (AddVectorField), bound to the
    embedder's model that fills it (``FILLERS``), or as ``spec`` says for any other field.
    True when added; False when the collection had this very field already. The faces stored
    before lack it until ``backfill`` fills them; a field of that name with another model or
    dimension raises grpc.RpcError ALREADY_EXISTS."""
    if spec is None:
        models = (await client.embedder.ListModels(embedder_pb2.ListModelsRequest())).models
        spec = _field_spec(field, fill_model(models, field))
    elif spec.name != field:
        raise ValueError(f"spec names field {spec.name!r}, not {field!r}")
    reply = await client.retriever.AddVectorField(
        retriever_pb2.AddVectorFieldRequest(collection=collection, field=spec)
    )
    return bool(reply.added)


async def stored_attributes(
    client: AsyncFacesearchClient, collection: str, ids: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Per point id, the attribute probabilities stored with the face (name -> p, most
    probable first), read back from its attributes vector ([log p, log (1 - p)] per attribute,
    embedder.proto FaceAttributes). Points without one (not back-filled) are left out; a
    collection without an attributes field raises CollectionMismatch."""
    info = (
        await client.retriever.DescribeCollection(
            retriever_pb2.DescribeCollectionRequest(collection=collection)
        )
    ).collection
    fields = messages.CollectionFields.of(info)
    if not fields.attributes:
        raise CollectionMismatch(
            f"collection {collection!r} has no {messages.ATTRIBUTE_FIELD!r} field: add and fill "
            f"it with `facesearch backfill {collection} --field {messages.ATTRIBUTE_FIELD}`"
        )
    models = (await client.embedder.ListModels(embedder_pb2.ListModelsRequest())).models
    model = next((m for m in models if m.model_id == fields.attributes_model), None)
    if model is None or not model.attribute_names:
        raise CollectionMismatch(
            f"the embedder does not serve {fields.attributes_model!r}, the model of the "
            f"collection's attributes, so their names are unknown here"
        )
    names = list(model.attribute_names)
    out: dict[str, dict[str, float]] = {}
    unique = list(dict.fromkeys(ids))
    for i in range(0, len(unique), MAX_GET_IDS):
        reply = await client.retriever.Get(
            retriever_pb2.GetRequest(
                collection=collection, ids=unique[i : i + MAX_GET_IDS], with_vectors=True
            )
        )
        for point in reply.points:
            vector = point.vectors.get(fields.attributes)
            if vector is None or len(vector.values) != 2 * len(names):
                continue
            probs = {
                n: math.exp(v) for n, v in zip(names, vector.values[: len(names)], strict=True)
            }
            out[point.id] = dict(sorted(probs.items(), key=lambda item: -item[1]))
    return out
