"""Scene vectors against the real services: an embedder serving an image-text model (the tiny
random-weight CLIP of tests/embedder/tiny_clip.py, imported by the import command) gives every
indexed photo a scene vector, stored on each of its faces in the collection's "scene" field; a
text query then matches pixels (ranked exactly as open_clip's own vectors rank the photos),
fused with captions, and a person in a context is ranked by both. A collection with neither
captions nor scene vectors is still refused with FAILED_PRECONDITION."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from facesearch import FacesearchClient, flows, messages
from facesearch.core import context_terms
from facesearch.errors import FacesearchError
from facesearch_contract.v1 import common_pb2, embedder_pb2, retriever_pb2
from facesearch_server.embedder.model_export import export_all
from harness.service_process import ServiceProcess, start_suite, stop_suite
from tests.embedder import tiny_clip
from tests.embedder.conftest import MODEL_DIR, package_photos

from .conftest import settings_of
from .context_fixtures import copy_to, lfw_photos, write_iptc

# Subprocesses that import open_clip (~30-50 s each here) and services that start: slow.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
MODEL_ID = tiny_clip.MODEL_ID
WIMBLEDON = "a tennis player serving on the grass court at Wimbledon"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny model with an Id-CLIP translator (trained on tiny_clip's synthetic task): a
    text without the placeholder gives the same vector as without the translator."""
    export_all(MODEL_DIR, only_missing=True)
    tiny, models, _ = tiny_clip.identity_trained(tiny_clip.shared_base(tmp_path_factory), MODEL_DIR)
    return tiny, models


@pytest.fixture(scope="module")
def clip_suite(
    prepared: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServiceProcess]]:
    env = {
        "FACESEARCH_EMBEDDER_MODEL_DIR": str(prepared[1]),
        "FACESEARCH_EMBEDDER_IMAGE_TEXT_MODEL": MODEL_ID,
    }
    started = start_suite(tmp_path_factory.mktemp("scene-suite"), env=env)
    yield started
    stop_suite(started)


@pytest.fixture(scope="module")
def fs(clip_suite: dict[str, ServiceProcess]) -> Iterator[FacesearchClient]:
    with FacesearchClient(settings_of(clip_suite)) as client:
        yield client


def reference(prepared: tuple[Path, Path]) -> dict[str, np.ndarray]:
    with np.load(prepared[0] / "reference.npz") as ref:
        return {k: ref[k] for k in ref.files}


def describe(fs: FacesearchClient, name: str) -> retriever_pb2.CollectionInfo:
    request = retriever_pb2.DescribeCollectionRequest(collection=name)
    return fs.retriever.DescribeCollection(request).collection


