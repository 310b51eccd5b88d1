"""Context text indexed and searched against the real services: each source stored with its
name, a person in a context restricted to that person's faces and ranked by the context
(labelled faces, and on request unlabelled faces that identify as them), and a collection
without context refused, never a silent answer."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from facesearch import FacesearchClient, cli, flows, messages
from facesearch.core.search import ContextHits
from facesearch.errors import CollectionMismatch
from facesearch_contract.v1 import retriever_pb2
from harness.service_process import ServiceProcess

from .conftest import settings_of
from .context_fixtures import (
    copy_to,
    lfw_photos,
    write_exif,
    write_iptc,
    write_json,
    write_srt,
    write_vtt,
    write_xmp,
)

ARCHIVE = "context-archive"
WIMBLEDON = "a tennis player serving on the grass court at Wimbledon"
AUTOGRAPHS = "signing autographs for fans in the street"


@pytest.fixture(scope="module")
def fs(suite: dict[str, ServiceProcess]) -> Iterator[FacesearchClient]:
    with FacesearchClient(settings_of(suite)) as client:
        yield client


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder per person (labelled at indexing) with context from every source, and a
    folder of unlabelled photos: three more of Putin, two more of Agassi."""
    root = tmp_path_factory.mktemp("context-archive")
    agassi = [copy_to(p, root / "Andre_Agassi") for p in lfw_photos("Andre_Agassi", 4)]
    write_iptc(agassi[0], caption=WIMBLEDON, headline="Agassi serves", keywords=["tennis"])
    write_xmp(agassi[1], description={"x-default": "a man eating dinner with friends"})
    write_exif(agassi[2], AUTOGRAPHS)
    write_json(agassi[3], {"caption": "speaking to journalists at a press conference"})
    peirsol = [copy_to(p, root / "Aaron_Peirsol") for p in lfw_photos("Aaron_Peirsol", 4)]
    peirsol[0].with_suffix(".txt").write_text("a swimmer in goggles at the pool\n")
    write_srt(peirsol[1], [("00:00:01,000", "00:00:03,000", "he touches the wall first")])
    write_vtt(peirsol[2], [("00:00:00.000", "00:00:02.000", "an interview by the pool")])
    # peirsol[3]: no context at all.
    putin = [copy_to(p, root / "Vladimir_Putin") for p in lfw_photos("Vladimir_Putin", 4)]
    for photo, where in zip(
        putin,
        ("in parliament", "at a podium", "at a press conference", "in parliament"),
        strict=True,
    ):
        write_iptc(photo, caption=f"the president speaking {where}")
    unlabelled = root.parent / "context-unlabelled"
    for photo in lfw_photos("Vladimir_Putin", 3, skip=4):
        write_iptc(copy_to(photo, unlabelled), caption="the president shaking hands at a summit")
    for photo in lfw_photos("Andre_Agassi", 2, skip=4):
        write_iptc(copy_to(photo, unlabelled), caption="shaking hands at a summit")
    return root


@pytest.fixture(scope="module")
def indexed(fs: FacesearchClient, archive: Path) -> flows.IndexSummary:
    flows.ensure_collection(fs, ARCHIVE)
    summary = flows.index_folder(fs, archive, ARCHIVE, person_from_dir=True)
    assert summary.errors == [] and summary.images_with_faces == 12
    more = flows.index_folder(fs, archive.parent / "context-unlabelled", ARCHIVE)
    assert more.errors == [] and more.caption_sources == {"iptc": 5}
    return summary


def stored(fs: FacesearchClient, media_id: str) -> dict[str, object]:
    """The metadata of the labelled (or only) face of a photo."""
    ids = [messages.point_id(media_id, i) for i in range(4)]
    points = fs.retriever.Get(retriever_pb2.GetRequest(collection=ARCHIVE, ids=ids)).points
    metas = [messages.python_metadata(p.metadata) for p in points]
    return next((m for m in metas if m.get("person_id")), metas[0])


def test_every_source_is_stored_with_its_name(
    indexed: flows.IndexSummary, fs: FacesearchClient, archive: Path
) -> None:
    assert indexed.caption_sources == {
        "iptc": 5,
        "xmp": 1,
        "exif": 1,
        "json": 1,
        "txt": 1,
        "srt": 1,
        "webvtt": 1,
    }
    assert indexed.without_caption == 1 and indexed.context_problems == []
    expected = {
        "Andre_Agassi": [
            (WIMBLEDON, "iptc"),
            ("a man eating dinner with friends", "xmp"),
            (AUTOGRAPHS, "exif"),
            ("speaking to journalists at a press conference", "json"),
        ],
        "Aaron_Peirsol": [
            ("a swimmer in goggles at the pool", "txt"),
            ("he touches the wall first", "srt"),
            ("an interview by the pool", "webvtt"),
            (None, None),
        ],
    }
    for person, captions in expected.items():
        photos = sorted((archive / person).glob("*.jpg"))
        for photo, (caption, source) in zip(photos, captions, strict=True):
            meta = stored(fs, f"{person}/{photo.name}")
            assert (meta.get("caption"), meta.get("caption_source")) == (caption, source)
    first = sorted((archive / "Andre_Agassi").glob("*.jpg"))[0]
    meta = stored(fs, f"Andre_Agassi/{first.name}")
    assert meta["headline"] == "Agassi serves" and meta["keywords"] == ["tennis"]


