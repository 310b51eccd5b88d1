"""``facesearch reembed``: a collection rebuilt with another face model from its media, rolled
out by moving its alias. Real processes over gRPC: an embedder whose model dir holds a second
face model (a copy of SFace registered as fine-tuned, ``sface-test-v1``: its vectors equal
SFace's, so a re-embedded face must land on its own old vector) and a retriever; LFW photos
from ../shared/data (skipped without them)."""

from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from facesearch import ClientSettings, FacesearchClient, cli, flows, messages
from facesearch.core import indexing, reembed
from facesearch.core import search as search_flows
from facesearch_contract.v1 import persons_pb2, retriever_pb2
from harness.service_process import REPO_ROOT, ServiceProcess, start_service

pytestmark = pytest.mark.slow

NEW = "sface-test-v1"
OLD = "sface-2021dec"
# Registered the same way, but without a calibration, as a freshly trained model is.
UNCALIBRATED = "sface-uncalibrated-v1"


def trained_copy_of_sface(model_dir: Path) -> None:
    """The shipped models, plus SFace again as the fine-tuned model ``NEW`` (its ONNX file and
    a card naming it trained from SFace, with SFace's calibration: the weights are SFace's),
    and once more as ``UNCALIBRATED``, whose card has no calibration."""
    for f in (REPO_ROOT / "models").iterdir():
        (model_dir / f.name).symlink_to(f)
    shipped = json.loads((REPO_ROOT / "models" / f"{OLD}.card.json").read_text())
    for model in (NEW, UNCALIBRATED):
        (model_dir / f"{model}.onnx").symlink_to(REPO_ROOT / "models" / f"{OLD}.onnx")
        card = dict(shipped, model_id=model, trained_from=OLD, name=f"SFace, again as {model}")
        if model == NEW:
            card["calibration"] = dict(shipped["calibration"], model_id=model)
        else:
            del card["calibration"]
        (model_dir / f"{model}.card.json").write_text(json.dumps(card))


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServiceProcess]]:
    base = tmp_path_factory.mktemp("reembed")
    models = base / "models"
    models.mkdir()
    trained_copy_of_sface(models)
    started: dict[str, ServiceProcess] = {}
    try:
        started["embedder"] = start_service(
            "embedder", {"FACESEARCH_EMBEDDER_MODEL_DIR": str(models)}, log_dir=base
        )
        started["retriever"] = start_service(
            "retriever", {"FACESEARCH_RETRIEVER_DATA_DIR": str(base / "data")}, log_dir=base
        )
        yield started
    finally:
        for svc in started.values():
            svc.stop()


def settings(services: dict[str, ServiceProcess]) -> ClientSettings:
    return ClientSettings(
        embedder_address=services["embedder"].address,
        retriever_address=services["retriever"].address,
        timeout_s=120,
    )


@pytest.fixture
def client(services: dict[str, ServiceProcess]) -> Iterator[FacesearchClient]:
    with FacesearchClient(settings(services)) as fs:
        yield fs


@pytest.fixture
def api_settings(services: dict[str, ServiceProcess]) -> ClientSettings:
    """``api`` (conftest.py) on this module's own stack, not the shared suite."""
    return settings(services)


def conn(services: dict[str, ServiceProcess]) -> list[str]:
    return ["--embedder", services["embedder"].address,
            "--retriever", services["retriever"].address]  # fmt: skip


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.main(list(argv), out=out)
    return code, out.getvalue()


def indexed(client: FacesearchClient, folder: Path, name: str, persons: bool = True) -> int:
    flows.ensure_collection(client, name)
    summary = flows.index_folder(client, folder, name, person_from_dir=persons)
    assert summary.errors == [], summary.errors
    return summary.faces


def points(client: FacesearchClient, name: str) -> dict[str, retriever_pb2.Point]:
    out: dict[str, retriever_pb2.Point] = {}
    for p in flows.scan_points(client, name, with_vectors=True):
        assert p.id not in out, f"{p.id} scanned twice"
        out[p.id] = p
    return out


def persons_of(client: FacesearchClient, name: str) -> dict[str, persons_pb2.Person]:
    reply = client.persons.ListPersons(persons_pb2.ListPersonsRequest(collection=name))
    return {p.person_id: p for p in reply.persons}