@pytest.fixture(scope="module")
def scenes(
    fs: FacesearchClient, prepared: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> flows.IndexSummary:
    """The package photos open_clip's reference covers, indexed without captions."""
    folder = tmp_path_factory.mktemp("scene-photos")
    by_name = {p.name: p for p in package_photos()}
    for name in reference(prepared)["photos"]:
        shutil.copy(by_name[str(name)], folder / str(name))
    flows.ensure_collection(fs, "scenes")
    return flows.index_folder(fs, folder, "scenes", captions=False)


def test_a_collection_gets_a_scene_field_and_every_face_its_photos_vector(
    fs: FacesearchClient, scenes: flows.IndexSummary
) -> None:
    info = describe(fs, "scenes")
    (scene,) = [f for f in info.vector_fields if f.name == messages.SCENE_FIELD]
    assert (scene.model_id, scene.dimension) == (MODEL_ID, 32)
    stats = {s.name: s.vectors for s in info.field_stats}
    assert scenes.faces > 0 and stats[messages.SCENE_FIELD] == scenes.faces
    assert scenes.without_scene == 0 and scenes.scene_note == ""


def test_a_text_query_matches_pixels_as_open_clip_ranks_them(
    fs: FacesearchClient, scenes: flows.IndexSummary, prepared: tuple[Path, Path]
) -> None:
    """No caption was indexed: the query is matched by scene vectors alone, and the photos
    come in the order open_clip's PyTorch vectors put them, with the same cosines."""
    ref = reference(prepared)
    names = [str(n) for n in ref["photos"]]
    for text, text_vec in zip(tiny_clip.TEXTS, ref["texts"], strict=True):
        hits = flows.search_by_text(fs, "scenes", text, k=scenes.faces)
        cosines = ref["images"] @ text_vec
        order = [names[i] for i in np.argsort(-cosines)]
        media = list(dict.fromkeys(str(h.metadata["media_id"]) for h in hits))
        assert media == order[: len(media)] and len(media) == len(names)
        for h in hits:
            expected = float(cosines[names.index(str(h.metadata["media_id"]))])
            assert h.term_scores == pytest.approx((expected,), abs=1e-4)


@pytest.fixture(scope="module")
def archive(fs: FacesearchClient, tmp_path_factory: pytest.TempPathFactory) -> str:
    """LFW photos of two people, labelled by folder; two of Agassi's photos captioned."""
    root = tmp_path_factory.mktemp("scene-archive")
    agassi = [copy_to(p, root / "Andre_Agassi") for p in lfw_photos("Andre_Agassi", 4)]
    for p in lfw_photos("Aaron_Peirsol", 4):
        copy_to(p, root / "Aaron_Peirsol")
    write_iptc(agassi[0], caption=WIMBLEDON)
    write_iptc(agassi[1], caption="eating dinner with friends")
    flows.ensure_collection(fs, "scene-archive")
    summary = flows.index_folder(fs, root, "scene-archive", person_from_dir=True)
    assert summary.errors == [] and summary.without_scene == 0
    return "scene-archive"


def test_captions_and_scene_vectors_fuse_for_a_person_in_context(
    fs: FacesearchClient, archive: str
) -> None:
    found = flows.search_person_in_context(fs, "scene-archive", "Andre_Agassi", WIMBLEDON, k=10)
    assert found.used == [context_terms.CAPTIONS, context_terms.SCENE]
    assert found and all(h.metadata["person_id"] == "Andre_Agassi" for h in found)
    # Photos without a caption are ranked by their pixels now instead of being left out.
    media = {str(h.metadata["media_id"]) for h in found}
    assert len(media) == 4
    for h in found:
        caption, scene = h.term_scores
        assert h.score == pytest.approx(caption + scene, abs=1e-5)
        assert (caption != 0) == ("caption" in h.metadata)
    assert found[0].metadata.get("caption") == WIMBLEDON  # the caption term dominates here


def test_neither_captions_nor_scene_vectors_is_refused(
    fs: FacesearchClient, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("no-context")
    shutil.copy(package_photos()[0], folder)
    flows.ensure_collection(fs, "no-context", with_scene_field=False)
    flows.index_folder(fs, folder, "no-context", captions=False)
    with pytest.raises(grpc.RpcError) as err:
        flows.search_by_text(fs, "no-context", "a man in a suit")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "index caption vectors" in err.value.details()


def test_the_embedder_lists_the_image_text_model(fs: FacesearchClient) -> None:
    models = fs.embedder.ListModels(embedder_pb2.ListModelsRequest()).models
    (model,) = [m for m in models if m.kind == embedder_pb2.MODEL_KIND_IMAGE_TEXT_ENCODER]
    assert (model.model_id, model.dimension, model.ready) == (MODEL_ID, 32, True)


def test_an_older_collection_is_back_filled_with_scene_vectors(
    fs: FacesearchClient, prepared: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A collection indexed before the image-text model existed (no scene field): refused,
    then `backfill --field scene` adds the field and gives every face its photo's vector."""
    folder = tmp_path_factory.mktemp("late-scene")
    ref = reference(prepared)
    by_name = {p.name: p for p in package_photos()}
    for name in ref["photos"]:
        shutil.copy(by_name[str(name)], folder / str(name))
    flows.ensure_collection(fs, "late-scene", with_scene_field=False)
    indexed = flows.index_folder(fs, folder, "late-scene", captions=False)
    with pytest.raises(grpc.RpcError) as err:
        flows.search_by_text(fs, "late-scene", tiny_clip.TEXTS[0])
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    summary = flows.backfill(fs, "late-scene", field=messages.SCENE_FIELD)
    assert summary.field_added and summary.filled == indexed.faces
    assert summary.unmatched == [] and summary.errors == []
    hits = flows.search_by_text(fs, "late-scene", tiny_clip.TEXTS[0], k=indexed.faces)
    names = [str(n) for n in ref["photos"]]
    cosines = ref["images"] @ ref["texts"][0]
    for h in hits:
        expected = float(cosines[names.index(str(h.metadata["media_id"]))])
        assert h.term_scores == pytest.approx((expected,), abs=1e-4)


def test_the_identity_token_names_the_person_in_the_scene_query(
    fs: FacesearchClient, archive: str
) -> None:
    """With --identity-token the scene term's query is "sks <context>" with the person's mean
    labelled face as the token: each hit's scene score is its scene vector's cosine with
    exactly that text vector, which differs from the plain context's."""
    person, context = "Andre_Agassi", WIMBLEDON
    found = flows.search_person_in_context(
        fs, "scene-archive", person, context, k=10, identity_token=True
    )
    assert found.used == [context_terms.CAPTIONS, context_terms.SCENE] and found
    search = messages.search_request(
        "scene-archive",
        [messages.person_term("face", person)],
        k=100,
        where={"person_id": person},
        with_vectors=True,
    )
    hits = fs.retriever.Search(search).results[0].hits
    mean = np.mean([list(h.vectors["face"].values) for h in hits], axis=0)
    named = fs.embedder.EmbedText(
        embedder_pb2.EmbedTextRequest(
            texts=[f"sks {context}"],
            model_id=MODEL_ID,
            identities=[common_pb2.Vector(values=(mean / np.linalg.norm(mean)).tolist())],
        )
    ).embeddings[0]
    plain = fs.embedder.EmbedText(
        embedder_pb2.EmbedTextRequest(texts=[context], model_id=MODEL_ID)
    ).embeddings[0]
    assert float(np.dot(named.values, plain.values)) < 0.9999  # the token moved the query
    scenes = {h.id: np.asarray(h.vectors[messages.SCENE_FIELD].values) for h in hits}
    for h in found:
        assert h.term_scores[1] == pytest.approx(float(scenes[h.id] @ named.values), abs=1e-4)
    # A model without a translator, or a person without labelled faces, is said plainly.
    with pytest.raises(FacesearchError, match="no labelled face of 'Nobody'"):
        flows.search_person_in_context(fs, "scene-archive", "Nobody", context, identity_token=True)
