"""Scan: a collection's points a page at a time, and the page token that says where to go on.

A scan reads the shards one after the other, each in the order its records were last written
(a shard's record labels only grow and survive restarts, so a position is a label). The token
names the collection's uid, the shard and the position reached: a token carried across an
alias move, or to a collection dropped and created again under the same name, names another
uid and is refused instead of silently going on in another collection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever.shard_router import CallBudget, ShardSet
from facesearch_server.runtime.errors import FailedPrecondition, InvalidArgument

_TOKEN = re.compile(r"^s1\.([0-9a-f]{1,64})\.(\d{1,3})\.(\d{1,20})$")
_PATH = "page.page_token"


@dataclass(frozen=True)
class ScanCursor:
    shard: int = 0
    position: int = 0

    def token(self, uid: str) -> str:
        return f"s1.{uid}.{self.shard}.{self.position}"


def parse(token: str, uid: str, shard_count: int) -> ScanCursor:
    """The cursor of a page token of the collection ``uid`` (empty: the first page)."""
    if not token:
        return ScanCursor()
    m = _TOKEN.match(token)
    if m is None:
        raise InvalidArgument(
            _PATH, "is not a token Scan issued: pass next_page_token as it came, or start over"
        )
    if m.group(1) != uid:
        raise FailedPrecondition(
            f"{_PATH}: the token is of another collection, or of this name before its alias "
            "moved or it was created again; scan again from the first page"
        )
    shard, position = int(m.group(2)), int(m.group(3))
    if shard >= shard_count:
        raise InvalidArgument(
            _PATH, "is not a token Scan issued: it names no shard of this collection"
        )
    return ScanCursor(shard, position)


async def page(
    shards: ShardSet, cursor: ScanCursor, size: int, with_vectors: bool, b: CallBudget
) -> tuple[list[pb.Point], ScanCursor | None]:
    """Up to ``size`` points from ``cursor`` on, crossing into the next shards as each is read
    to its end; and where the next page starts (None: every shard was read to its end)."""
    shard, position = cursor.shard, cursor.position
    points: list[pb.Point] = []
    while shard < shards.count and len(points) < size:
        got = await shards.scan(shard, position, size - len(points), with_vectors, b)
        points.extend(got.points)
        if got.more:
            position = got.last_position
        else:
            shard, position = shard + 1, 0
    return points, (ScanCursor(shard, position) if shard < shards.count else None)
