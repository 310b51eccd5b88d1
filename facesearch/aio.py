"""The asyncio API: the client and every flow, as coroutines.

    async with AsyncFacesearchClient.from_env() as fs:
        await aio.ensure_collection(fs, "archive")
        await aio.index_folder(fs, "PHOTOS/", "archive", person_from_dir=True)
        hits = await aio.search_by_image(fs, "archive", "photo.jpg", k=10)
        async for result in aio.embed_images(fs, [("a.jpg", "a.jpg")]): ...

The flows are facesearch.core's, the very functions facesearch.flows runs for sync callers, so
the two APIs offer the same set with the same signatures. Callbacks (``progress``,
``on_round``) may be sync or async. Cancelling the task cancels the streams in flight and ends
an open session.
"""

from facesearch.async_client import AsyncFacesearchClient
from facesearch.core import (
    FLOWS,
    HELPERS,
    STREAMING_FLOWS,
    AttributeReading,
    ContextHits,
    DescriptionHits,
    FaceHits,
    FeedbackFn,
    IdentifiedFace,
    IndexProgress,
    IndexSummary,
    add_metadata_fields,
    caption_of,
    collection_fields,
    embed_images,
    embed_largest_face,
    enable_identification,
    enroll_person,
    ensure_collection,
    ensure_identification,
    face_weight_for,
    forget_person,
    identify_image,
    image_files,
    index_folder,
    list_clusters,
    list_persons,
    merge_clusters,
    name_cluster,
    reset_user,
    run_session,
    search_by_image,
    search_by_person,
    search_by_text,
    search_face_with_description,
    search_image_faces,
    search_person_in_context,
    simulated_user,
    simulated_user_by_likeness,
    split_cluster,
)
from facesearch.core.sessions import UNDO

__all__ = [
    "FLOWS",
    "HELPERS",
    "STREAMING_FLOWS",
    "UNDO",
    "AsyncFacesearchClient",
    "AttributeReading",
    "ContextHits",
    "DescriptionHits",
    "FaceHits",
    "FeedbackFn",
    "IdentifiedFace",
    "IndexProgress",
    "IndexSummary",
    "add_metadata_fields",
    "caption_of",
    "collection_fields",
    "embed_images",
    "embed_largest_face",
    "enable_identification",
    "enroll_person",
    "ensure_collection",
    "ensure_identification",
    "face_weight_for",
    "forget_person",
    "identify_image",
    "image_files",
    "index_folder",
    "list_clusters",
    "list_persons",
    "merge_clusters",
    "name_cluster",
    "reset_user",
    "run_session",
    "search_by_image",
    "search_by_person",
    "search_by_text",
    "search_face_with_description",
    "search_image_faces",
    "search_person_in_context",
    "simulated_user",
    "simulated_user_by_likeness",
    "split_cluster",
]
