"""Which face of a fresh detection is which stored face of the same image.

A re-embedding detects the faces of each image again; the stored faces keep their ids (and so
their labels, references and captions) only if each is paired with the face detected at the
same place. Pairs are made greedily by box overlap (intersection over union), best first; a
stored face without a box is paired by its face number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from facesearch_contract.v1 import retriever_pb2

# Two detections of one face by the same detector overlap almost wholly; neighbouring faces in
# a crowd rarely reach half.
MIN_IOU = 0.5

Box = tuple[float, float, float, float]  # x, y, width, height


@dataclass(frozen=True)
class StoredFace:
    id: str
    box: Box | None
    face_index: int | None


BOX_KEYS = ("box_x", "box_y", "box_w", "box_h")


def stored_face(point: retriever_pb2.Point) -> StoredFace:
    """Where a stored face was found at indexing: the box metadata messages.face_points wrote."""
    meta = point.metadata
    box = None
    if all(k in meta for k in BOX_KEYS):
        box = tuple(float(meta[k].double_value) for k in BOX_KEYS)
    index = int(meta["face_index"].int_value) if "face_index" in meta else None
    return StoredFace(point.id, box, index)  # type: ignore[arg-type]


def iou(a: Box, b: Box) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = min(ax + aw, bx + bw) - max(ax, bx)
    h = min(ay + ah, by + bh) - max(ay, by)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def match_faces(stored: Sequence[StoredFace], detected: Sequence[Box]) -> dict[str, int]:
    """Stored face id -> index into ``detected``, each detected face used at most once."""
    pairs = sorted(
        (
            (iou(s.box, d), s.id, j)
            for s in stored
            if s.box is not None
            for j, d in enumerate(detected)
        ),
        reverse=True,
    )
    out: dict[str, int] = {}
    used: set[int] = set()
    for overlap, sid, j in pairs:
        if overlap < MIN_IOU:
            break
        if sid not in out and j not in used:
            out[sid] = j
            used.add(j)
    for s in stored:
        i = s.face_index
        if s.box is None and i is not None and 0 <= i < len(detected) and i not in used:
            out[s.id] = i
            used.add(i)
    return out
