"""Collections: what a collection holds, and one created for the embedder's default models."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import grpc

from facesearch import messages
from facesearch.async_client import AsyncFacesearchClient
from facesearch.errors import FacesearchError
from facesearch.index_choice import FaceIndex
from facesearch_contract.v1 import common_pb2, embedder_pb2, retriever_pb2


async def collection_fields(
    client: AsyncFacesearchClient, collection: str
) -> messages.CollectionFields:
    """The collection's face and text fields, with their models."""
    reply = await client.retriever.DescribeCollection(
        retriever_pb2.DescribeCollectionRequest(collection=collection)
    )
    return messages.CollectionFields.of(reply.collection)


async def ensure_collection(
    client: AsyncFacesearchClient,
    name: str,
    *,
    shards: int = 1,
    with_text_field: bool = True,
    description: str = "",
    with_scene_field: bool = True,
    face_index: FaceIndex | None = None,
) -> tuple[retriever_pb2.CollectionInfo, bool]:
    """The collection, created for the embedder's default models when missing.

    Returns (info, created). ``face_index`` (facesearch.FaceIndex): the face field's index
    kind and search-width tuning objective when the collection is created, e.g.
    ``FaceIndex("hnsw", "above_threshold", target_recall=0.99, min_score=0.64)``; None = the
    retriever's default (exact search). An existing collection keeps its index (compare
    ``info.vector_fields[0].index``). The face field uses the default face encoder; with
    ``with_text_field`` a "caption" field uses the default text encoder, when there is one;
    with ``with_scene_field`` a "scene" field (a scene vector per photo, on each of its faces)
    uses the image-text model, when the embedder serves one."""
    try:
        return await _describe(client, name), False
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
            raise
    models = (await client.embedder.ListModels(embedder_pb2.ListModelsRequest())).models
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
    # Faces get attribute vectors when the embedder serves an attribute model (TGFR).
    attributes = messages.default_model(models, embedder_pb2.MODEL_KIND_FACE_ATTRIBUTES)
    # Photos get a scene vector when the embedder serves an image-text model (Id-CLIP).
    scene = (
        messages.default_model(models, embedder_pb2.MODEL_KIND_IMAGE_TEXT_ENCODER)
        if with_scene_field
        else None
    )
    request = messages.create_collection_request(
        name,
        face,
        text,
        shards=shards,
        description=description,
        attribute_model=attributes,
        scene_model=scene,
        face_index=face_index.params() if face_index is not None else None,
    )
    try:
        return (await client.retriever.CreateCollection(request)).collection, True
    except grpc.RpcError as err:
        # Someone else created it between our describe and create: use theirs.
        if err.code() != grpc.StatusCode.ALREADY_EXISTS:  # type: ignore[attr-defined]
            raise
        return await _describe(client, name), False


async def add_metadata_fields(
    client: AsyncFacesearchClient, collection: str, fields: Mapping[str, int]
) -> list[str]:
    """Declare metadata fields (name -> ``retriever_pb2.FieldType``) of a collection: how a
    collection created with ``METADATA_SCHEMA_MODE_DECLARED`` accepts a new key. Fields it
    already has with the same type are left as they are; returns the names added."""
    reply = await client.retriever.AddMetadataFields(
        retriever_pb2.AddMetadataFieldsRequest(
            collection=collection,
            fields=[retriever_pb2.MetadataFieldSpec(name=n, type=t) for n, t in fields.items()],
        )
    )
    return list(reply.added)


async def scan_points(
    client: AsyncFacesearchClient,
    collection: str,
    *,
    page_size: int = 500,
    with_vectors: bool = False,
) -> AsyncIterator[retriever_pb2.Point]:
    """Every point of the collection with its metadata (and vectors, with ``with_vectors``),
    a Scan page of ``page_size`` (1..1,000) at a time. A point stored for the whole scan comes
    once; one written meanwhile may come twice (its newest version later). Scanning through
    an alias that moves to another collection meanwhile raises FAILED_PRECONDITION."""
    token = ""
    while True:
        reply = await client.retriever.Scan(
            retriever_pb2.ScanRequest(
                collection=collection,
                page=common_pb2.PageRequest(page_size=page_size, page_token=token),
                with_vectors=with_vectors,
            )
        )
        for point in reply.points:
            yield point
        token = reply.page.next_page_token
        if not token:
            return


async def _describe(client: AsyncFacesearchClient, name: str) -> retriever_pb2.CollectionInfo:
    reply = await client.retriever.DescribeCollection(
        retriever_pb2.DescribeCollectionRequest(collection=name)
    )
    return reply.collection
