"""YuNet through the encoder runtimes (face_detection_runtime.py + yunet_decode.py) finds the
faces OpenCV's FaceDetectorYN finds, on real photos (LFW, in-the-wild CelebA with several faces
and sizes over 640 px), through onnxruntime in-process and through a real Triton server
(PyTriton's, hosting the same file); the embeddings downstream agree; a waiting detector stops
when its call ends; the setting picks the path.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import grpc
import numpy as np
import onnxruntime as ort
import pytest
from pydantic import ValidationError

from facesearch_contract.v1 import embedder_pb2 as pb
from facesearch_contract.v1 import embedder_service_pb2_grpc as pb_grpc
from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder import yunet_decode
from facesearch_server.embedder.backends.local import LocalRuntime
from facesearch_server.embedder.call_stop import CallStop, CallStopped
from facesearch_server.embedder.face_detection import Detection, FaceDetector
from facesearch_server.embedder.face_detection_runtime import RuntimeFaceDetector
from facesearch_server.embedder.pipeline import DetectionSettings, FacePipeline
from facesearch_server.embedder.settings import EmbedderSettings
from harness.service_process import ServiceProcess, free_port, start_service
from tests.embedder.conftest import MAX_BATCH, embedder_env, shared_data
from tests.embedder.test_triton_backend import PyTritonServer

# In-the-wild CelebA photos where YuNet finds 2-4 faces at the default threshold.
CELEBA_GROUPS = ("001598.jpg", "003427.jpg", "005069.jpg", "009981.jpg")
MIN_IOU = 0.95
MAX_LANDMARK_PX = 1.0
MAX_EMBEDDING_DIFF = 1e-3


def real_photos() -> list[Path]:
    """40 LFW photos spread over the folder (about a fifth show a second face) and 12
    in-the-wild CelebA photos (sizes up to a few thousand px, some with several faces)."""
    lfw = sorted((shared_data("lfw") / "lfw").glob("*/*.jpg"))[:2000:50]
    wild_dir = shared_data("celeba_wild") / "img_celeba"
    wild = sorted(wild_dir.glob("*.jpg"))
    picked = [wild_dir / n for n in CELEBA_GROUPS] + wild[:: max(1, len(wild) // 8)][:8]
    return lfw + picked


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / (aw * ah + bw * bh - inter)


def assert_same_faces(expected: list[Detection], got: list[Detection], what: str) -> None:
    assert len(got) == len(expected), f"{what}: {len(got)} faces, OpenCV found {len(expected)}"
    for e, g in zip(expected, got, strict=True):
        assert iou(e.box, g.box) >= MIN_IOU, f"{what}: box {g.box} vs OpenCV's {e.box}"
        assert np.abs(e.landmarks - g.landmarks).max() < MAX_LANDMARK_PX, what
        assert abs(e.score - g.score) < 1e-3, what


@pytest.fixture(scope="module")
def local_runtime(model_dir: Path) -> LocalRuntime:
    runtime = LocalRuntime(model_dir)
    runtime.load()
    return runtime


def test_decode_pads_and_orders_anchors_as_opencv_does() -> None:
    blob = yunet_decode.to_blob(np.full((250, 250, 3), 7, np.uint8))
    assert blob.shape == (1, 3, 256, 256) and blob.dtype == np.uint8
    assert blob[0, :, :250, :250].min() == 7 and blob[0, :, 250:, :].max() == 0
    col, row, stride = yunet_decode.anchors(256, 320)
    assert len(col) == 32 * 40 + 16 * 20 + 8 * 10
    # Stride 8's grid row by row first: anchor 41 is row 1, column 1.
    assert (col[41], row[41], stride[41]) == (1, 1, 8)
    with pytest.raises(ValueError, match="anchors of 16 values"):
        yunet_decode.decode(np.zeros((10, 16), np.float32), (256, 320), 0.6, 0.3, 5000)


@pytest.mark.slow
def test_runtime_detector_finds_what_opencv_finds_on_real_photos(
    local_runtime: LocalRuntime,
) -> None:
    opencv, runtime = FaceDetector(), RuntimeFaceDetector(local_runtime)
    faces = multi = large = 0
    for path in real_photos():
        bgr = cv2.imread(str(path))
        expected = opencv.detect(bgr, 0.6, 0.0, 64)
        assert_same_faces(expected, runtime.detect(bgr, 0.6, 0.0, 64), path.name)
        faces += len(expected)
        multi += len(expected) > 1
        large += max(bgr.shape[:2]) > 640
    # Not vacuous: several faces per photo, and photos shrunk before detection.
    assert faces >= 60 and multi >= 8 and large >= 4, (faces, multi, large)


@pytest.mark.slow
def test_embeddings_downstream_agree(local_runtime: LocalRuntime) -> None:
    """The whole pipeline (detect, align, embed) with either detector gives the same vectors;
    the runtime detector here goes through the event loop as in the service."""
    images = [p.read_bytes() for p in real_photos()[::4]]
    settings = DetectionSettings()
    with_opencv = FacePipeline(local_runtime, detector=FaceDetector())
    with_runtime = FacePipeline(local_runtime, detector=RuntimeFaceDetector(local_runtime))
    a = with_opencv.embed_images_sync(images, settings)
    b = with_runtime.embed_images_sync(images, settings)
    compared = 0
    for x, y in zip(a, b, strict=True):
        assert not isinstance(x, Exception) and not isinstance(y, Exception)
        assert len(x.faces) == len(y.faces)
        for fx, fy in zip(x.faces, y.faces, strict=True):
            assert fx.embedding is not None and fy.embedding is not None
            assert np.abs(fx.embedding - fy.embedding).max() < MAX_EMBEDDING_DIFF
            compared += 1
    assert compared >= 12


class NeverAnswers:
    """A runtime whose inference never returns (a hung server)."""

    name = "triton"
    specs = dict(mf.ENCODERS)

    async def infer(self, model_id: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def ready(self, model_id: str) -> bool:
        return True


def test_a_waiting_detector_stops_when_its_call_ends() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        detector = RuntimeFaceDetector(NeverAnswers())  # type: ignore[arg-type]
        asyncio.run_coroutine_threadsafe(detector.start(), loop).result(5)
        image = np.zeros((120, 160, 3), np.uint8)
        start = time.monotonic()
        with pytest.raises(CallStopped, match="deadline"):
            detector.detect(image, 0.6, 0.0, 8, CallStop(time_remaining=0.3))
        assert time.monotonic() - start < 1.5
        # From the loop's own thread it would wait on itself: refused with what to do.
        refused = asyncio.run_coroutine_threadsafe(_detect_on_loop(detector, image), loop)
        with pytest.raises(RuntimeError, match="worker"):
            refused.result(5)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


async def _detect_on_loop(detector: RuntimeFaceDetector, image: np.ndarray) -> None:
    detector.detect(image, 0.6, 0.0, 8)


def test_the_setting_picks_the_detector(model_dir: Path) -> None:
    def on_runtime(**values: str) -> bool:
        return EmbedderSettings(model_dir=str(model_dir), **values).detector_on_runtime()

    assert not on_runtime(backend="local")
    assert on_runtime(backend="triton")  # auto: no model on the embedder's CPU
    assert on_runtime(backend="local", detector_runtime="runtime")
    assert not on_runtime(backend="triton", detector_runtime="OpenCV")
    with pytest.raises(ValidationError, match="detector_runtime"):
        EmbedderSettings(model_dir=str(model_dir), detector_runtime="gpu")
    # No CUDA provider in this onnxruntime: refused at start-up, not a quiet CPU fall-back.
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ValidationError, match="install onnxruntime-gpu"):
            EmbedderSettings(model_dir=str(model_dir), ort_device="cuda")
    else:
        assert on_runtime(backend="local", ort_device="cuda")


# -- through the service: local runtime and Triton, against the OpenCV service ----------------


def detect_over_grpc(stub: pb_grpc.EmbedderStub, images: list[bytes]) -> list[pb.ImageResult]:
    results: list[pb.ImageResult] = []
    for i in range(0, len(images), MAX_BATCH):  # the shared service's request limit
        chunk = images[i : i + MAX_BATCH]
        request = pb.EmbedImagesRequest(images=[pb.ImageInput(data=d) for d in chunk])
        results += stub.EmbedImages(request, timeout=120).results
    return results


def assert_same_results(expected: list[pb.ImageResult], got: list[pb.ImageResult]) -> int:
    compared = 0
    for e, g in zip(expected, got, strict=True):
        assert not e.error_code and not g.error_code, (e.error_message, g.error_message)
        assert len(g.faces) == len(e.faces)
        for fe, fg in zip(e.faces, g.faces, strict=True):
            box_e = (fe.box.x, fe.box.y, fe.box.width, fe.box.height)
            box_g = (fg.box.x, fg.box.y, fg.box.width, fg.box.height)
            assert iou(box_e, box_g) >= MIN_IOU
            le = np.array([(p.x, p.y) for p in fe.landmarks])
            lg = np.array([(p.x, p.y) for p in fg.landmarks])
            assert np.abs(le - lg).max() < MAX_LANDMARK_PX
            diff = np.abs(np.array(fe.embedding.values) - np.array(fg.embedding.values)).max()
            assert diff < MAX_EMBEDDING_DIFF
            compared += 1
    return compared


def detector_info(stub: pb_grpc.EmbedderStub) -> pb.ModelInfo:
    models = stub.ListModels(pb.ListModelsRequest(), timeout=10).models
    (info,) = [m for m in models if m.kind == pb.MODEL_KIND_FACE_DETECTOR]
    return info


@pytest.fixture(scope="module")
def photos() -> list[bytes]:
    return [p.read_bytes() for p in real_photos()[::3]]


@pytest.mark.slow
def test_service_on_the_local_runtime_detects_as_opencv(stub, photos: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    svc = start_service("embedder", embedder_env(detector_runtime="runtime"), timeout=120)
    try:
        runtime_stub = pb_grpc.EmbedderStub(svc.channel())
        assert (
            assert_same_results(
                detect_over_grpc(stub, photos), detect_over_grpc(runtime_stub, photos)
            )
            >= 12
        )
        info = detector_info(runtime_stub)
        assert info.model_id == mf.YUNET and info.backend == "local" and info.ready
    finally:
        svc.stop()


TRITON_TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def triton_embedder(model_dir: Path) -> Iterator[tuple[PyTritonServer, ServiceProcess]]:
    server = PyTritonServer(free_port(), model_dir)
    server.start()
    # detector_runtime left at auto: with the triton backend YuNet runs on Triton.
    env = embedder_env(backend="triton", triton_url=server.url, triton_timeout_s=TRITON_TIMEOUT_S)
    svc = start_service("embedder", env, timeout=120)
    yield server, svc
    svc.stop()
    server.stop()


@pytest.mark.slow
def test_service_on_triton_detects_as_opencv(
    stub,  # type: ignore[no-untyped-def]
    triton_embedder: tuple[PyTritonServer, ServiceProcess],
    photos: list[bytes],
) -> None:
    triton_stub = pb_grpc.EmbedderStub(triton_embedder[1].channel())
    info = detector_info(triton_stub)
    assert info.model_id == mf.YUNET and info.backend == "triton" and info.ready
    expected = detect_over_grpc(stub, photos)
    assert assert_same_results(expected, detect_over_grpc(triton_stub, photos)) >= 12
    # A stream goes through the same preparation threads.
    stream = triton_stub.EmbedImagesStream(
        iter([pb.EmbedStreamRequest(image=pb.ImageInput(data=d)) for d in photos[:4]]),
        timeout=120,
    )
    assert assert_same_results(expected[:4], list(stream)) >= 4


@pytest.mark.slow
def test_a_triton_outage_stops_detection_with_unavailable_in_time(
    triton_embedder: tuple[PyTritonServer, ServiceProcess], photos: list[bytes]
) -> None:
    """Runs last here: it stops the Triton server."""
    server, svc = triton_embedder
    triton_stub = pb_grpc.EmbedderStub(svc.channel())
    server.stop()
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        detect_over_grpc(triton_stub, photos[:1])
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "yunet-2023mar" in err.value.details() and "retry later" in err.value.details()
    assert time.monotonic() - start <= TRITON_TIMEOUT_S + 2.0
    # Several images: each says so in its own result, none is silently faceless.
    results = detect_over_grpc(triton_stub, photos[:2])
    assert [r.error_code for r in results] == [grpc.StatusCode.UNAVAILABLE.value[0]] * 2
    assert not detector_info(triton_stub).ready
