"""The image-text model slot (MODEL_KIND_IMAGE_TEXT_ENCODER), end to end on a tiny
CLIP-architecture model with random weights (tiny_clip.py): its open_clip checkpoint is imported
by the import command as typed, the towers and the embedder's own preprocessing and tokenizer
reproduce open_clip's PyTorch outputs, and the embedder serves it through both backends (the
Triton one on a real Triton server, harness/pytriton_server.py). Bad input: a checkpoint of
another architecture, a file that is no checkpoint, an unknown architecture, a model that is not
there, a text over the context length, scene vectors asked of an embedder without the model.

open_clip runs only in subprocesses (it brings its own torchvision; open_clip_env.py says why).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from facesearch_contract.v1 import embedder_pb2 as pb
from facesearch_contract.v1 import embedder_service_pb2_grpc as pb_grpc
from facesearch_server.embedder import image_text
from facesearch_server.embedder.clip_tokenizer import ClipTokenizer
from facesearch_server.embedder.triton_repository import write_repository
from harness.service_process import ServiceProcess, free_port, start_service
from tests.embedder import tiny_clip
from tests.embedder.conftest import embedder_env, package_photos

# Subprocesses that import open_clip (~30-50 s each here) and services that start: slow.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
MODEL_ID = tiny_clip.MODEL_ID
MIN_COSINE = 0.9999


@pytest.fixture(scope="module")
def prepared(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return tiny_clip.prepared(tiny_clip.shared_base(tmp_path_factory), model_dir)


@pytest.fixture(scope="module")
def tiny(prepared: tuple[Path, Path]) -> Path:
    """The tiny checkpoints, their configs and open_clip's reference outputs."""
    return prepared[0]


@pytest.fixture(scope="module")
def clip_dir(prepared: tuple[Path, Path]) -> Path:
    """A model dir: the shipped files linked in, the tiny model imported by the command."""
    return prepared[1]


def reference(tiny: Path) -> dict[str, np.ndarray]:
    with np.load(tiny / "reference.npz") as ref:
        return {k: ref[k] for k in ref.files}


def photos(tiny: Path) -> list[bytes]:
    names = list(reference(tiny)["photos"])
    by_name = {p.name: p for p in package_photos()}
    return [by_name[n].read_bytes() for n in names]


def min_cos(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.asarray(a) * np.asarray(b)).sum(1).min())


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------- the import


def test_import_writes_the_towers_tokenizer_and_card(clip_dir: Path) -> None:
    card = image_text.load_card(clip_dir, MODEL_ID)
    assert (card.dimension, card.image_size, card.context_length) == (32, 32, 16)
    assert card.raw["source"]["arch"] == tiny_clip.ARCH
    assert card.raw["source"]["model_config"] == tiny_clip.CONFIG
    assert len(card.raw["source"]["checkpoint_sha256"]) == 64
    assert card.raw["verification"]["image_min_cosine"] >= MIN_COSINE
    assert card.raw["verification"]["text_min_cosine"] >= MIN_COSINE
    assert card.raw["verification"]["preprocess_max_abs_diff"] <= 1e-5
    # Batch is dynamic in both towers (the runtimes batch requests together).
    for path, name in (
        (clip_dir / image_text.image_file(MODEL_ID), image_text.IMAGE_INPUT),
        (clip_dir / image_text.text_file(MODEL_ID), image_text.TEXT_INPUT),
    ):
        (inp,) = session(path).get_inputs()
        assert inp.name == name and isinstance(inp.shape[0], str)


def test_onnx_towers_with_the_embedders_preprocessing_reproduce_open_clip(
    tiny: Path, clip_dir: Path
) -> None:
    """Pillow preprocessing + the tokenizer file + ONNX = open_clip's whole PyTorch pipeline."""
    card = image_text.load_card(clip_dir, MODEL_ID)
    ref = reference(tiny)
    pixels = np.stack(
        [
            image_text.preprocess(Image.open(p).convert("RGB"), card)
            for p in sorted(package_photos())[: tiny_clip.PHOTOS]
        ]
    )
    images = session(clip_dir / image_text.image_file(MODEL_ID)).run(
        None, {image_text.IMAGE_INPUT: pixels}
    )[0]
    assert min_cos(images, ref["images"]) >= MIN_COSINE
    tokenizer = ClipTokenizer(
        clip_dir / image_text.tokenizer_file(MODEL_ID), card.context_length, card.cleaning
    )
    texts = session(clip_dir / image_text.text_file(MODEL_ID)).run(
        None, {image_text.TEXT_INPUT: tokenizer.encode(tiny_clip.TEXTS)}
    )[0]
    assert min_cos(texts, ref["texts"]) >= MIN_COSINE
    # Random weights still separate inputs: not one constant vector for every image or text.
    assert min_cos(images[:1], images[1:2]) < 0.9999
    assert min_cos(texts[:1], texts[1:2]) < 0.9999


