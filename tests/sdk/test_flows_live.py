"""The SDK's flows through the three real services over real sockets."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facesearch import FacesearchClient, NoFaceFound, flows, messages
from facesearch.aio import AsyncFacesearchClient
from facesearch.aio import run_session as run_session_async
from facesearch.aio import search_by_image as search_by_image_async
from facesearch.aio import search_by_text as search_by_text_async
from facesearch_contract.v1 import personalizer_pb2, retriever_pb2
from harness.service_process import ServiceProcess

from .conftest import GALLERY, settings_of

COLLECTION = "sdk-flows"
IMAGES = sum(n for n, _ in GALLERY.values())


@pytest.fixture(scope="module")
def indexed(suite: dict[str, ServiceProcess], gallery: Path) -> flows.IndexSummary:
    """The gallery indexed once for the module (by person folder, with captions)."""
    with FacesearchClient(settings_of(suite)) as client:
        info, created = flows.ensure_collection(client, COLLECTION)
        assert created
        assert [f.name for f in info.vector_fields] == ["face", "caption"]
        seen = []
        summary = flows.index_folder(
            client,
            gallery,
            COLLECTION,
            batch_size=4,
            max_in_flight=2,
            person_from_dir=True,
            progress=seen.append,
        )
    assert seen[-1].done == seen[-1].total == IMAGES
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    return summary


def points(client: FacesearchClient) -> int:
    return client.retriever.Stats(retriever_pb2.StatsRequest(collection=COLLECTION)).points


def test_index_folder_summary(indexed: flows.IndexSummary, client: FacesearchClient) -> None:
    assert indexed.images == IMAGES
    assert indexed.errors == []
    assert indexed.images_with_faces == IMAGES  # every LFW photo shows its subject
    assert indexed.faces >= IMAGES
    assert indexed.upserted == indexed.faces == points(client)


def test_reindexing_replaces_instead_of_duplicating(
    indexed: flows.IndexSummary, client: FacesearchClient, gallery: Path
) -> None:
    info, created = flows.ensure_collection(client, COLLECTION)
    assert not created and info.name == COLLECTION
    # A replaced point gets exactly the new metadata, so index it the same way (person_from_dir).
    again = flows.index_folder(
        client, gallery / "Aaron_Peirsol", COLLECTION, media_root=gallery, person_from_dir=True
    )
    assert again.images == GALLERY["Aaron_Peirsol"][0]
    assert points(client) == indexed.faces


def test_search_by_image_finds_the_photo_and_the_same_person(
    indexed: flows.IndexSummary, client: FacesearchClient, gallery: Path
) -> None:
    photo = sorted((gallery / "Angela_Merkel").glob("*.jpg"))[0]
    hits = flows.search_by_image(client, COLLECTION, photo, k=5)
    assert hits[0].metadata["media_id"] == f"Angela_Merkel/{photo.name}"
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert [h.metadata["person_id"] for h in hits[:3]] == ["Angela_Merkel"] * 3
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    only_gul = flows.search_by_image(
        client, COLLECTION, photo, k=3, where={"person_id": "Abdullah_Gul"}
    )
    assert only_gul and {h.metadata["person_id"] for h in only_gul} == {"Abdullah_Gul"}


def test_search_by_image_without_a_face(
    indexed: flows.IndexSummary, client: FacesearchClient, tmp_path: Path
) -> None:
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))
    with pytest.raises(NoFaceFound, match="no face found"):
        flows.search_by_image(client, COLLECTION, blank)


def test_search_by_text_matches_captions(
    indexed: flows.IndexSummary, client: FacesearchClient
) -> None:
    hits = flows.search_by_text(client, COLLECTION, "tennis player on a court", k=3)
    assert [h.metadata["person_id"] for h in hits] == ["Andre_Agassi"] * 3


def test_person_in_context_and_face_with_description(
    indexed: flows.IndexSummary, client: FacesearchClient, gallery: Path
) -> None:
    hits = flows.search_person_in_context(
        client, COLLECTION, "Aaron_Peirsol", "swimmer at the pool", k=3
    )
    assert [h.metadata["person_id"] for h in hits] == ["Aaron_Peirsol"] * 3
    assert all(len(h.term_scores) == 2 for h in hits)
    photo = sorted((gallery / "Abdullah_Gul").glob("*.jpg"))[1]
    hits = flows.search_face_with_description(
        client, COLLECTION, photo, "a man in a suit at a press conference", k=3
    )
    assert hits[0].metadata["person_id"] == "Abdullah_Gul"
    assert all(len(h.term_scores) == 2 for h in hits)


def test_async_flows(indexed: flows.IndexSummary, suite, gallery: Path) -> None:
    import asyncio

    photo = sorted((gallery / "Aaron_Peirsol").glob("*.jpg"))[0]

    async def scenario() -> None:
        async with AsyncFacesearchClient(settings_of(suite)) as fs:
            hits = await search_by_image_async(fs, COLLECTION, photo, k=3)
            assert hits[0].metadata["person_id"] == "Aaron_Peirsol"
            hits = await search_by_text_async(fs, COLLECTION, "a politician at a podium", k=2)
            assert [h.metadata["person_id"] for h in hits] == ["Angela_Merkel"] * 2

            async def found_first(state: personalizer_pb2.SessionState):  # type: ignore[no-untyped-def]
                return [
                    personalizer_pb2.Feedback(
                        id=state.candidates[0].id, label=personalizer_pb2.FEEDBACK_LABEL_FOUND
                    )
                ]

            outcome = await run_session_async(fs, COLLECTION, "sdk-async-user", found_first, k=2)
            assert outcome.finished and outcome.found_id and outcome.rounds == 1

    asyncio.run(scenario())


def test_session_with_a_simulated_user_reaches_the_target(
    indexed: flows.IndexSummary, client: FacesearchClient
) -> None:
    """The user has Angela Merkel in mind: marks her faces similar, the rest dissimilar, and
    says "found" at the target photo. No face is shown twice, so within ceil(17/4) rounds the
    target must appear."""
    target = messages.point_id("Angela_Merkel/Angela_Merkel_0003.jpg", 0)
    shown: list[str] = []
    user = flows.simulated_user(
        "Angela_Merkel", target, show=lambda state: shown.extend(c.id for c in state.candidates)
    )

    outcome = flows.run_session(client, COLLECTION, "sdk-sim-user", user, k=4, max_rounds=10)
    assert outcome.finished and outcome.found_id == target
    assert len(shown) == len(set(shown))  # never shown twice
    assert 1 <= outcome.rounds <= 5
