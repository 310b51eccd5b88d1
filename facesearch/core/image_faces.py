"""The faces of one query photo, embedded: what identification and search by image share."""

from __future__ import annotations

from facesearch import messages
from facesearch.async_client import AsyncFacesearchClient
from facesearch.errors import FacesearchError, NoFaceFound
from facesearch_contract.v1 import embedder_pb2


async def embed_image_faces(
    client: AsyncFacesearchClient, image: messages.ImageSource, model_id: str
) -> list[embedder_pb2.Face]:
    """Every face of ``image``, embedded, largest first; NoFaceFound when it shows none."""
    reply = await client.embedder.EmbedImages(
        messages.embed_images_request([image], model_id=model_id)
    )
    result = reply.results[0]
    if result.error_code:
        raise FacesearchError(f"{messages.describe_image(image)}: {result.error_message}")
    faces = sorted(result.faces, key=lambda f: -(f.box.width * f.box.height))
    if not faces:
        raise NoFaceFound(messages.describe_image(image))
    return faces