def test_reembed_carries_faces_labels_captions_and_persons_and_moves_the_alias(
    client: FacesearchClient, services: dict[str, ServiceProcess], gallery: Path
) -> None:
    faces = indexed(client, gallery, "arch")
    info = flows.collection_fields(client, "arch")
    assert info.face_model == OLD
    before = points(client, "arch")
    labelled = {i for i, p in before.items() if "person_id" in p.metadata}
    assert labelled and persons_of(client, "arch")

    code, out = run("reembed", "arch", "--model", NEW, "--alias", "arch-live", *conn(services))
    assert code == 0, out
    assert f"created collection arch-{NEW} ({NEW}) from arch" in out
    assert f"{faces} of {faces} faces carried, 0 lost" in out
    assert f"alias arch-live now point(s) at arch-{NEW}" in out
    assert "the old collection arch is kept" in out

    after = points(client, f"arch-{NEW}")
    assert set(after) == set(before)
    for pid, old in before.items():
        new = after[pid]
        assert messages.python_metadata(new.metadata) == messages.python_metadata(old.metadata)
        assert new.model_ids["face"] == NEW and old.model_ids["face"] == OLD
        # The same weights: each face must have been paired with its own detection.
        cos = np.dot(new.vectors["face"].values, old.vectors["face"].values)
        assert cos > 0.99, (pid, cos)
        assert list(new.vectors["caption"].values) == list(old.vectors["caption"].values)
    assert {i for i, p in after.items() if "person_id" in p.metadata} == labelled

    old_persons, new_persons = persons_of(client, "arch"), persons_of(client, f"arch-{NEW}")
    assert set(new_persons) == set(old_persons)
    for pid, person in old_persons.items():
        assert list(new_persons[pid].reference_ids) == list(person.reference_ids)
        assert new_persons[pid].display_name == person.display_name
        assert new_persons[pid].labelled_faces == person.labelled_faces
    settings_now = client.persons.GetIdentificationSettings(
        persons_pb2.GetIdentificationSettingsRequest(collection="arch-live")
    )
    assert settings_now.settings.calibration.model_id == NEW
    # The old collection keeps serving by name until someone drops it.
    old_info = client.retriever.DescribeCollection(
        retriever_pb2.DescribeCollectionRequest(collection="arch")
    ).collection
    assert old_info.points == faces and list(old_info.aliases) == []
    live = client.retriever.DescribeCollection(
        retriever_pb2.DescribeCollectionRequest(collection="arch-live")
    ).collection
    assert live.name == f"arch-{NEW}" and list(live.media_roots) == [str(gallery.resolve())]