BAD_INPUTS = """
import json, sys
from pathlib import Path
from facesearch_server.embedder.clip_import import ImportRefused, import_checkpoint
tiny, out = Path(sys.argv[1]), Path(sys.argv[2])
(out / "junk.pt").write_text("not a checkpoint")
cases = {
    "other_arch": (tiny / "other-clip.pt", "tiny-clip", tiny / "tiny-clip.json"),
    "not_a_checkpoint": (out / "junk.pt", "tiny-clip", tiny / "tiny-clip.json"),
    "unknown_arch": (tiny / "tiny-clip.pt", "ViT-Q-99", None),
    "missing_file": (out / "absent.pt", "tiny-clip", tiny / "tiny-clip.json"),
}
found = {}
for name, (checkpoint, arch, config) in cases.items():
    try:
        import_checkpoint(checkpoint, arch, "bad-" + name.replace("_", "-"), out, config)
        found[name] = "imported"
    except ImportRefused as exc:
        found[name] = str(exc)
print(json.dumps(found))
"""


def test_bad_checkpoints_are_refused_naming_what_differs(tiny: Path, tmp_path: Path) -> None:
    done = tiny_clip.run("-c", BAD_INPUTS, str(tiny), str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    other = found["other_arch"]
    assert "is not a tiny-clip model" in other
    assert "image size 48 (checkpoint) vs 32 (tiny-clip)" in other
    assert "text width 48 (checkpoint) vs 64 (tiny-clip)" in other
    assert "tensors of other shapes" in other
    assert "token_embedding.weight: checkpoint (49408, 48), tiny-clip (49408, 64)" in other
    assert "not a PyTorch or safetensors state dict" in found["not_a_checkpoint"]
    assert "'ViT-Q-99' is not an open_clip architecture" in found["unknown_arch"]
    assert "no such file" in found["missing_file"]
    assert not list(tmp_path.glob("*.card.json"))  # nothing half-imported


def test_a_model_that_is_not_there_stops_the_embedder_settings(clip_dir: Path) -> None:
    from pydantic import ValidationError

    from facesearch_server.embedder.settings import EmbedderSettings

    with pytest.raises(ValidationError) as err:
        EmbedderSettings(model_dir=str(clip_dir), image_text_model="absent-clip")
    assert "no image-text model 'absent-clip'" in str(err.value)
    assert MODEL_ID in str(err.value)  # what is there
    assert EmbedderSettings(model_dir=str(clip_dir), image_text_model=MODEL_ID)


def test_triton_repository_entries_for_both_towers(clip_dir: Path, tmp_path: Path) -> None:
    written = write_repository(
        tmp_path, clip_dir, max_batch=16, kind="KIND_CPU", image_text_dir=clip_dir
    )
    image_cfg = (tmp_path / f"{MODEL_ID}-image" / "config.pbtxt").read_text()
    text_cfg = (tmp_path / f"{MODEL_ID}-text" / "config.pbtxt").read_text()
    assert 'name: "pixel_values" data_type: TYPE_FP32 dims: [ 3, 32, 32 ]' in image_cfg
    assert 'name: "image_embedding" data_type: TYPE_FP32 dims: [ 32 ]' in image_cfg
    assert 'name: "input_ids" data_type: TYPE_INT64 dims: [ 16 ]' in text_cfg
    assert 'backend: "onnxruntime"' in text_cfg and "max_batch_size: 16" in text_cfg
    for tower in ("image", "text"):
        folder = tmp_path / f"{MODEL_ID}-{tower}"
        assert folder / "1" / "model.onnx" in written
        assert json.loads((folder / "card.json").read_text())["model_id"] == MODEL_ID


# ---------------------------------------------------------------- serving


def embedder_on(clip_dir: Path, **settings: object) -> ServiceProcess:
    env = embedder_env(image_text_model=MODEL_ID, max_text_batch=16, **settings)
    env["FACESEARCH_EMBEDDER_MODEL_DIR"] = str(clip_dir)
    return start_service("embedder", env, timeout=180)


@pytest.fixture(scope="module")
def clip_stub(clip_dir: Path) -> Iterator[pb_grpc.EmbedderStub]:
    svc = embedder_on(clip_dir)
    yield pb_grpc.EmbedderStub(svc.channel())
    svc.stop()


def scene_vectors(stub: pb_grpc.EmbedderStub, images: list[bytes]) -> np.ndarray:
    reply = stub.EmbedImages(
        pb.EmbedImagesRequest(images=[pb.ImageInput(data=d) for d in images], with_scene=True),
        timeout=120,
    )
    for r in reply.results:
        assert r.scene_model_id == MODEL_ID and r.faces  # the faces come too
    return np.stack([np.asarray(r.scene.values) for r in reply.results])


def clip_texts(stub: pb_grpc.EmbedderStub, texts: list[str]) -> np.ndarray:
    reply = stub.EmbedText(pb.EmbedTextRequest(texts=texts, model_id=MODEL_ID), timeout=60)
    assert reply.model_id == MODEL_ID
    return np.stack([np.asarray(e.values) for e in reply.embeddings])


def check_serves_open_clips_vectors(stub: pb_grpc.EmbedderStub, tiny: Path, backend: str) -> None:
    ref = reference(tiny)
    assert min_cos(scene_vectors(stub, photos(tiny)), ref["images"]) >= MIN_COSINE
    assert min_cos(clip_texts(stub, tiny_clip.TEXTS), ref["texts"]) >= MIN_COSINE
    models = stub.ListModels(pb.ListModelsRequest(), timeout=10).models
    (info,) = [m for m in models if m.kind == pb.MODEL_KIND_IMAGE_TEXT_ENCODER]
    assert (info.model_id, info.dimension, info.backend, info.ready) == (
        MODEL_ID,
        32,
        backend,
        True,
    )
    assert json.loads(info.card_json)["text"]["context_length"] == 16


def test_local_backend_serves_open_clips_vectors(clip_stub: pb_grpc.EmbedderStub, tiny) -> None:
    check_serves_open_clips_vectors(clip_stub, tiny, "local")


def test_stream_gives_the_same_scene_vectors(clip_stub: pb_grpc.EmbedderStub, tiny) -> None:
    images = photos(tiny)
    requests = [
        pb.EmbedStreamRequest(image=pb.ImageInput(data=d, media_id=str(i)), with_scene=i == 0)
        for i, d in enumerate(images)
    ]
    results = list(clip_stub.EmbedImagesStream(iter(requests), timeout=120))
    streamed = np.stack([np.asarray(r.scene.values) for r in results])
    assert min_cos(streamed, reference(tiny)["images"]) >= MIN_COSINE
    # Without the flag, no scene vector is computed or sent.
    plain = clip_stub.EmbedImages(
        pb.EmbedImagesRequest(images=[pb.ImageInput(data=images[0])]), timeout=60
    )
    assert not plain.results[0].scene.values and not plain.results[0].scene_model_id


def test_bad_requests_get_clear_errors(clip_stub: pb_grpc.EmbedderStub, stub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        clip_stub.EmbedText(
            pb.EmbedTextRequest(texts=["word " * 20], model_id=MODEL_ID), timeout=30
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "22 tokens" in err.value.details() and "at most 16" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        clip_stub.EmbedText(pb.EmbedTextRequest(texts=["x"], model_id="other-clip"), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert MODEL_ID in err.value.details()
    # The shared embedder serves no image-text model: asking it for scenes is refused.
    image = package_photos()[0].read_bytes()
    with pytest.raises(grpc.RpcError) as err:
        stub.EmbedImages(
            pb.EmbedImagesRequest(images=[pb.ImageInput(data=image)], with_scene=True),
            timeout=30,
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "clip_import" in err.value.details()
    models = stub.ListModels(pb.ListModelsRequest(), timeout=10).models
    assert not [m for m in models if m.kind == pb.MODEL_KIND_IMAGE_TEXT_ENCODER]


@pytest.fixture(scope="module")
def triton_clip_stub(clip_dir: Path) -> Iterator[pb_grpc.EmbedderStub]:
    from tests.embedder.test_triton_backend import PyTritonServer

    server = PyTritonServer(free_port(), clip_dir)
    server.start()
    try:
        import tritonclient.grpc as tc

        client = tc.InferenceServerClient(server.url)
        deadline = time.monotonic() + 60
        towers = image_text.load_card(clip_dir, MODEL_ID).towers()
        while not all(client.is_model_ready(m) for m in towers):
            assert time.monotonic() < deadline, "the towers never became ready on Triton"
            time.sleep(0.5)
        svc = embedder_on(clip_dir, backend="triton", triton_url=server.url)
        try:
            yield pb_grpc.EmbedderStub(svc.channel())
        finally:
            svc.stop()
    finally:
        server.stop()


def test_triton_backend_serves_open_clips_vectors(triton_clip_stub, tiny) -> None:
    check_serves_open_clips_vectors(triton_clip_stub, tiny, "triton")
