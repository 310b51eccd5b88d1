"""High-level jobs composed from plain RPCs, for the sync client (README, "The CLI and SDK").

    with FacesearchClient.from_env() as fs:
        flows.ensure_collection(fs, "archive")
        flows.index_folder(fs, "PHOTOS/", "archive", person_from_dir=True)
        hits = flows.search_by_image(fs, "archive", "photo.jpg", k=10)

Each flow here is the async flow of facesearch.core (also facesearch.aio's), run on the
client's private event loop (facesearch.sync_bridge): one implementation, the same names and
signatures in both APIs. Sync callbacks (``progress``, ``on_round``) run on the calling thread;
a streaming flow (``embed_images``) is a plain iterator; Ctrl-C cancels the flow, lets it clean
up (streams cancelled, the session ended) and is raised again; a failed RPC raises
grpc.RpcError. Every step is an ordinary call on ``client.embedder`` / ``.retriever`` /
``.personalizer`` with messages from facesearch.messages, for those who orchestrate themselves.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Concatenate, ParamSpec, TypeVar

from facesearch import core
from facesearch.async_client import AsyncFacesearchClient
from facesearch.client import FacesearchClient
from facesearch.core import (
    FLOWS,
    HELPERS,
    STREAMING_FLOWS,
    AttributeReading,
    BackfillIncomplete,
    BackfillProgress,
    BackfillSummary,
    ContextHits,
    DescriptionHits,
    FaceHits,
    FeedbackFn,
    Filler,
    IdentifiedFace,
    IndexProgress,
    IndexSummary,
    LostFaces,
    ReembedProgress,
    ReembedSummary,
    backfill_journal_path,
    caption_of,
    default_target_name,
    face_weight_for,
    fill_model,
    image_files,
    simulated_user,
)
from facesearch.core.callbacks import is_async
from facesearch.core.sessions import UNDO
from facesearch.sync_bridge import sync_callback

P = ParamSpec("P")
R = TypeVar("R")


def _sync_signature(fn: Callable[..., Any], returns: str | None = None) -> inspect.Signature:
    sig = inspect.signature(fn)
    first, *rest = sig.parameters.values()
    params = [first.replace(annotation="FacesearchClient"), *rest]
    ret = returns if returns is not None else sig.return_annotation
    return sig.replace(parameters=params, return_annotation=ret)


def _sync(
    fn: Callable[Concatenate[AsyncFacesearchClient, P], Awaitable[R]],
) -> Callable[Concatenate[FacesearchClient, P], R]:
    """``fn`` for FacesearchClient: run to completion on the client's loop."""

    @functools.wraps(fn)
    def flow(client: FacesearchClient, *args: P.args, **kwargs: P.kwargs) -> R:
        twin = client.async_twin()
        result = twin.loop.run(fn(twin.client, *args, **kwargs))
        if callable(result) and is_async(result):
            # A flow that returns a callback (simulated_user_by_likeness): callable sync too.
            return sync_callback(twin.loop, result)  # type: ignore[return-value]
        return result

    flow.__signature__ = _sync_signature(fn)  # type: ignore[attr-defined]
    flow.__module__ = __name__
    return flow


def _sync_stream(
    fn: Callable[Concatenate[AsyncFacesearchClient, P], AsyncIterator[R]],
) -> Callable[Concatenate[FacesearchClient, P], Iterator[R]]:
    """The async generator ``fn`` for FacesearchClient: a sync iterator, one step at a time."""

    @functools.wraps(fn)
    def flow(client: FacesearchClient, *args: P.args, **kwargs: P.kwargs) -> Iterator[R]:
        twin = client.async_twin()
        return twin.loop.iterate(fn(twin.client, *args, **kwargs))

    returns = str(inspect.signature(fn).return_annotation).replace("AsyncIterator", "Iterator")
    flow.__signature__ = _sync_signature(fn, returns)  # type: ignore[attr-defined]
    flow.__module__ = __name__
    return flow


collection_fields = _sync(core.collection_fields)
add_metadata_fields = _sync(core.add_metadata_fields)
ensure_collection = _sync(core.ensure_collection)
index_folder = _sync(core.index_folder)
embed_images = _sync_stream(core.embed_images)
embed_largest_face = _sync(core.embed_largest_face)
search_by_image = _sync(core.search_by_image)
search_image_faces = _sync(core.search_image_faces)
search_by_text = _sync(core.search_by_text)
search_by_person = _sync(core.search_by_person)
search_person_in_context = _sync(core.search_person_in_context)
search_face_with_description = _sync(core.search_face_with_description)
run_session = _sync(core.run_session)
reset_user = _sync(core.reset_user)
describe_user = _sync(core.describe_user)
simulated_user_by_likeness = _sync(core.simulated_user_by_likeness)
enable_identification = _sync(core.enable_identification)
ensure_identification = _sync(core.ensure_identification)
identify_image = _sync(core.identify_image)
enroll_person = _sync(core.enroll_person)
list_persons = _sync(core.list_persons)
forget_person = _sync(core.forget_person)
list_clusters = _sync(core.list_clusters)
name_cluster = _sync(core.name_cluster)
merge_clusters = _sync(core.merge_clusters)
split_cluster = _sync(core.split_cluster)
reembed_collection = _sync(core.reembed_collection)
scan_points = _sync_stream(core.scan_points)
add_vector_field = _sync(core.add_vector_field)
backfill = _sync(core.backfill)
stored_attributes = _sync(core.stored_attributes)

__all__ = [
    "FLOWS",
    "HELPERS",
    "STREAMING_FLOWS",
    "UNDO",
    "AttributeReading",
    "BackfillIncomplete",
    "BackfillProgress",
    "BackfillSummary",
    "ContextHits",
    "DescriptionHits",
    "FaceHits",
    "FeedbackFn",
    "Filler",
    "IdentifiedFace",
    "IndexProgress",
    "IndexSummary",
    "LostFaces",
    "ReembedProgress",
    "ReembedSummary",
    "add_metadata_fields",
    "add_vector_field",
    "backfill",
    "backfill_journal_path",
    "caption_of",
    "collection_fields",
    "default_target_name",
    "describe_user",
    "embed_images",
    "embed_largest_face",
    "enable_identification",
    "enroll_person",
    "ensure_collection",
    "ensure_identification",
    "face_weight_for",
    "fill_model",
    "forget_person",
    "identify_image",
    "image_files",
    "index_folder",
    "list_clusters",
    "list_persons",
    "merge_clusters",
    "name_cluster",
    "reembed_collection",
    "reset_user",
    "run_session",
    "scan_points",
    "search_by_image",
    "search_by_person",
    "search_by_text",
    "search_face_with_description",
    "search_image_faces",
    "search_person_in_context",
    "simulated_user",
    "simulated_user_by_likeness",
    "split_cluster",
    "stored_attributes",
]