def test_both_apis_scan_and_reembed(
    api: Any, client: FacesearchClient, gallery: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "two"
    for person in ("Aaron_Peirsol", "Andre_Agassi"):
        shutil.copytree(gallery / person, folder / person)
    name = f"api-{api.mode}"
    faces = indexed(client, folder, name, persons=False)
    scanned = api.scan_points(name, page_size=3)
    assert len({p.id for p in scanned}) == len(scanned) == faces
    seen: list[flows.ReembedProgress] = []
    summary = api.reembed_collection(name, NEW, swap=False, progress=seen.append)
    assert summary.complete and summary.carried == summary.faces == faces
    assert summary.target == f"{name}-{NEW}" and summary.created and summary.aliases == []
    assert any(p.phase == "embedding" and p.done == p.total == 8 for p in seen), seen


def test_a_run_killed_midway_resumes_and_finishes_without_duplicates(
    client: FacesearchClient, services: dict[str, ServiceProcess], gallery: Path, tmp_path: Path
) -> None:
    faces = indexed(client, gallery, "killed", persons=False)
    journal = tmp_path / "reembed.jsonl"
    argv = ["reembed", "killed", "--model", NEW, "--no-swap", "--journal", str(journal),
            "--batch-size", "2", "--in-flight", "1", "--no-progress", *conn(services)]  # fmt: skip
    child = subprocess.Popen(
        [sys.executable, "-m", "facesearch.cli", *argv],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    stored = 0
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and child.poll() is None:
            try:
                stored = int(
                    client.retriever.Stats(
                        retriever_pb2.StatsRequest(collection=f"killed-{NEW}")
                    ).points
                )
            except grpc.RpcError:
                stored = 0  # not created yet
            if stored >= 2:
                child.send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
    finally:
        if child.poll() is None:
            child.kill()
        output = child.communicate(timeout=30)[0].decode()
    assert child.returncode == -signal.SIGKILL, f"the run ended before the kill:\n{output}"
    # The kill lands after the first faces are stored and before the run ends (it never
    # finished: SIGKILL above). Faces become visible in bursts as streamed upserts are acked,
    # so all of them may already be stored; the journal still lacks the run's end.
    assert 0 < stored <= faces, stored

    code, out = run(*argv)
    assert code == 0, out
    assert f"resumed into collection killed-{NEW}" in out
    assert f"{faces} of {faces} faces carried, 0 lost" in out
    resumed = int(out.split("resumed: ")[1].split(" of ")[0])
    assert resumed >= 1, out
    assert f"re-embedded {17 - resumed} images" in out, out
    assert set(points(client, f"killed-{NEW}")) == set(points(client, "killed"))
    # Run again: nothing left to do, nothing sent.
    code, out = run(*argv)
    assert code == 0 and "re-embedded 0 images" in out, out


def test_searches_through_the_alias_never_fail_while_it_moves(
    client: FacesearchClient, services: dict[str, ServiceProcess], gallery: Path
) -> None:
    indexed(client, gallery, "swap", persons=False)
    client.retriever.SetAlias(retriever_pb2.SetAliasRequest(alias="swap-live", collection="swap"))
    probe = sorted(gallery.rglob("*.jpg"))[0]
    own = messages.point_id(str(probe.relative_to(gallery)), 0)
    failures: list[str] = []
    served: list[str] = []
    stop = threading.Event()

    def search_all_along() -> None:
        with FacesearchClient(settings(services)) as fs:
            while not stop.is_set():
                try:
                    hits = flows.search_by_image(fs, "swap-live", probe, k=3)
                    assert hits[0].id == own and hits[0].score > 0.99, hits[:1]
                    served.append(flows.collection_fields(fs, "swap-live").face_model)
                except Exception as exc:  # every failure counts, whatever its kind
                    failures.append(repr(exc))

    searcher = threading.Thread(target=search_all_along, daemon=True)
    searcher.start()
    try:
        summary = flows.reembed_collection(client, "swap-live", NEW)
        moved_at = len(served)
        deadline = time.monotonic() + 60
        while len(served) < moved_at + 5 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        searcher.join(timeout=60)
    assert failures == []
    assert summary.aliases == ["swap-live"] and summary.complete
    assert OLD in served and served[-1] == NEW, served


def test_changes_to_the_old_collection_since_are_carried_by_the_next_pass(
    client: FacesearchClient, services: dict[str, ServiceProcess], gallery: Path
) -> None:
    """What a long run's later passes do for writes made meanwhile: run, change the old
    collection (a person forgotten, a face's metadata edited), run again."""
    indexed(client, gallery, "moving")
    argv = ["reembed", "moving", "--model", NEW, "--no-swap", *conn(services)]
    code, out = run(*argv)
    assert code == 0, out
    old = points(client, "moving")
    forgotten = sorted(persons_of(client, "moving"))[0]
    gone = {i for i, p in old.items() if p.metadata["person_id"].string_value == forgotten}
    client.persons.ForgetPerson(
        persons_pb2.ForgetPersonRequest(collection="moving", person_id=forgotten)
    )
    edited = next(p for i, p in sorted(old.items()) if i not in gone)
    edited.metadata["reviewed"].bool_value = True
    client.retriever.Upsert(messages.upsert_request("moving", [edited]))

    code, out = run(*argv)
    assert code == 0, out
    assert f"1 face(s) updated, {len(gone)} deleted" in out, out
    after = points(client, f"moving-{NEW}")
    assert set(after) == set(old) - gone
    assert after[edited.id].metadata["reviewed"].bool_value is True
    assert after[edited.id].model_ids["face"] == NEW
    assert forgotten not in persons_of(client, f"moving-{NEW}")
    assert set(persons_of(client, f"moving-{NEW}")) == set(persons_of(client, "moving"))


def test_writes_between_the_last_pass_and_the_alias_move_are_carried_after_it(
    client: FacesearchClient, gallery: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writers reach the old collection through the alias until it moves. While persons carry
    over (after the last pass), a person's photos are indexed, a face is labelled and another
    deleted there; right after the move a face is labelled through the alias (in the new
    collection). The catch-up carries the first three and leaves the last as written."""
    folder = tmp_path / "window"
    for person in ("Aaron_Peirsol", "Angela_Merkel", "Andre_Agassi"):
        shutil.copytree(gallery / person, folder / person)
    first = sorted((folder / "Aaron_Peirsol").glob("*.jpg")) + sorted(
        (folder / "Angela_Merkel").glob("*.jpg")
    )
    late = sorted((folder / "Andre_Agassi").glob("*.jpg"))
    flows.ensure_collection(client, "window")
    summary = flows.index_folder(client, folder, "window", person_from_dir=True, files=first)
    assert summary.errors == [] and summary.faces > 0
    client.retriever.SetAlias(
        retriever_pb2.SetAliasRequest(alias="window-live", collection="window")
    )
    before = points(client, "window")
    # Faces no person refers to: deleting a reference face is a person's business.
    refs = {r for p in persons_of(client, "window").values() for r in p.reference_ids}
    edited_id, deleted_id, after_move_id = sorted(set(before) - refs)[:3]
    real_persons, real_move = reembed._Reembed._persons, reembed._Reembed._move_aliases

    async def persons_while_written(self: Any) -> None:
        await real_persons(self)
        await indexing.index_folder(
            self.client, folder, "window-live", person_from_dir=True, files=late
        )
        p = (await self._get("window-live", [edited_id], True))[0]
        p.metadata["reviewed"].bool_value = True
        await self.client.retriever.Upsert(messages.upsert_request("window-live", [p]))
        await self.client.retriever.Delete(
            retriever_pb2.DeleteRequest(
                collection="window-live", ids=retriever_pb2.IdList(ids=[deleted_id])
            )
        )

    async def move_then_written(self: Any) -> None:
        await real_move(self)
        p = (await self._get("window-live", [after_move_id], True))[0]
        assert p.model_ids["face"] == NEW
        p.metadata["checked_after_move"].bool_value = True
        await self.client.retriever.Upsert(messages.upsert_request("window-live", [p]))

    monkeypatch.setattr(reembed._Reembed, "_persons", persons_while_written)
    monkeypatch.setattr(reembed._Reembed, "_move_aliases", move_then_written)
    done = flows.reembed_collection(client, "window-live", NEW)
    assert done.complete, done
    assert done.aliases == ["window-live"]

    old, new = points(client, "window"), points(client, f"window-{NEW}")
    late_ids = set(old) - set(before)
    assert late_ids, "the late person's faces were indexed into the old collection"
    assert set(new) == set(old), "the new collection holds exactly the old one's faces"
    assert deleted_id not in new
    assert all(new[i].model_ids["face"] == NEW for i in late_ids)
    assert new[edited_id].metadata["reviewed"].bool_value is True
    # Written to the new collection after the move: not undone by the catch-up.
    assert new[after_move_id].metadata["checked_after_move"].bool_value is True
    assert "Andre_Agassi" in persons_of(client, f"window-{NEW}")
    assert set(persons_of(client, f"window-{NEW}")) == set(persons_of(client, "window"))
    # The late person's faces and person, the label and the deletion.
    assert done.caught_up >= len(late_ids) + 3, done.caught_up


def test_a_search_caught_between_describe_and_move_embeds_again_for_the_new_model(
    client: FacesearchClient, gallery: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the alias move opens: a search by image read the old collection's model,
    embedded with it, and the alias moved before its Search. The retriever refuses the old
    model's vector in the new collection; the flow sees the model changed, embeds again."""
    folder = tmp_path / "race"
    shutil.copytree(gallery / "Angela_Merkel", folder / "Angela_Merkel")
    indexed(client, folder, "race", persons=False)
    flows.reembed_collection(client, "race", NEW, swap=False)
    client.retriever.SetAlias(retriever_pb2.SetAliasRequest(alias="race-live", collection="race"))
    real = search_flows.embed_image_faces
    models: list[str] = []

    async def embed_then_move(fs: Any, image: Any, model_id: str) -> Any:
        faces = await real(fs, image, model_id)
        models.append(model_id)
        if len(models) == 1:
            await fs.retriever.SetAlias(
                retriever_pb2.SetAliasRequest(
                    alias="race-live", collection=f"race-{NEW}", allow_model_change=True
                )
            )
        return faces

    monkeypatch.setattr(search_flows, "embed_image_faces", embed_then_move)
    probe = sorted(folder.rglob("*.jpg"))[0]
    hits = flows.search_by_image(client, "race-live", probe, k=1)
    assert models == [OLD, NEW]
    assert hits[0].id == messages.point_id(str(probe.relative_to(folder)), 0)
    assert hits[0].score > 0.99


def test_an_image_deleted_before_the_run_is_reported_not_lost_silently(
    client: FacesearchClient, services: dict[str, ServiceProcess], gallery: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    shutil.copytree(gallery, folder)
    faces = indexed(client, folder, "gone", persons=False)
    victim = sorted(folder.rglob("*.jpg"))[3]
    media = str(victim.relative_to(folder))
    victim_faces = [i for i, p in points(client, "gone").items()
                    if p.metadata["media_id"].string_value == media]  # fmt: skip
    victim.unlink()
    code, out = run("reembed", "gone", "--model", NEW, "--no-swap", *conn(services))
    assert code == 1, out
    carried = faces - len(victim_faces)
    assert f"{carried} of {faces} faces carried, {len(victim_faces)} lost" in out
    assert f"  {media}: {len(victim_faces)} face(s), image not read" in out
    assert set(points(client, f"gone-{NEW}")) == set(points(client, "gone")) - set(victim_faces)
    # A second run says so again, without trying the image again.
    code, again = run("reembed", "gone", "--model", NEW, "--no-swap", *conn(services))
    assert code == 1 and f"  {media}: {len(victim_faces)} face(s)" in again
    assert "re-embedded 0 images" in again


def test_bad_input_gets_a_clear_refusal(
    client: FacesearchClient,
    services: dict[str, ServiceProcess],
    gallery: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def refused(*argv: str) -> str:
        capsys.readouterr()
        code, out = run("reembed", *argv, *conn(services))
        assert code == 1, out
        return capsys.readouterr().err

    indexed(client, gallery, "bad")
    err = refused("bad", "--model", "no-such-model", "--no-swap")
    assert "unknown face model 'no-such-model'" in err and repr(NEW) in err, err

    err = refused("bad", "--model", NEW)
    assert "no alias points at it" in err and "--alias NAME" in err, err

    # Its persons need identification, which needs the new model's own calibration.
    err = refused("bad", "--model", UNCALIBRATED, "--no-swap")
    assert f"need the score calibration of model {UNCALIBRATED!r} itself" in err, err
    assert "embedder.calibration --model" in err, err  # the embedder's word on how to make one
    assert not _exists(client, f"bad-{UNCALIBRATED}")

    # A collection of another model under the new collection's name: not written into.
    flows.ensure_collection(client, "bad-taken")
    err = refused("bad", "--model", NEW, "--into", "bad-taken", "--no-swap")
    assert f"holds faces of model '{OLD}'" in err and "--into" in err, err
    assert client.retriever.Stats(retriever_pb2.StatsRequest(collection="bad-taken")).points == 0
    # The retriever refuses such vectors too, whoever sends them.
    one = next(iter(points(client, "bad").values()))
    one.model_ids["face"] = NEW
    with pytest.raises(grpc.RpcError) as rpc:
        client.retriever.Upsert(messages.upsert_request("bad-taken", [one]))
    assert rpc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"vectors of model '{NEW}' cannot go in field 'face'" in rpc.value.details()

    # No recorded media root (stored by hand, not by index): the user is told what to pass.
    flows.ensure_collection(client, "bare")
    result = next(flows.embed_images(client, [("Aaron_Peirsol/x.jpg", _photo(gallery))]))
    client.retriever.Upsert(messages.upsert_request("bare", messages.face_points(result)))
    err = refused("bare", "--model", NEW, "--no-swap")
    assert "no recorded media root" in err and "--media-root DIR" in err, err
    (tmp_path / "Aaron_Peirsol").mkdir()
    (tmp_path / "Aaron_Peirsol" / "x.jpg").write_bytes(_photo(gallery))
    code, out = run("reembed", "bare", "--model", NEW, "--no-swap", "--media-root",
                    str(tmp_path), *conn(services))  # fmt: skip
    assert code == 0 and "1 of 1 faces carried, 0 lost" in out, out


def _exists(client: FacesearchClient, name: str) -> bool:
    names = client.retriever.ListCollections(retriever_pb2.ListCollectionsRequest()).collections
    return any(c.name == name for c in names)


def _photo(gallery: Path) -> bytes:
    return sorted((gallery / "Aaron_Peirsol").glob("*.jpg"))[0].read_bytes()
