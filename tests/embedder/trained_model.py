"""A cheap fine-tuned face encoder for serving tests, made in a second instead of a training
run: SFace's ONNX file with the weights of its last layer perturbed (a different, still
working encoder: its vectors differ from SFace's, so a test can tell which model made one),
under a new id, with the card the training export writes (training/export.py ``card``).

The model dir it is put in links the shipped files too, so a service started on it exports
nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from facesearch_server.embedder import model_cards
from facesearch_server.embedder import model_files as mf

TRAINED_ID = "sface-test-v1"
# Size of the noise added to the last layer (pre_fc1, 128 x 50176), in units of its weights'
# standard deviation: on the package photos SFace and the fixture then agree on the same face
# to a cosine of 0.74-0.91, and the fixture still tells people apart (different people <= 0.45).
NOISE = 3.0


def last_layer_weight(model: onnx.ModelProto) -> onnx.TensorProto:
    """The weight matrix of the node that makes the output (``fc1``) or feeds it, the largest
    2-d initializer used by the last few nodes."""
    initializers = {t.name: t for t in model.graph.initializer}
    for node in reversed(model.graph.node[-6:]):
        weights = [initializers[i] for i in node.input if i in initializers]
        matrices = [w for w in weights if len(w.dims) >= 2]
        if matrices:
            return max(matrices, key=lambda w: int(np.prod(w.dims)))
    raise AssertionError("SFace's last nodes have no weight matrix: the graph changed")


def make_trained_model_dir(dest: Path, source: Path) -> Path:
    """``dest`` with the shipped model files of ``source`` linked in and the fixture model
    ``TRAINED_ID`` (ONNX + card) written; returns ``dest``."""
    from facesearch_server.embedder.training.export import card, json_bytes

    dest.mkdir(parents=True, exist_ok=True)
    for spec in mf.ENCODERS.values():
        for name in (spec.file_name, f"{spec.model_id}{model_cards.CARD_SUFFIX}"):
            if (source / name).exists() and not (dest / name).exists():
                (dest / name).symlink_to((source / name).resolve())
    model = onnx.load(str(mf.encoder_path(mf.SFACE_SPEC, source)))
    weight = last_layer_weight(model)
    values = numpy_helper.to_array(weight).astype(np.float32)
    noise = np.random.default_rng(16).standard_normal(values.shape).astype(np.float32)
    altered = values + NOISE * float(values.std()) * noise
    weight.CopyFrom(numpy_helper.from_array(altered, weight.name))
    onnx_path = dest / f"{TRAINED_ID}.onnx"
    onnx.save(model, str(onnx_path))
    training = {"data": "test fixture: SFace with its last layer perturbed", "steps": 0}
    model_cards.card_beside(onnx_path).write_bytes(json_bytes(card(TRAINED_ID, training, dest)))
    return dest


def read_card(model_dir: Path) -> dict[str, object]:
    return json.loads(model_cards.card_beside(model_dir / f"{TRAINED_ID}.onnx").read_text())
