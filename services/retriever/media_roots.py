"""The folders a collection's media were indexed from (CollectionInfo.media_roots).

The retriever only keeps them: they are paths as the indexing client saw them, which a
re-embedding (`facesearch reembed`, on a client) reads the images from again. They live in the
collection's spec (CreateCollectionRequest.media_roots), so the catalog file that holds the
spec keeps them across restarts with no format of their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath, PureWindowsPath

from facesearch_contract.limits import max_bytes, max_items
from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.runtime.errors import FailedPrecondition, InvalidArgument

MAX_ROOTS = max_items(pb.CreateCollectionRequest, "media_roots")
MAX_ROOT_BYTES = max_bytes(pb.CreateCollectionRequest, "media_roots")


def check(roots: Sequence[str], path: str) -> list[str]:
    """``roots`` without repeats, in order; each an absolute path of at most MAX_ROOT_BYTES."""
    if len(roots) > MAX_ROOTS:
        raise InvalidArgument(path, f"has {len(roots):,} roots; at most {MAX_ROOTS}")
    for i, root in enumerate(roots):
        if not root or len(root.encode()) > MAX_ROOT_BYTES:
            raise InvalidArgument(f"{path}[{i}]", f"must be 1..{MAX_ROOT_BYTES:,} bytes")
        if not (PurePosixPath(root).is_absolute() or PureWindowsPath(root).is_absolute()):
            raise InvalidArgument(
                f"{path}[{i}]",
                f"{root[:80]!r} is not an absolute path; media ids are relative to it, so a "
                "relative root would depend on where the reader runs",
            )
    return list(dict.fromkeys(roots))


def merged(collection: str, have: Iterable[str], new: Iterable[str]) -> list[str]:
    """``have`` followed by the roots of ``new`` it lacks, within MAX_ROOTS."""
    out = list(dict.fromkeys([*have, *new]))
    if len(out) > MAX_ROOTS:
        raise FailedPrecondition(
            f"collection {collection!r} would have {len(out)} media roots, over {MAX_ROOTS}: "
            "index its folders under one parent folder, with that parent as the media root"
        )
    return out
