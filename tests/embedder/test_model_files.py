"""The exported encoders are faithful, and the Triton repository names what the files hold."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnxruntime as ort

from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.pipeline import DetectionSettings, FacePipeline, to_model_input
from facesearch_server.embedder.triton_repository import write_repository
from tests.embedder.conftest import package_photos

ORT_TYPES = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(uint8)": "uint8"}


def session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def test_batched_sface_equals_the_shipped_file_face_by_face(model_dir: Path) -> None:
    pipe = FacePipeline.local(model_dir)
    crops = [
        pipe.prepare_image(p.read_bytes(), DetectionSettings()).faces[0].aligned
        for p in package_photos()[:5]
    ]
    batch = to_model_input(crops)
    shipped = session(mf.sface_source())
    one_by_one = np.concatenate([shipped.run(None, {"data": x[None]})[0] for x in batch])
    batched = session(mf.encoder_path(mf.SFACE_SPEC, model_dir)).run(None, {"data": batch})[0]
    assert batched.shape == (5, 128)
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-4, atol=1e-4)


def test_exported_files_have_the_declared_tensors_and_a_dynamic_batch(model_dir: Path) -> None:
    for spec in mf.ENCODERS.values():
        s = session(mf.encoder_path(spec, model_dir))
        inputs = {i.name: i for i in s.get_inputs()}
        assert list(inputs) == [t.name for t in spec.inputs]
        for t in spec.inputs:
            assert ORT_TYPES[inputs[t.name].type] == t.dtype
            assert isinstance(inputs[t.name].shape[0], str)  # symbolic batch
            assert len(inputs[t.name].shape) == 1 + len(t.dims)
        (out,) = s.get_outputs()
        # A symbolic dimension (YuNet's anchors) is -1 in the table.
        dims = [d if isinstance(d, int) else -1 for d in out.shape[1:]]
        assert out.name == spec.output.name and dims == list(spec.output.dims)


def test_triton_repository_matches_the_model_files(model_dir: Path, tmp_path: Path) -> None:
    written = write_repository(tmp_path, model_dir, max_batch=32)
    assert {p.relative_to(tmp_path).as_posix() for p in written} == {
        "sface-2021dec/config.pbtxt",
        "sface-2021dec/card.json",
        "sface-2021dec/1/model.onnx",
        "minilm-l6-v2/config.pbtxt",
        "minilm-l6-v2/card.json",
        "minilm-l6-v2/1/model.onnx",
        "celeba-attr-sface-v1/config.pbtxt",
        "celeba-attr-sface-v1/card.json",
        "celeba-attr-sface-v1/1/model.onnx",
        "tgfr-fusion-sface-minilm-v1/config.pbtxt",
        "tgfr-fusion-sface-minilm-v1/card.json",
        "tgfr-fusion-sface-minilm-v1/1/model.onnx",
        "yunet-2023mar/config.pbtxt",
        "yunet-2023mar/card.json",
        "yunet-2023mar/1/model.onnx",
    }
    for spec in mf.ENCODERS.values():
        config = (tmp_path / spec.model_id / "config.pbtxt").read_text()
        assert f'name: "{spec.model_id}"' in config
        assert 'backend: "onnxruntime"' in config and "max_batch_size: 32" in config
        assert "dynamic_batching" in config and "KIND_GPU" in config
        declared = re.findall(r'name: "(\w+)" data_type: (\w+) dims: \[ ([-\d, ]+) \]', config)
        onnx_file = session(tmp_path / spec.model_id / "1" / "model.onnx")
        actual = [(i.name, i.type) for i in onnx_file.get_inputs()] + [
            (o.name, o.type) for o in onnx_file.get_outputs()
        ]
        triton_to_ort = {
            "TYPE_FP32": "tensor(float)",
            "TYPE_INT64": "tensor(int64)",
            "TYPE_UINT8": "tensor(uint8)",
        }
        assert [(n, triton_to_ort[t]) for n, t, _ in declared] == actual
        dims = [tuple(int(d) for d in ds.split(",")) for _, _, ds in declared]
        assert dims == [t.dims for t in (*spec.inputs, spec.output)]


def test_checked_in_configs_are_what_the_generator_writes(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2] / "deploy" / "triton" / "model_repository"
    write_repository(tmp_path, copy_weights=False)
    for spec in mf.ENCODERS.values():
        for name in (f"{spec.model_id}/config.pbtxt", f"{spec.model_id}/card.json"):
            assert (repo / name).read_text() == (tmp_path / name).read_text(), (
                f"{name} is stale: run python -m facesearch_server.embedder.triton_repository "
                "--out deploy/triton/model_repository --configs-only"
            )


def test_service_exports_missing_model_files_on_first_start(
    model_dir: Path, tmp_path: Path
) -> None:
    from facesearch_contract.v1 import embedder_pb2 as pb
    from facesearch_contract.v1 import embedder_service_pb2_grpc as pb_grpc
    from harness.service_process import running_service
    from tests.embedder.conftest import embedder_env

    fresh = tmp_path / "models"
    fresh.mkdir()
    # MiniLM takes ~15 s of CPU to export: link it; SFace (the cheap one) must be made on start.
    (fresh / mf.MINILM_SPEC.file_name).symlink_to(mf.encoder_path(mf.MINILM_SPEC, model_dir))
    env = {**embedder_env(), "FACESEARCH_EMBEDDER_MODEL_DIR": str(fresh)}
    with running_service("embedder", env, timeout=120) as svc:
        assert mf.encoder_path(mf.SFACE_SPEC, fresh).stat().st_size > 30_000_000
        stub = pb_grpc.EmbedderStub(svc.channel())
        request = pb.EmbedImagesRequest(
            images=[pb.ImageInput(data=package_photos()[0].read_bytes())]
        )
        assert len(stub.EmbedImages(request, timeout=60).results[0].faces) == 1
