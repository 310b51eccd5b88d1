"""The triton backend against a real Triton server (PyTriton's tritonserver on CPU, hosting the
same ONNX files under the production names and tensors; see pytriton_server.py).

Checks that both backends compute the same vectors (a fine-tuned face encoder's too: the
server hosts trained_model_dir, the shipped files plus one fine-tuned model), that an
unreachable Triton is UNAVAILABLE within the configured timeout, and that the embedder recovers
by itself once Triton is back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from facesearch_contract.v1 import embedder_pb2 as pb
from facesearch_contract.v1 import embedder_service_pb2_grpc as pb_grpc
from facesearch_server.embedder import model_files as mf
from harness.service_process import ServiceProcess, free_port, start_service
from tests.embedder.conftest import REPO, embedder_env, package_photos
from tests.embedder.trained_model import TRAINED_ID

pytestmark = pytest.mark.slow
TRITON_TIMEOUT_S = 3.0


class PyTritonServer:
    """harness/pytriton_server.py as a subprocess (its own process group: PyTriton
    starts tritonserver as a child, and both must go when we stop it)."""

    def __init__(self, grpc_port: int, model_dir: Path) -> None:
        self.grpc_port = grpc_port
        self.model_dir = model_dir
        self.url = f"127.0.0.1:{grpc_port}"
        self.log = Path(tempfile.mkdtemp(prefix="pytriton-")) / "pytriton.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 180.0) -> None:
        import tritonclient.grpc as tc

        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "harness.pytriton_server",
                    f"--grpc-port={self.grpc_port}",
                    f"--http-port={free_port()}",
                    f"--metrics-port={free_port()}",
                    f"--model-dir={self.model_dir}",
                ],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
        client = tc.InferenceServerClient(self.url)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"pytriton exited: {self.log.read_text()[-3000:]}")
            try:
                if all(client.is_model_ready(m) for m in mf.served_encoders(self.model_dir)):
                    return
            except Exception:  # not listening yet
                pass
            time.sleep(0.5)
        self.stop()
        raise AssertionError(f"pytriton not ready in {timeout_s} s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        # tritonserver (same group) may outlive the Python parent while it unloads models.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def triton_server(trained_model_dir: Path) -> Iterator[PyTritonServer]:
    server = PyTritonServer(free_port(), trained_model_dir)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def triton_embedder(triton_server: PyTritonServer) -> Iterator[ServiceProcess]:
    # model_dir: where this embedder finds the fine-tuned model's card (Triton has its weights).
    env = embedder_env(
        backend="triton",
        triton_url=triton_server.url,
        triton_timeout_s=TRITON_TIMEOUT_S,
        model_dir=triton_server.model_dir,
        # Both embedders detect alike, so the encoders alone are compared here. YuNet through
        # Triton (the default with this backend) is compared with OpenCV's in
        # test_detector_runtime.py: its landmarks differ by float rounding, which moves a few
        # crop pixels and attribute probabilities by ~5e-4, over this file's 1e-4.
        detector_runtime="opencv",
    )
    svc = start_service("embedder", env, timeout=120)
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def triton_stub(triton_embedder: ServiceProcess) -> pb_grpc.EmbedderStub:
    return pb_grpc.EmbedderStub(triton_embedder.channel())


def face_vectors(stub, images: list[bytes]) -> np.ndarray:  # type: ignore[no-untyped-def]
    reply = stub.EmbedImages(
        pb.EmbedImagesRequest(images=[pb.ImageInput(data=d) for d in images]), timeout=60
    )
    return np.stack([np.asarray(r.faces[0].embedding.values) for r in reply.results])


TEXTS = ["a woman with red hair", "an elderly man wearing a hat at a press conference"]


def text_vectors(stub) -> np.ndarray:  # type: ignore[no-untyped-def]
    reply = stub.EmbedText(pb.EmbedTextRequest(texts=TEXTS), timeout=60)
    return np.stack([np.asarray(e.values) for e in reply.embeddings])


def test_triton_and_local_backends_give_the_same_embeddings(stub, triton_stub) -> None:
    images = [p.read_bytes() for p in package_photos()[:6]]
    faces_t, faces_l = face_vectors(triton_stub, images), face_vectors(stub, images)
    assert (faces_t * faces_l).sum(1).min() >= 0.999
    texts_t, texts_l = text_vectors(triton_stub), text_vectors(stub)
    assert (texts_t * texts_l).sum(1).min() >= 0.999
    models = triton_stub.ListModels(pb.ListModelsRequest(), timeout=10).models
    encoders = [m for m in models if m.kind != pb.MODEL_KIND_FACE_DETECTOR]
    assert {m.model_id for m in encoders} == {
        "sface-2021dec",
        TRAINED_ID,
        "minilm-l6-v2",
        "celeba-attr-sface-v1",
        "tgfr-fusion-sface-minilm-v1",
    }
    assert all(m.backend == "triton" and m.ready for m in encoders)


def test_a_fine_tuned_face_model_is_served_alike_by_both_backends(
    trained_embedder, triton_stub
) -> None:  # type: ignore[no-untyped-def]
    """The same fine-tuned ONNX file through Triton and in-process: equal vectors, named by
    its id, listed with its card; its attributes still come from SFace."""
    local_stub = pb_grpc.EmbedderStub(trained_embedder.channel())
    request = pb.EmbedImagesRequest(
        images=[pb.ImageInput(data=p.read_bytes()) for p in package_photos()[:4]],
        model_id=TRAINED_ID,
    )
    local = [r.faces[0] for r in local_stub.EmbedImages(request, timeout=60).results]
    remote = [r.faces[0] for r in triton_stub.EmbedImages(request, timeout=60).results]
    assert {f.model_id for f in local} == {f.model_id for f in remote} == {TRAINED_ID}
    a, b = (np.stack([np.asarray(f.embedding.values) for f in faces]) for faces in (local, remote))
    assert (a * b).sum(1).min() >= 0.999
    # Attributes within 2e-3: the crops may differ in the last digits between the backends.
    for x, y in zip(local, remote, strict=True):
        assert np.allclose(x.attributes.probabilities, y.attributes.probabilities, atol=2e-3)
    # Different from SFace through Triton too: the request reached the fine-tuned model.
    sface = face_vectors(triton_stub, [i.data for i in request.images])
    assert (a * sface).sum(1).max() < 0.99
    models = triton_stub.ListModels(pb.ListModelsRequest(), timeout=10).models
    (info,) = [m for m in models if m.model_id == TRAINED_ID]
    assert info.kind == pb.MODEL_KIND_FACE_ENCODER and info.trained_from == "sface-2021dec"
    assert info.ready and not info.is_default and info.calibration_pending


def test_triton_and_local_backends_give_the_same_attributes(stub, triton_stub) -> None:
    """The attribute model (Face.attributes) and the description reader (EmbedText, role
    DESCRIPTION) answer the same through Triton as in-process."""
    request = pb.EmbedImagesRequest(
        images=[pb.ImageInput(data=p.read_bytes()) for p in package_photos()[:6]]
    )
    local = stub.EmbedImages(request, timeout=60).results
    remote = triton_stub.EmbedImages(request, timeout=60).results
    for a, b in zip(local, remote, strict=True):
        pa, pb_ = a.faces[0].attributes, b.faces[0].attributes
        assert pa.model_id == pb_.model_id == "celeba-attr-sface-v1"
        assert len(pa.probabilities) == 14
        assert np.allclose(pa.probabilities, pb_.probabilities, atol=1e-4)
        assert np.allclose(pa.vector.values, pb_.vector.values, atol=1e-3)
    # Not a constant model: the six faces (men and women) do not all get the same answer.
    male = [r.faces[0].attributes.probabilities[0] for r in local]
    assert max(male) - min(male) > 0.3
    described = pb.EmbedTextRequest(
        texts=["an older man with glasses and no beard"], role=pb.TEXT_ROLE_DESCRIPTION
    )
    ev_l = stub.EmbedText(described, timeout=60).descriptions[0]
    ev_t = triton_stub.EmbedText(described, timeout=60).descriptions[0]
    assert [(e.name, e.present) for e in ev_l.evidence] == [
        (e.name, e.present) for e in ev_t.evidence
    ]
    assert np.allclose(ev_l.query_vector.values, ev_t.query_vector.values)


def test_triton_and_local_backends_give_the_same_fused_probe(stub, triton_stub) -> None:
    """The learned description fusion (FuseDescription) answers the same through Triton as
    in-process: the same ONNX file, on the same face and description."""
    request = pb.EmbedImagesRequest(
        images=[pb.ImageInput(data=p.read_bytes()) for p in package_photos()[:3]]
    )
    faces = [r.faces[0] for r in stub.EmbedImages(request, timeout=60).results]
    for face, text in zip(faces, [*TEXTS, "an older man with glasses and no beard"], strict=True):
        fuse = pb.FuseDescriptionRequest(
            embedding=face.embedding,
            face_model_id=face.model_id,
            quality=face.quality.score,
            description=text,
        )
        local, remote = (
            stub.FuseDescription(fuse, timeout=60),
            triton_stub.FuseDescription(fuse, timeout=60),
        )
        assert local.model_id == remote.model_id == "tgfr-fusion-sface-minilm-v1"
        assert np.allclose(local.fused.values, remote.fused.values, atol=1e-5)
        assert abs(local.description_weight - remote.description_weight) < 1e-5
        assert local.description_weight > 0


def test_unreachable_triton_is_unavailable_in_time_then_recovers(
    triton_server: PyTritonServer, triton_stub
) -> None:
    image = package_photos()[0].read_bytes()
    face_vectors(triton_stub, [image])  # works before the outage
    triton_server.stop()

    for call in (lambda: text_vectors(triton_stub), lambda: face_vectors(triton_stub, [image])):
        start = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            call()
        elapsed = time.monotonic() - start
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "retry later" in err.value.details()
        assert elapsed <= TRITON_TIMEOUT_S + 2.0
    models = triton_stub.ListModels(pb.ListModelsRequest(), timeout=10).models
    assert not any(m.ready for m in models if m.backend == "triton")

    triton_server.start()  # same port; the embedder process is not touched
    deadline = time.monotonic() + 30
    while True:
        try:
            vectors = text_vectors(triton_stub)
            break
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() < deadline, "embedder did not recover within 30 s"
            time.sleep(0.5)
    assert vectors.shape == (2, 384)
    assert face_vectors(triton_stub, [image]).shape == (1, 128)
