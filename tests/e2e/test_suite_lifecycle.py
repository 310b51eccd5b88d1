"""The suite end to end, through three real service processes over real sockets:
index a folder -> search by a face -> a session reaches a target -> forget one person (GDPR)
and prove none of their faces comes back, also after the retriever restarts -> a vector of
another model is refused -> an alias swap to a re-embedded collection serves reads without a
failed call.

Uses LFW photos from ../shared/data (skips, saying so, where that folder is absent)."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from facesearch import ClientSettings, FacesearchClient, flows, messages
from facesearch_contract.v1 import retriever_pb2
from harness.service_process import (
    ServiceProcess,
    free_port,
    metric_value,
    scrape_metrics,
    start_service,
    start_suite,
    stop_suite,
    suite_settings,
)
from harness.shared_data import shared_data_dir

PEOPLE = ["Colin_Powell", "Tony_Blair", "Serena_Williams", "Hugo_Chavez", "Laura_Bush"]
PHOTOS_EACH = 5  # the first 4 are indexed, the 5th is the query
FORGOTTEN = "Tony_Blair"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    data = shared_data_dir()
    if data is None:
        pytest.skip("needs ../shared/data (LFW photos); absent in this clone")
    root = tmp_path_factory.mktemp("archive")
    queries = {}
    for person in PEOPLE:
        files = sorted((data / "lfw" / "lfw" / person).glob("*.jpg"))[:PHOTOS_EACH]
        assert len(files) == PHOTOS_EACH, person
        (root / person).mkdir()
        for f in files[:-1]:
            shutil.copy(f, root / person / f.name)
        queries[person] = files[-1]
    return root, queries


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServiceProcess]]:
    tmp = tmp_path_factory.mktemp("suite")
    # A fixed retriever port, so the restarted retriever is where the others expect it.
    port = free_port()
    started = start_suite(
        tmp,
        metrics=True,
        env={
            "FACESEARCH_RETRIEVER_PORT": str(port),
            "FACESEARCH_RETRIEVER_METRICS_REFRESH_S": "0.2",
        },
    )
    started["_tmp"] = tmp  # type: ignore[assignment]
    yield started
    stop_suite({k: v for k, v in started.items() if k != "_tmp"})


def settings(suite: dict[str, ServiceProcess]) -> ClientSettings:
    return suite_settings(suite)


@pytest.fixture(scope="module")
def client(suite: dict[str, ServiceProcess]) -> Iterator[FacesearchClient]:
    with FacesearchClient(settings(suite)) as fs:
        yield fs


def _wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _people_in(hits: list[messages.Hit]) -> list[str]:
    return [h.metadata.get("person_id", "") for h in hits]


def test_archive_lifecycle(
    suite: dict[str, ServiceProcess],
    client: FacesearchClient,
    photos: tuple[Path, dict[str, Path]],
) -> None:
    root, queries = photos
    # 1. Index a folder (person = folder name).
    flows.ensure_collection(client, "archive-v1")
    summary = flows.index_folder(client, root, "archive-v1", person_from_dir=True)
    assert summary.errors == [] and summary.images == len(PEOPLE) * (PHOTOS_EACH - 1)

    # 2. Search by an unseen photo of each person: their own faces rank first.
    for person, query in queries.items():
        hits = flows.search_by_image(client, "archive-v1", query, k=3)
        assert _people_in(hits)[0] == person, (person, _people_in(hits))

    # 3. An interactive session reaches a face of the person the simulated user has in mind.
    outcome = flows.run_session(
        client, "archive-v1", "e2e-user", flows.simulated_user("Serena_Williams"), k=4
    )
    assert outcome.found_id and outcome.rounds <= 5, outcome
    # What the dashboard charts moved: feedback rounds, and the index size per collection.
    scraped = scrape_metrics(suite["personalizer"].metrics_port)
    rounds = metric_value(scraped, "facesearch_personalizer_feedback_rounds_total", finished="true")
    assert rounds == 1  # the round in which the user said "found"
    stored = client.retriever.Stats(retriever_pb2.StatsRequest(collection="archive-v1")).points
    uid = client.retriever.DescribeCollection(
        retriever_pb2.DescribeCollectionRequest(collection="archive-v1")
    ).collection.uid
    _wait_for(
        lambda: (
            metric_value(
                scrape_metrics(suite["retriever"].metrics_port),
                "facesearch_retriever_points",
                collection=uid,  # names stay out of the unauthenticated /metrics by default
            )
            == stored
        )
    )

    # 4. Forget one person (GDPR): no face of theirs comes back from search, get or stats.
    # Indexing by folder labelled each person's own faces and enrolled them; forgetting takes
    # the labelled faces and any unlabelled face that identifies as them, after a dry run.
    assert summary.persons_enrolled == len(PEOPLE), summary.person_labels
    before = client.retriever.Stats(retriever_pb2.StatsRequest(collection="archive-v1")).points
    dry = flows.forget_person(
        client, "archive-v1", FORGOTTEN, include_unlabelled_matches=True, dry_run=True
    )
    assert (
        client.retriever.Stats(retriever_pb2.StatsRequest(collection="archive-v1")).points == before
    )
    done = flows.forget_person(client, "archive-v1", FORGOTTEN, include_unlabelled_matches=True)
    assert sorted(done.face_ids) == sorted(dry.face_ids)
    deleted = len(done.face_ids)
    assert deleted >= PHOTOS_EACH - 1
    forgotten_ids = [f"{FORGOTTEN}/{p.name}#0" for p in sorted((root / FORGOTTEN).glob("*.jpg"))]

    def assert_forgotten() -> None:
        hits = flows.search_by_image(client, "archive-v1", queries[FORGOTTEN], k=50)
        assert FORGOTTEN not in _people_in(hits)
        got = client.retriever.Get(
            retriever_pb2.GetRequest(collection="archive-v1", ids=forgotten_ids)
        )
        assert list(got.points) == []
        stats = client.retriever.Stats(retriever_pb2.StatsRequest(collection="archive-v1"))
        assert stats.points == before - deleted

    assert_forgotten()
    # ... also after a snapshot and a restart, and after a kill -9 (replaying the log).
    client.retriever.Snapshot(retriever_pb2.SnapshotRequest(collection="archive-v1", wait=True))
    for how in (signal.SIGTERM, signal.SIGKILL):
        old = suite["retriever"]
        old.signal(how)
        old.wait(timeout=30)
        suite["retriever"] = start_service(
            "retriever",
            {
                "FACESEARCH_RETRIEVER_PORT": str(old.port),
                "FACESEARCH_RETRIEVER_DATA_DIR": str(suite["_tmp"] / "retriever"),  # type: ignore[operator]
            },
            log_dir=suite["_tmp"] / f"restart-{how.name}",  # type: ignore[operator]
        )
        assert_forgotten()
        # The other people are all still there.
        for person in set(PEOPLE) - {FORGOTTEN}:
            hits = flows.search_by_image(client, "archive-v1", queries[person], k=1)
            assert _people_in(hits) == [person]

    # 5. A vector from another model is refused, and nothing is stored.
    face = flows.embed_largest_face(client, queries["Colin_Powell"], "sface-2021dec")
    foreign = retriever_pb2.Point(
        id="foreign#0",
        vectors={"face": face.embedding},
        model_ids={"face": "some-other-encoder-v2"},
    )
    with pytest.raises(grpc.RpcError) as err:
        client.retriever.Upsert(
            retriever_pb2.UpsertRequest(collection="archive-v1", points=[foreign])
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "model" in err.value.details()
    assert not client.retriever.Get(
        retriever_pb2.GetRequest(collection="archive-v1", ids=["foreign#0"])
    ).points

    # 6. Alias swap to a re-embedded collection while readers keep searching through the alias.
    client.retriever.SetAlias(
        retriever_pb2.SetAliasRequest(alias="archive", collection="archive-v1")
    )
    flows.ensure_collection(client, "archive-v2")
    flows.index_folder(client, root, "archive-v2", person_from_dir=True)
    failures: list[BaseException] = []
    served_by: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                hits = flows.search_by_image(client, "archive", queries["Laura_Bush"], k=50)
                # v1 forgot Tony Blair, v2 was indexed afresh: tell the two apart by him.
                served_by.append(2 if FORGOTTEN in _people_in(hits) else 1)
            except BaseException as exc:
                failures.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        _wait_for(lambda: served_by.count(1) >= 3)
        previous = client.retriever.SetAlias(
            retriever_pb2.SetAliasRequest(alias="archive", collection="archive-v2")
        ).previous_collection
        _wait_for(lambda: served_by.count(2) >= 3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert previous == "archive-v1"
    assert failures == []
    # Every read answered, first from the old target, then (once swapped) only from the new.
    assert served_by.count(1) >= 3 and served_by.count(2) >= 3
    assert served_by[served_by.index(2) :].count(1) <= len(threads), "old target after the swap"
    described = client.retriever.DescribeCollection(
        retriever_pb2.DescribeCollectionRequest(collection="archive")
    ).collection
    assert described.name == "archive-v2"