def test_person_in_context_returns_only_that_persons_faces_ranked_by_context(
    indexed: flows.IndexSummary, fs: FacesearchClient, archive: Path
) -> None:
    photos = sorted((archive / "Andre_Agassi").glob("*.jpg"))
    # k is larger than the faces Agassi has: the rest of the archive must not fill it.
    hits = flows.search_person_in_context(fs, ARCHIVE, "Andre_Agassi", "tennis on grass", k=10)
    assert isinstance(hits, ContextHits)
    assert {h.metadata["person_id"] for h in hits} == {"Andre_Agassi"}
    assert len(hits) == 4
    assert hits[0].metadata["media_id"] == f"Andre_Agassi/{photos[0].name}"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(h.term_scores == (h.score,) for h in hits)
    by_fans = flows.search_person_in_context(fs, ARCHIVE, "Andre_Agassi", AUTOGRAPHS, k=2)
    assert by_fans[0].metadata["media_id"] == f"Andre_Agassi/{photos[2].name}"
    # A context that fits another person's captions better still returns only Agassi.
    pool = flows.search_person_in_context(fs, ARCHIVE, "Andre_Agassi", "swimmer at the pool")
    assert {h.metadata["person_id"] for h in pool} == {"Andre_Agassi"}


def test_a_face_without_context_is_left_out(
    indexed: flows.IndexSummary, fs: FacesearchClient, archive: Path
) -> None:
    hits = flows.search_person_in_context(fs, ARCHIVE, "Aaron_Peirsol", "swimming", k=10)
    media = {h.metadata["media_id"] for h in hits}
    silent = sorted((archive / "Aaron_Peirsol").glob("*.jpg"))[3]
    assert len(hits) == 3 and f"Aaron_Peirsol/{silent.name}" not in media


def test_unlabelled_faces_that_identify_as_the_person_on_request(
    indexed: flows.IndexSummary, fs: FacesearchClient
) -> None:
    context = "shaking hands at a summit"
    labelled = flows.search_person_in_context(fs, ARCHIVE, "Vladimir_Putin", context, k=20)
    assert {h.metadata.get("person_id") for h in labelled} == {"Vladimir_Putin"}
    assert not labelled.identified
    # Fewer labelled faces than asked for: the reply says the unlabelled ones were not searched.
    assert any("unlabelled faces were not searched" in n for n in labelled.notes), labelled.notes
    found = flows.search_person_in_context(
        fs, ARCHIVE, "Vladimir_Putin", context, k=20, include_unlabelled=True
    )
    assert found.identified, found.notes
    assert not any("were not searched" in n for n in found.notes), found.notes
    for hit in found:
        if hit.id in found.identified:
            assert "person_id" not in hit.metadata
            # Only Putin's unlabelled photos; Agassi's, captioned the same, never.
            assert "Vladimir_Putin_" in str(hit.metadata["media_id"])
        else:
            assert hit.metadata["person_id"] == "Vladimir_Putin"
    # The summit photos fit the context best, so they lead.
    assert found[0].id in found.identified
    assert [h.score for h in found] == sorted((h.score for h in found), reverse=True)


def test_cli_person_in_context(
    indexed: flows.IndexSummary, suite: dict[str, ServiceProcess]
) -> None:
    out = io.StringIO()
    argv = ["search", "-c", ARCHIVE, "--person", "Vladimir_Putin", "--text", "a summit"]
    code = cli.main([*argv, "--unlabelled", *addresses(suite)], out=out)
    assert code == 0
    assert "(unlabelled: identified)" in out.getvalue()
    assert "Andre_Agassi" not in out.getvalue()


def addresses(services: dict[str, ServiceProcess]) -> list[str]:
    return [arg for name, svc in services.items() for arg in (f"--{name}", svc.address)]


def test_a_collection_without_context_is_refused_saying_what_to_index(
    fs: FacesearchClient,
    archive: Path,
    suite: dict[str, ServiceProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = "context-none"
    flows.ensure_collection(fs, name)  # a caption field, but no caption will be stored
    folder = archive / "Andre_Agassi"
    flows.index_folder(fs, folder, name, media_root=archive, person_from_dir=True, captions=False)
    with pytest.raises(grpc.RpcError) as err:
        flows.search_person_in_context(fs, name, "Andre_Agassi", "tennis")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "index caption" in err.value.details()
    argv = ["search", "-c", name, "--person", "Andre_Agassi", "--text", "tennis"]
    assert cli.main([*argv, *addresses(suite)], out=io.StringIO()) == 1
    assert "FAILED_PRECONDITION" in capsys.readouterr().err

    bare = "context-no-text-field"
    flows.ensure_collection(fs, bare, with_text_field=False)
    flows.index_folder(fs, folder, bare, media_root=archive, person_from_dir=True)
    with pytest.raises(CollectionMismatch, match="no text field"):
        flows.search_person_in_context(fs, bare, "Andre_Agassi", "tennis")
    argv = ["search", "-c", bare, "--person", "Andre_Agassi", "--text", "tennis"]
    assert cli.main([*argv, *addresses(suite)], out=io.StringIO()) == 1
    assert "Index the photos with their captions" in capsys.readouterr().err
