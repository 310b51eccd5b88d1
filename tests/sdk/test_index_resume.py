"""``facesearch index`` when the retriever goes away mid-run: retried until it is back, or,
when it stays down, a non-zero exit listing what was not indexed, and a second run that sends
only the rest. Real processes: the suite's embedder and a retriever of this module's own,
killed (SIGKILL) and started again on the same port and data."""

from __future__ import annotations

import io
import json
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from facesearch import FacesearchClient, cli, flows
from facesearch.index_resume import IndexJournal
from facesearch_contract.v1 import retriever_pb2
from harness.service_process import ServiceProcess, start_service

from .conftest import GALLERY, settings_of

IMAGES = sum(n for n, _ in GALLERY.values())


class Retriever:
    """A retriever this module may kill and start again, same port, same data."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.env = {"FACESEARCH_RETRIEVER_DATA_DIR": str(data)}
        self.svc: ServiceProcess = start_service("retriever", self.env, log_dir=data / "logs")
        self.port = self.svc.port
        self.killed: list[int] = []

    def kill(self) -> None:
        self.svc.proc.send_signal(signal.SIGKILL)
        self.killed.append(self.svc.wait())

    def start(self) -> None:
        env = {**self.env, "FACESEARCH_RETRIEVER_PORT": str(self.port)}
        self.svc = start_service("retriever", env, log_dir=self.data / "logs")


@pytest.fixture(scope="module")
def retriever(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Retriever]:
    r = Retriever(tmp_path_factory.mktemp("resume-retriever"))
    yield r
    r.svc.stop()


@pytest.fixture(scope="module")
def gallery_faces(suite: dict[str, ServiceProcess], gallery: Path) -> int:
    """Faces in the gallery, from a run nobody interrupts (the suite's own retriever)."""
    with FacesearchClient(settings_of(suite)) as client:
        flows.ensure_collection(client, "resume-reference")
        summary = flows.index_folder(client, gallery, "resume-reference")
    assert summary.errors == [] and summary.images == IMAGES
    return summary.faces


def conn(suite: dict[str, ServiceProcess], retriever: Retriever) -> list[str]:
    return [
        "--embedder", suite["embedder"].address,
        "--retriever", f"127.0.0.1:{retriever.port}",
        "--personalizer", suite["personalizer"].address,
    ]  # fmt: skip


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.main(list(argv), out=out)
    return code, out.getvalue()


def after_images(monkeypatch: pytest.MonkeyPatch, n: int, action: Callable[[], None]) -> list[int]:
    """Run ``action`` once, on the progress callback, when the n-th image is embedded."""
    real = flows.index_folder
    fired: list[int] = []

    def index_folder(*args: Any, progress: Any = None, **kw: Any) -> Any:
        def hook(p: flows.IndexProgress) -> None:
            if progress is not None:
                progress(p)
            if p.done >= n and not fired:
                fired.append(p.done)
                action()

        return real(*args, progress=hook, **kw)

    monkeypatch.setattr(flows, "index_folder", index_folder)
    return fired


def stored_points(suite: dict[str, ServiceProcess], retriever: Retriever, name: str) -> int:
    settings = settings_of(suite).replace(retriever_address=f"127.0.0.1:{retriever.port}")
    with FacesearchClient(settings) as fs:
        return int(fs.retriever.Stats(retriever_pb2.StatsRequest(collection=name)).points)


def test_a_retriever_restarted_mid_run_is_retried_and_the_run_completes(
    suite: dict[str, ServiceProcess],
    retriever: Retriever,
    gallery: Path,
    gallery_faces: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    restarted = threading.Event()

    def kill_then_restart() -> None:
        retriever.kill()

        def restart() -> None:
            retriever.start()
            restarted.set()

        threading.Thread(target=restart, daemon=True).start()

    fired = after_images(monkeypatch, 5, kill_then_restart)
    code, out = run("index", str(gallery), "-c", "resume-retried", "--batch-size", "2",
                    "--no-progress", "--journal", str(tmp_path / "j.jsonl"),
                    *conn(suite, retriever))  # fmt: skip
    # Whatever the outcome, the retriever is up again for the next test.
    assert restarted.wait(120), "the retriever did not start again"
    assert code == 0, out
    assert fired and retriever.killed[-1] == -signal.SIGKILL
    assert f"indexed {IMAGES} images" in out and " 0 errors" in out
    assert re.search(r"\d+ transient failure\(s\) retried", out), out
    assert "not indexed" not in out
    assert stored_points(suite, retriever, "resume-retried") == gallery_faces


def test_a_retriever_that_stays_down_fails_the_run_and_the_next_run_sends_only_the_rest(
    suite: dict[str, ServiceProcess],
    retriever: Retriever,
    gallery: Path,
    gallery_faces: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    journal = tmp_path / "journal.jsonl"
    argv = ["index", str(gallery), "-c", "resume-later", "--batch-size", "2", "--no-progress",
            "--journal", str(journal), *conn(suite, retriever)]  # fmt: skip

    def kill_once_some_are_stored() -> None:
        # The acks come in on the flow's loop while this callback holds the flow: wait for
        # a few, so the run has both stored and unstored files when the retriever dies.
        for _ in range(600):
            if len(journal.read_text().splitlines()) > 3:
                break
            time.sleep(0.05)
        retriever.kill()

    after_images(monkeypatch, 7, kill_once_some_are_stored)
    try:
        code, out = run(*argv, "--retry-for", "2")
    finally:
        monkeypatch.undo()
        retriever.start()
    assert code == 1, out
    stopped = r"^  (\S+\.jpg): not indexed: UNAVAILABLE \(the run stopped"
    listed = re.findall(stopped, out, re.MULTILINE)
    assert f"not indexed ({len(listed)}):" in out, out
    assert "indexing stopped after retrying for 2s" in out
    assert 0 < len(listed) < IMAGES
    stored = [json.loads(line)["stored"] for line in journal.read_text().splitlines()[1:]]
    assert sorted(stored + listed) == sorted(
        str(p.relative_to(gallery)) for p in gallery.rglob("*.jpg")
    )

    code, out = run(*argv)
    assert code == 0, out
    assert f"resumed: {IMAGES - len(listed)} of {IMAGES} images already stored" in out
    assert f"indexed {len(listed)} images" in out and " 0 errors" in out
    assert stored_points(suite, retriever, "resume-later") == gallery_faces

    code, out = run(*argv)  # nothing left: nothing sent
    assert code == 0 and f"resumed: {IMAGES} of {IMAGES}" in out and "indexed 0 images" in out
    code, out = run(*argv, "--no-resume")
    assert code == 0 and f"indexed {IMAGES} images" in out and "resumed" not in out
    assert stored_points(suite, retriever, "resume-later") == gallery_faces  # replaced


def test_a_resumed_person_from_dir_run_enrols_the_persons_of_folders_stored_before(
    suite: dict[str, ServiceProcess],
    retriever: Retriever,
    gallery: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    journal = tmp_path / "journal.jsonl"
    argv = ["index", str(gallery), "-c", "resume-persons", "--person-from-dir", "--no-progress",
            "--batch-size", "2", "--journal", str(journal), *conn(suite, retriever)]  # fmt: skip
    first = sorted(gallery.iterdir())[0].name

    def kill_once_a_folder_is_stored() -> None:
        # A folder is labelled and sent whole when the next one starts.
        for _ in range(600):
            if journal.read_text().count(f'"stored":"{first}/') == GALLERY[first][0]:
                break
            time.sleep(0.05)
        retriever.kill()

    after_images(monkeypatch, 7, kill_once_a_folder_is_stored)
    try:
        code, out = run(*argv, "--retry-for", "2")
    finally:
        monkeypatch.undo()
        retriever.start()
    assert code == 1 and "0 new person(s) enrolled" in out, out  # stopped before enrolling
    code, out = run(*argv)
    assert code == 0, out
    assert f"resumed: {GALLERY[first][0]} of {IMAGES}" in out
    # The folder stored by the first run is not sent again, yet its person is enrolled.
    assert f"{len(GALLERY)} new person(s) enrolled" in out, out
    code, out = run("persons", "list", "-c", "resume-persons", "--json", *conn(suite, retriever))
    assert code == 0 and sorted(p["person_id"] for p in json.loads(out)) == sorted(GALLERY)


# ---------------------------------------------------------------- the journal, no server


def identity(**kw: Any) -> dict[str, Any]:
    return {"collection": "c", "uid": "u1", "folder": "/f", **kw}


def test_journal_keeps_what_was_stored_unless_the_file_or_the_collection_changed(
    tmp_path: Path,
) -> None:
    photo, other = tmp_path / "a.jpg", tmp_path / "b.jpg"
    photo.write_bytes(b"one")
    other.write_bytes(b"two")
    path = tmp_path / "j.jsonl"
    journal = IndexJournal(path, identity())
    journal.record_stored([("a.jpg", (3, photo.stat().st_mtime_ns))])
    journal.record_references("Ann", ["a.jpg#0"])
    journal.close()
    with path.open("a") as f:
        f.write('{"stored": "b.jpg", "si')  # killed mid-line

    again = IndexJournal(path, identity())
    assert again.is_stored("a.jpg", photo) and not again.is_stored("b.jpg", other)
    assert again.pending_enrolments() == {"Ann": ["a.jpg#0"]}
    again.record_enrolled(["Ann"])
    again.close()
    assert IndexJournal(path, identity()).pending_enrolments() == {}

    photo.write_bytes(b"changed")
    assert not IndexJournal(path, identity()).is_stored("a.jpg", photo)
    recreated = IndexJournal(path, identity(uid="u2"))
    assert recreated.started_over == "the collection was created anew since"
    assert not recreated.is_stored("a.jpg", photo)
