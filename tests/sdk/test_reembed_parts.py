"""The pure parts of re-embedding: pairing stored faces with fresh detections, the journal that
lets a stopped run resume, and the new collection's default name. No server needed."""

from __future__ import annotations

from pathlib import Path

from facesearch import flows
from facesearch.face_matching import StoredFace, iou, match_faces, stored_face
from facesearch.reembed_journal import ReembedJournal
from facesearch_contract.v1 import retriever_pb2


def test_faces_pair_by_overlap_best_first_each_detection_once() -> None:
    stored = [
        StoredFace("m#0", (10, 10, 50, 50), 0),
        StoredFace("m#1", (200, 20, 40, 40), 1),
        StoredFace("m#2", (400, 400, 30, 30), 2),  # not detected now
    ]
    # Detected in another order, slightly moved; plus a face not stored before.
    detected = [(202, 21, 40, 40), (600, 10, 20, 20), (12, 9, 50, 52)]
    assert match_faces(stored, detected) == {"m#0": 2, "m#1": 0}


def test_two_stored_faces_never_share_one_detection() -> None:
    stored = [StoredFace("a", (0, 0, 10, 10), 0), StoredFace("b", (1, 0, 10, 10), 1)]
    assert match_faces(stored, [(0, 0, 10, 10)]) == {"a": 0}


def test_a_face_without_a_box_pairs_by_its_number_and_a_weak_overlap_not_at_all() -> None:
    stored = [StoredFace("x", None, 1), StoredFace("y", (0, 0, 10, 10), 0)]
    detected = [(6, 6, 10, 10), (50, 50, 10, 10)]
    assert iou((0, 0, 10, 10), (6, 6, 10, 10)) < 0.5
    assert match_faces(stored, detected) == {"x": 1}


def test_a_stored_point_gives_its_box_and_face_number_and_no_box_when_one_key_is_missing() -> None:
    point = retriever_pb2.Point(id="a")
    for key, value in {"box_x": 10, "box_y": 20, "box_w": 30.5, "box_h": 40}.items():
        point.metadata[key].double_value = value
    point.metadata["face_index"].int_value = 2
    assert stored_face(point) == StoredFace("a", (10.0, 20.0, 30.5, 40.0), 2)
    del point.metadata["box_h"]
    del point.metadata["face_index"]
    assert stored_face(point) == StoredFace("a", None, None)


def test_the_journal_remembers_the_collection_it_made_and_the_faces_it_lost(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.jsonl"
    identity = {"reembed": "uid1", "model": "m2", "target": "t"}
    first = ReembedJournal(path, identity)
    assert first.created_uid is None and first.lost == {}
    first.record_created("uid-new")
    first.record_lost("a/b.jpg", ["a/b.jpg#0"], "image not read")
    first.close()
    with path.open("a") as f:
        f.write('{"lost": "torn')  # a kill mid-write
    again = ReembedJournal(path, identity)
    assert again.created_uid == "uid-new"
    assert again.lost == {"a/b.jpg": (["a/b.jpg#0"], "image not read")}
    again.close()
    # Another incarnation of the old collection: the journal starts over.
    other = ReembedJournal(path, {**identity, "reembed": "uid2"})
    assert other.created_uid is None and other.lost == {} and other.started_over
    other.close()


def test_the_default_name_of_the_new_collection_is_a_valid_name() -> None:
    assert flows.default_target_name("archive", "sface-ft-v2") == "archive-sface-ft-v2"
    assert flows.default_target_name("a", "Model.V2/x") == "a-model-v2-x"
    long = flows.default_target_name("c" * 60, "sface-ft-v2")
    assert len(long) <= 63 and long[-1] not in "-_"
