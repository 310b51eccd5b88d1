"""What a stored face carries besides its face vector: its photo's context text (caption,
headline, keywords read from the file), the caption's text vector and the photo's scene
vector. Indexing a folder and enrolling a person from photos store faces the same way, so a
reference face answers context and description queries like any other face."""

from __future__ import annotations

from pathlib import Path

from facesearch import context_text, messages
from facesearch.async_client import AsyncFacesearchClient
from facesearch_contract.v1 import embedder_pb2

# {vector field: (vector, model id)}, as messages.face_points takes it.
TextVectors = dict[str, tuple]


def photo_context(
    image: messages.ImageSource,
) -> tuple[dict[str, messages.MetadataInput], tuple[str, ...]]:
    """The context metadata of a photo given as a path, and the context files not read; a
    photo given as bytes has no file to read (nothing, and nothing to report)."""
    if isinstance(image, bytes):
        return {}, ()
    context = context_text.context_of(Path(image))
    return dict(context.metadata()), context.problems


async def caption_vectors(
    client: AsyncFacesearchClient,
    text_field: tuple[str, str] | None,
    metas: list[dict[str, messages.MetadataInput]],
) -> list[TextVectors]:
    """Per image, {text field: (vector, model id)} of its caption (EmbedText, one batch)."""
    out: list[TextVectors] = [{} for _ in metas]
    with_caption = [i for i, meta in enumerate(metas) if meta.get("caption")]
    if text_field is None or not with_caption:
        return out
    name, model = text_field
    reply = await client.embedder.EmbedText(
        messages.embed_text_request(
            [str(metas[i]["caption"]) for i in with_caption],
            model_id=model,
            role=embedder_pb2.TEXT_ROLE_CAPTION,
        )
    )
    for i, vector in zip(with_caption, reply.embeddings, strict=True):
        out[i] = {name: (vector, reply.model_id or model)}
    return out


async def scene_not_served(
    client: AsyncFacesearchClient, field: tuple[str, str] | None
) -> str | None:
    """Why faces go in without scene vectors (the collection's scene model is not the one the
    embedder serves), or None when the embedder serves it or there is no scene field."""
    if field is None:
        return None
    models = (await client.embedder.ListModels(embedder_pb2.ListModelsRequest())).models
    kind = embedder_pb2.MODEL_KIND_IMAGE_TEXT_ENCODER
    served = [m.model_id for m in models if m.kind == kind]
    if field[1] in served:
        return None
    serves = f"serves {served[0]!r}" if served else "serves no image-text model"
    return f"the collection's {field[0]!r} field holds {field[1]!r} vectors; the embedder {serves}"


def scene_vector(result: embedder_pb2.ImageResult, field: tuple[str, str] | None) -> TextVectors:
    """{scene field: (the photo's scene vector, model)}, or {} when it has none of that model."""
    if field is None or result.scene_model_id != field[1]:
        return {}
    return {field[0]: (result.scene, result.scene_model_id)}
