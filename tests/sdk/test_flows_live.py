"""The SDK's flows through the three real services over real sockets, each through both APIs:
``sync`` (facesearch.flows with FacesearchClient) and ``async`` (facesearch.aio with
AsyncFacesearchClient, on a loop of the test's own)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
import pytest

from facesearch import FacesearchClient, FacesearchError, NoFaceFound, aio, flows, messages
from facesearch.aio import AsyncFacesearchClient
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
        assert [f.name for f in info.vector_fields] == ["face", "caption", "attributes"]
        seen: list[flows.IndexProgress] = []
        caller = threading.current_thread()
        threads = set()

        def progress(p: flows.IndexProgress) -> None:
            threads.add(threading.current_thread())
            seen.append(p)

        summary = flows.index_folder(
            client,
            gallery,
            COLLECTION,
            batch_size=4,
            max_in_flight=2,
            person_from_dir=True,
            progress=progress,
        )
    assert seen[-1].done == seen[-1].total == IMAGES
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    assert threads == {caller}  # a sync progress callback runs on the caller's thread
    return summary


def points(api: Any) -> int:
    request = retriever_pb2.StatsRequest(collection=COLLECTION)
    return api.rpc("retriever", "Stats", request).points


def test_index_folder_summary(indexed: flows.IndexSummary, api: Any) -> None:
    assert indexed.images == IMAGES
    assert indexed.errors == []
    assert indexed.images_with_faces == IMAGES  # every LFW photo shows its subject
    assert indexed.faces >= IMAGES
    assert indexed.upserted == indexed.faces == points(api)
    fields = api.collection_fields(COLLECTION)
    assert fields.face == "face" and fields.text_fields
    # Declaring a metadata field: added once, then already there (idempotent).
    year = {f"archive_year_{api.mode}": retriever_pb2.FIELD_TYPE_INT}
    assert api.add_metadata_fields(COLLECTION, year) == list(year)
    assert api.add_metadata_fields(COLLECTION, year) == []


def test_reindexing_replaces_instead_of_duplicating(
    indexed: flows.IndexSummary, api: Any, gallery: Path
) -> None:
    info, created = api.ensure_collection(COLLECTION)
    assert not created and info.name == COLLECTION
    seen = []

    async def async_progress(p: flows.IndexProgress) -> None:
        seen.append(p.done)

    # A replaced point gets exactly the new metadata, so index it the same way (person_from_dir).
    again = api.index_folder(
        gallery / "Aaron_Peirsol",
        COLLECTION,
        media_root=gallery,
        person_from_dir=True,
        progress=async_progress if api.mode == "async" else lambda p: seen.append(p.done),
    )
    assert again.images == GALLERY["Aaron_Peirsol"][0] == seen[-1]
    assert points(api) == indexed.faces


def test_embed_images_streams_one_result_per_image(
    indexed: flows.IndexSummary, api: Any, gallery: Path
) -> None:
    photos = sorted((gallery / "Andre_Agassi").glob("*.jpg"))
    items = [(p.name, p) for p in photos[:2]] + [("raw", photos[2].read_bytes())]
    results = api.embed_images(items)
    assert [r.media_id for r in results] == [photos[0].name, photos[1].name, "raw"]
    assert all(r.faces and not r.error_code for r in results)
    face = api.embed_largest_face(photos[0])
    assert len(face.embedding.values) == len(results[0].faces[0].embedding.values)


def test_search_by_image_finds_the_photo_and_the_same_person(
    indexed: flows.IndexSummary, api: Any, gallery: Path
) -> None:
    photo = sorted((gallery / "Angela_Merkel").glob("*.jpg"))[0]
    hits = api.search_by_image(COLLECTION, photo, k=5)
    assert hits[0].metadata["media_id"] == f"Angela_Merkel/{photo.name}"
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert [h.metadata["person_id"] for h in hits[:3]] == ["Angela_Merkel"] * 3
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    only_gul = api.search_by_image(COLLECTION, photo, k=3, where={"person_id": "Abdullah_Gul"})
    assert only_gul and {h.metadata["person_id"] for h in only_gul} == {"Abdullah_Gul"}


def test_search_by_image_without_a_face(
    indexed: flows.IndexSummary, api: Any, tmp_path: Path
) -> None:
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))
    with pytest.raises(NoFaceFound, match="no face found"):
        api.search_by_image(COLLECTION, blank)


def test_a_failed_call_is_a_grpc_rpc_error(indexed: flows.IndexSummary, api: Any) -> None:
    with pytest.raises(grpc.RpcError) as err:
        api.search_by_text("no-such-collection", "anything")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_search_by_text_matches_captions(indexed: flows.IndexSummary, api: Any) -> None:
    # Captions belong to photos: every face of an Agassi photo (bystanders too) shares his.
    hits = api.search_by_text(COLLECTION, "tennis player on a court", k=3)
    assert [str(h.metadata["media_id"]).split("/")[0] for h in hits] == ["Andre_Agassi"] * 3


def test_search_by_person(indexed: flows.IndexSummary, api: Any) -> None:
    hits = api.search_by_person(COLLECTION, "Andre_Agassi", k=3)
    assert [h.metadata["person_id"] for h in hits] == ["Andre_Agassi"] * 3


def test_person_in_context_and_face_with_description(
    indexed: flows.IndexSummary, api: Any, gallery: Path
) -> None:
    hits = api.search_person_in_context(COLLECTION, "Aaron_Peirsol", "swimmer at the pool", k=3)
    assert [h.metadata["person_id"] for h in hits] == ["Aaron_Peirsol"] * 3
    assert all(h.term_scores == (h.score,) for h in hits)  # ranked by the context alone
    photo = sorted((gallery / "Abdullah_Gul").glob("*.jpg"))[1]
    hits = api.search_face_with_description(
        COLLECTION, photo, "a man in a suit at a press conference", k=3
    )
    assert hits[0].metadata["person_id"] == "Abdullah_Gul"
    assert all(len(h.term_scores) == 2 for h in hits)


def test_session_with_a_simulated_user_reaches_the_target(
    indexed: flows.IndexSummary, api: Any
) -> None:
    """The user has Angela Merkel in mind: marks her faces similar, the rest dissimilar, and
    says "found" at the target photo. No face is shown twice, so within ceil(17/4) rounds the
    target must appear."""
    target = messages.point_id("Angela_Merkel/Angela_Merkel_0003.jpg", 0)
    shown: list[str] = []
    user = flows.simulated_user(
        "Angela_Merkel", target, show=lambda state: shown.extend(c.id for c in state.candidates)
    )
    user_id = f"sdk-sim-user-{api.mode}"
    api.reset_user(user_id)
    outcome = api.run_session(COLLECTION, user_id, user, k=4, max_rounds=10)
    assert outcome.finished and outcome.found_id == target
    assert len(shown) == len(set(shown))  # never shown twice
    assert 1 <= outcome.rounds <= 5
    described = api.describe_user(user_id)
    assert described.user_id == user_id and described.active_sessions == 0
    (head,) = described.heads  # the ended session taught the lasting head once
    assert head.sessions_trained == 1 and head.rounds_trained >= 1
    assert head.distance_from_identity > 0
    assert api.reset_user(user_id) == 1  # the session trained this user's head
    assert not api.describe_user(user_id).heads


def test_session_with_a_user_by_likeness(
    indexed: flows.IndexSummary, api: Any, gallery: Path
) -> None:
    target = messages.point_id("Abdullah_Gul/" + sorted(
        p.name for p in (gallery / "Abdullah_Gul").glob("*.jpg"))[2], 0)  # fmt: skip
    rounds: list[int] = []
    user = api.simulated_user_by_likeness(
        COLLECTION, target, show=lambda state: rounds.append(state.round)
    )
    outcome = api.run_session(COLLECTION, "sdk-likeness", user, k=4, ephemeral=True)
    assert outcome.found_id == target
    assert rounds == list(range(outcome.rounds))
    with pytest.raises(FacesearchError, match="not in"):
        api.simulated_user_by_likeness(COLLECTION, "no-such-point#0")


def test_the_first_labels_end_the_session_in_one_round(
    indexed: flows.IndexSummary, api: Any
) -> None:
    async def found_first(state: personalizer_pb2.SessionState) -> list[personalizer_pb2.Feedback]:
        first = state.candidates[0].id
        return [personalizer_pb2.Feedback(id=first, label=personalizer_pb2.FEEDBACK_LABEL_FOUND)]

    outcome = api.run_session(COLLECTION, "sdk-found-first", found_first, k=2, ephemeral=True)
    assert outcome.finished and outcome.found_id and outcome.rounds == 1


# ---------------------------------------------------------------- deadlines and cancellation


def test_the_default_deadline_applies_to_flows(
    indexed: flows.IndexSummary, suite: dict[str, ServiceProcess], gallery: Path
) -> None:
    photo = sorted((gallery / "Angela_Merkel").glob("*.jpg"))[0]
    with FacesearchClient(settings_of(suite, timeout_s=0.001)) as client:
        with pytest.raises(grpc.RpcError) as err:
            flows.search_by_image(client, COLLECTION, photo)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    async def scenario() -> grpc.StatusCode:
        async with AsyncFacesearchClient(settings_of(suite, timeout_s=0.001)) as fs:
            with pytest.raises(grpc.RpcError) as err:
                await aio.search_by_image(fs, COLLECTION, photo)
            return err.value.code()

    assert asyncio.run(scenario()) == grpc.StatusCode.DEADLINE_EXCEEDED


def _session_gone(client: FacesearchClient, session_id: str) -> bool:
    try:
        client.personalizer.GetSession(personalizer_pb2.GetSessionRequest(session_id=session_id))
    except grpc.RpcError as err:
        return err.code() == grpc.StatusCode.NOT_FOUND
    return False


def test_ctrl_c_in_a_sync_session_ends_the_session(
    indexed: flows.IndexSummary, client: FacesearchClient
) -> None:
    sessions: list[str] = []

    def user_presses_ctrl_c(state: personalizer_pb2.SessionState) -> None:
        sessions.append(state.session_id)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        flows.run_session(client, COLLECTION, "sdk-ctrl-c", user_presses_ctrl_c, ephemeral=True)
    assert sessions and _session_gone(client, sessions[0])
    # The client still works after the interrupt.
    assert flows.search_by_text(client, COLLECTION, "a swimmer", k=1)


def test_cancelling_an_async_session_ends_the_session(
    indexed: flows.IndexSummary, suite: dict[str, ServiceProcess], client: FacesearchClient
) -> None:
    sessions: list[str] = []

    async def scenario() -> None:
        async with AsyncFacesearchClient(settings_of(suite)) as fs:
            asked = asyncio.Event()

            async def never_answers(state: personalizer_pb2.SessionState) -> None:
                sessions.append(state.session_id)
                asked.set()
                await asyncio.sleep(3600)

            task = asyncio.create_task(
                aio.run_session(fs, COLLECTION, "sdk-cancel", never_answers, ephemeral=True)
            )
            await asked.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
    assert sessions and _session_gone(client, sessions[0])


def test_cancelling_an_async_index_stops_its_streams(
    indexed: flows.IndexSummary, suite: dict[str, ServiceProcess], gallery: Path
) -> None:
    async def scenario() -> None:
        async with AsyncFacesearchClient(settings_of(suite)) as fs:
            started = asyncio.Event()
            task = asyncio.create_task(
                aio.index_folder(
                    fs, gallery, COLLECTION, person_from_dir=True, progress=lambda p: started.set()
                )
            )
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The channel is fine afterwards: a new call goes through.
            assert await aio.search_by_text(fs, COLLECTION, "a swimmer", k=1)

    asyncio.run(scenario())


# ---------------------------------------------------------------- both APIs, one implementation


def test_every_flow_is_exercised_here_through_both_apis() -> None:
    # This module and the other live modules of the SDK (test_*_live.py) share the Api adapters.
    source = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*_live.py"))
    missing = [name for name in (*aio.FLOWS, *aio.STREAMING_FLOWS) if f"api.{name}(" not in source]
    assert not missing, f"flows this module never calls through `api` (both APIs): {missing}"
