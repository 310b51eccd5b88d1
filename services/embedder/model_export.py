"""Produce the encoder ONNX files every backend serves, from the installed packages only.

- SFace ships with its batch dimension fixed to 1. Its graph is batch-agnostic apart from the
  declared shapes (Flatten + Gemm, no Reshape to a literal batch), so re-declaring dimension 0
  as symbolic is faithful; the export checks that a batch gives the same vectors as one face at
  a time through the original file before it writes anything.
- YuNet ships with its input fixed to 1x3x640x640 and twelve outputs. OpenCV re-declares the
  input shape per image; the runtimes cannot, so the export makes batch, height and width
  symbolic (its Reshapes copy the batch instead of a literal 1; its Resizes go by scale), takes
  the pixels as uint8 (cast to float inside; OpenCV's blob holds the same integer values) and
  joins the outputs into one tensor (model_files.YUNET_SPEC), checked against the shipped file.
- all-MiniLM-L6-v2 is exported from its bundled weights with mean pooling and L2 normalisation
  inside the graph, so a backend returns the final sentence vector; checked against the
  PyTorch model.

``python -m facesearch_server.embedder.model_export --out DIR``; the service runs the same
code on its first start when files are missing.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from facesearch_server.embedder import model_cards
from facesearch_server.embedder import model_files as mf

log = logging.getLogger("facesearch.embedder.export")

# onnx >= 1.23 writes IR 14 by default, which onnxruntime 1.31 (and Triton's) refuse.
ONNX_IR_VERSION = 10
MINILM_OPSET = 14


def _atomic_write(data: bytes, path: Path) -> None:
    # Several replicas may start on one volume at once: never expose a half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _session(model: bytes | str):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def sface_dynamic_batch() -> bytes:
    """SFace with a symbolic batch dimension, verified against the shipped file."""
    import onnx

    model = onnx.load(str(mf.sface_source()))
    init_names = {i.name for i in model.graph.initializer}
    # Old exporters list weights as graph inputs; a server would expose them as overridable
    # inputs, so keep only the real one.
    real_inputs = [i for i in model.graph.input if i.name not in init_names]
    del model.graph.input[:]
    model.graph.input.extend(real_inputs)
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    del model.graph.value_info[:]  # stale per-node shapes with batch 1
    model.ir_version = min(model.ir_version, ONNX_IR_VERSION)
    onnx.checker.check_model(model)
    data = model.SerializeToString()

    (inp,) = mf.SFACE_SPEC.inputs
    if [i.name for i in model.graph.input] != [inp.name] or [
        o.name for o in model.graph.output
    ] != [mf.SFACE_SPEC.output.name]:
        raise RuntimeError("the shipped SFace file has unexpected tensor names")
    rng = np.random.default_rng(7)
    batch = rng.uniform(0, 255, size=(5, *inp.dims)).astype(np.float32)
    original = _session(str(mf.sface_source()))
    looped = np.concatenate([original.run(None, {inp.name: x[None]})[0] for x in batch])
    batched = _session(data).run(None, {inp.name: batch})[0]
    if not np.allclose(looped, batched, rtol=1e-4, atol=1e-4):
        raise RuntimeError(
            "SFace with a dynamic batch differs from the shipped model "
            f"(max abs diff {np.abs(looped - batched).max():.2e}); keep batch 1 and loop"
        )
    return data


def yunet_dynamic() -> bytes:
    """YuNet with a symbolic batch, height and width and one output, verified against the
    shipped file at its own 640x640 size."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(mf.yunet_source()))
    graph = model.graph
    (inp,) = mf.YUNET_SPEC.inputs
    if [i.name for i in graph.input] != [inp.name]:
        raise RuntimeError("the shipped YuNet file has unexpected inputs")
    # Pixels travel as bytes (a quarter of FP32 to Triton) and become floats in the graph.
    pixels = f"{inp.name}_float"
    for node in graph.node:
        node.input[:] = [pixels if i == inp.name else i for i in node.input]
    graph.node.insert(0, helper.make_node("Cast", [inp.name], [pixels], to=onnx.TensorProto.FLOAT))
    del graph.input[:]
    graph.input.append(
        helper.make_tensor_value_info(
            inp.name, onnx.TensorProto.UINT8, ["batch", 3, "height", "width"]
        )
    )
    # Each head ends in Reshape(x, [1, -1, C]); 0 copies the batch dimension instead.
    inits = {i.name: i for i in graph.initializer}
    fixed: set[str] = set()
    for node in graph.node:
        if node.op_type != "Reshape" or node.input[1] in fixed or node.input[1] not in inits:
            continue
        shape = numpy_helper.to_array(inits[node.input[1]]).copy()
        if shape.shape != (3,) or shape[0] != 1:
            raise RuntimeError(f"unexpected YuNet reshape {shape.tolist()}")
        shape[0] = 0
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(shape, node.input[1]))
        fixed.add(node.input[1])
    heads = ("cls", "obj", "bbox", "kps")
    strides = (8, 16, 32)
    names = [o.name for o in graph.output]
    if sorted(names) != sorted(f"{h}_{s}" for h in heads for s in strides):
        raise RuntimeError(f"the shipped YuNet file has unexpected outputs {names}")
    out = mf.YUNET_SPEC.output.name
    for s in strides:  # per stride: (batch, anchors, 1 + 1 + 4 + 10)
        graph.node.append(
            helper.make_node("Concat", [f"{h}_{s}" for h in heads], [f"rows_{s}"], axis=2)
        )
    graph.node.append(helper.make_node("Concat", [f"rows_{s}" for s in strides], [out], axis=1))
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info(
            out, onnx.TensorProto.FLOAT, ["batch", "anchors", len(mf.YUNET_COLUMNS)]
        )
    )
    del graph.value_info[:]  # stale per-node shapes of the 640x640 graph
    model.ir_version = min(model.ir_version, ONNX_IR_VERSION)
    onnx.checker.check_model(model)
    data = model.SerializeToString()

    rng = np.random.default_rng(7)
    batch = rng.integers(0, 256, size=(2, 3, 640, 640), dtype=np.uint8)
    original = _session(str(mf.yunet_source()))

    def shipped_rows(image: np.ndarray) -> np.ndarray:
        feed = {inp.name: image[None].astype(np.float32)}
        outs = dict(zip(names, original.run(names, feed), strict=True))
        return np.concatenate(
            [np.concatenate([outs[f"{h}_{s}"] for h in heads], 2) for s in strides], 1
        )

    expected = np.concatenate([shipped_rows(x) for x in batch])
    session = _session(data)
    got = session.run(None, {inp.name: batch})[0]
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-4, atol=1e-4):
        raise RuntimeError(
            "YuNet with symbolic shapes differs from the shipped model at 640x640 "
            f"(shapes {got.shape} / {expected.shape})"
        )
    # Another size (a multiple of 32, as the detector pads to) must give one row per anchor.
    other = session.run(None, {inp.name: batch[:1, :, :352, :480]})[0]
    anchors = sum((352 // s) * (480 // s) for s in strides)
    if other.shape != (1, anchors, len(mf.YUNET_COLUMNS)):
        raise RuntimeError(f"YuNet at 352x480 gave {other.shape}, not (1, {anchors}, 16)")
    return data


def minilm_onnx() -> bytes:
    """all-MiniLM-L6-v2 (transformer + mean pooling + L2 norm) as ONNX, verified."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import onnx
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(str(mf.minilm_source()), local_files_only=True).eval()

    class SentenceEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> torch.Tensor:
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    encoder = SentenceEncoder().eval()
    tok = Tokenizer.from_file(str(mf.tokenizer_file()))
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    samples = [
        "a man with glasses speaking at a podium",
        "smiling woman with long blond hair",
        "archive photo",
    ]
    enc = tok.encode_batch(samples)
    feeds = {
        "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
    }
    args = tuple(torch.from_numpy(feeds[t.name]) for t in mf.MINILM_SPEC.inputs)
    names = [t.name for t in mf.MINILM_SPEC.inputs]
    out_name = mf.MINILM_SPEC.output.name
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "minilm.onnx"
        with torch.no_grad():
            expected = encoder(*args).numpy()
            torch.onnx.export(
                encoder,
                args,
                str(path),
                input_names=names,
                output_names=[out_name],
                dynamic_axes={
                    **{n: {0: "batch", 1: "sequence"} for n in names},
                    out_name: {0: "batch"},
                },
                opset_version=MINILM_OPSET,
                dynamo=False,
            )
        model = onnx.load(str(path))
    model.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    got = _session(data).run(None, feeds)[0]
    cos = (got * expected).sum(1)
    if got.shape != (len(samples), mf.MINILM_SPEC.dimension) or cos.min() < 0.9999:
        raise RuntimeError(f"MiniLM ONNX export differs from PyTorch (cosine {cos.min():.5f})")
    return data


def attributes_onnx() -> bytes:
    """The attribute model as shipped (trained offline by attributes/train.py), checked to
    load and to give one probability per attribute."""
    data = mf.attributes_source().read_bytes()
    rng = np.random.default_rng(7)
    feeds = {
        t.name: rng.uniform(0, 255, size=(3, *t.dims)).astype(np.float32)
        for t in mf.ATTRIBUTES_SPEC.inputs
    }
    got = _session(data).run(None, feeds)[0]
    if got.shape != (3, mf.ATTRIBUTES_SPEC.dimension) or not ((got >= 0) & (got <= 1)).all():
        raise RuntimeError(f"the shipped attribute model gives {got.shape}, not probabilities")
    return data


def description_fusion_onnx() -> bytes:
    """The description fusion model as shipped (trained offline by
    description_fusion/train.py), checked to load and to give a unit fused probe and a
    non-negative weight per row."""
    from facesearch_server.embedder.description_fusion import names as fn

    data = mf.description_fusion_source().read_bytes()
    rng = np.random.default_rng(7)
    feeds = {
        t.name: rng.normal(size=(3, *t.dims)).astype(np.float32)
        for t in mf.DESCRIPTION_FUSION_SPEC.inputs
    }
    feeds["quality"] = rng.uniform(size=(3, 1)).astype(np.float32)
    out = _session(data).run(None, feeds)[0]
    if out.shape != (3, fn.OUTPUT_DIM):
        raise RuntimeError(f"the shipped description fusion model gives {out.shape}")
    fused, weight = fn.split_output(out)
    if not (np.allclose(np.linalg.norm(fused, axis=1), 1, atol=1e-4) and (weight >= 0).all()):
        raise RuntimeError("the shipped description fusion model gives no unit probe")
    return data


def export_all(out: Path, only_missing: bool = False) -> list[Path]:
    """Write every encoder file into ``out``; returns the paths written."""
    makers = {
        mf.SFACE: sface_dynamic_batch,
        mf.MINILM: minilm_onnx,
        mf.ATTRIBUTES: attributes_onnx,
        mf.DESCRIPTION_FUSION: description_fusion_onnx,
        mf.YUNET: yunet_dynamic,
    }
    written = []
    for spec in mf.ENCODERS.values():
        path = mf.encoder_path(spec, out)
        if only_missing and spec not in mf.missing_encoders(out):
            continue
        log.info("exporting model", extra={"model_id": spec.model_id, "path": str(path)})
        _atomic_write(makers[spec.model_id](), path)
        written.append(path)
    # The model card travels with the file: a model dir copied elsewhere keeps its thresholds.
    for spec in mf.ENCODERS.values():
        card = model_cards.card_path(spec.model_id)
        beside = model_cards.card_beside(mf.encoder_path(spec, out))
        if card.exists() and (not beside.exists() or beside.read_bytes() != card.read_bytes()):
            _atomic_write(card.read_bytes(), beside)
            written.append(beside)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=mf.DEFAULT_MODEL_DIR, help="directory for the .onnx files")
    parser.add_argument("--only-missing", action="store_true", help="keep files already there")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path in export_all(Path(args.out), args.only_missing):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
