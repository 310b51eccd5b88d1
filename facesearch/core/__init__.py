"""The flows, written once: coroutines (and async generators) over AsyncFacesearchClient.

facesearch.aio exposes them as they are; facesearch.flows exposes the same set, with the same
signatures, for FacesearchClient, running each on the client's private loop
(facesearch.sync_bridge). ``FLOWS`` names the flows that take a client; the pure helpers in
``HELPERS`` are the same objects in both APIs.
"""

from facesearch.core.collections import add_metadata_fields, collection_fields, ensure_collection
from facesearch.core.indexing import (
    IndexProgress,
    IndexSummary,
    caption_of,
    embed_images,
    image_files,
    index_folder,
)
from facesearch.core.persons import (
    IdentifiedFace,
    enable_identification,
    enroll_person,
    ensure_identification,
    forget_person,
    identify_image,
    list_clusters,
    list_persons,
    merge_clusters,
    name_cluster,
    split_cluster,
)
from facesearch.core.search import (
    AttributeReading,
    ContextHits,
    DescriptionHits,
    FaceHits,
    embed_largest_face,
    face_weight_for,
    search_by_image,
    search_by_person,
    search_by_text,
    search_face_with_description,
    search_image_faces,
    search_person_in_context,
)
from facesearch.core.sessions import (
    FeedbackFn,
    reset_user,
    run_session,
    simulated_user,
    simulated_user_by_likeness,
)

# Coroutine functions whose first parameter is the client.
FLOWS = (
    "collection_fields",
    "add_metadata_fields",
    "ensure_collection",
    "index_folder",
    "embed_largest_face",
    "search_by_image",
    "search_image_faces",
    "search_by_text",
    "search_by_person",
    "search_person_in_context",
    "search_face_with_description",
    "run_session",
    "reset_user",
    "simulated_user_by_likeness",
    "enable_identification",
    "ensure_identification",
    "identify_image",
    "enroll_person",
    "list_persons",
    "forget_person",
    "list_clusters",
    "name_cluster",
    "merge_clusters",
    "split_cluster",
)
# Async generator functions whose first parameter is the client (sync: iterators).
STREAMING_FLOWS = ("embed_images",)
# No client, no I/O on the services: shared as they are.
HELPERS = (
    "image_files",
    "caption_of",
    "simulated_user",
    "IndexSummary",
    "IndexProgress",
    "IdentifiedFace",
    "FaceHits",
    "ContextHits",
    "AttributeReading",
    "DescriptionHits",
    "face_weight_for",
)

__all__ = [
    "FLOWS",
    "HELPERS",
    "STREAMING_FLOWS",
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
