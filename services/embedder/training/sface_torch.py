"""SFace as a trainable PyTorch module, rebuilt from the shipped ONNX graph and its weights.

onnx2torch would do this, but it imports torchvision, whose PyPI wheel is a CUDA build that
fails beside the CPU torch here (STACK.md). SFace's graph is a plain chain of eight operator
kinds (normalise, Conv/BatchNorm/PReLU blocks, BatchNorm, Dropout, Flatten, Gemm, BatchNorm),
so it is rebuilt node by node from the graph itself and its initialisers are copied in; any
other operator is refused rather than guessed. ``check_against_onnx`` proves the result.

The Dropout (p 0.4) sits on the last feature map, which is where CoReFace draws its two views:
``feature_map`` and ``embed`` expose the two halves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn
from torch.nn import functional as F

SUPPORTED = {"Sub", "Mul", "Conv", "BatchNormalization", "PRelu", "Dropout", "Flatten", "Gemm"}


class Affine(nn.Module):
    """(x - shift) * scale with fixed scalars: the graph's own input normalisation."""

    def __init__(self, shift: float, scale: float) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(shift, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) * self.scale


class SFaceNet(nn.Module):
    """Input: RGB, 0..255 float, NCHW 112x112 (as the ONNX ``data``); output: the 128-d
    embedding before L2 normalisation (as the ONNX ``fc1``)."""

    def __init__(self, features: nn.Sequential, dropout: float, head: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.dropout = dropout
        self.head = head

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def embed(self, fmap: torch.Tensor, drop: bool) -> torch.Tensor:
        """The embedding of a feature map; ``drop`` draws a fresh dropout mask (a view)."""
        return self.head(F.dropout(fmap, self.dropout, training=drop))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.feature_map(x), drop=self.training)

    def conv_layers(self) -> list[nn.Conv2d]:
        return [m for m in self.features if isinstance(m, nn.Conv2d)]


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _param(array: np.ndarray) -> nn.Parameter:
    return nn.Parameter(torch.from_numpy(np.array(array, dtype=np.float32)))


def _conv(node: onnx.NodeProto, w: dict[str, np.ndarray]) -> nn.Conv2d:
    a = _attrs(node)
    weight = w[node.input[1]]
    pads = list(a.get("pads", [0, 0, 0, 0]))  # type: ignore[call-overload]
    if pads[:2] != pads[2:]:
        raise ValueError(f"{node.name or node.output[0]}: asymmetric padding {pads}")
    group = int(a.get("group", 1))  # type: ignore[call-overload]
    conv = nn.Conv2d(
        weight.shape[1] * group,
        weight.shape[0],
        kernel_size=tuple(weight.shape[2:]),
        stride=tuple(a.get("strides", [1, 1])),  # type: ignore[call-overload]
        padding=tuple(pads[:2]),
        dilation=tuple(a.get("dilations", [1, 1])),  # type: ignore[call-overload]
        groups=group,
        bias=len(node.input) > 2,
    )
    conv.weight = _param(weight)
    if len(node.input) > 2:
        conv.bias = _param(w[node.input[2]])
    return conv


def _batchnorm(node: onnx.NodeProto, w: dict[str, np.ndarray], rank: int) -> nn.Module:
    a = _attrs(node)
    gamma, beta, mean, var = (w[n] for n in node.input[1:5])
    cls = nn.BatchNorm2d if rank == 4 else nn.BatchNorm1d
    # ONNX's momentum weighs the old running value; torch's weighs the new one.
    bn = cls(
        len(gamma),
        eps=float(a.get("epsilon", 1e-5)),  # type: ignore[arg-type]
        momentum=1.0 - float(a.get("momentum", 0.9)),  # type: ignore[arg-type]
    )
    bn.weight, bn.bias = _param(gamma), _param(beta)
    bn.running_mean.copy_(torch.from_numpy(np.array(mean, dtype=np.float32)))
    bn.running_var.copy_(torch.from_numpy(np.array(var, dtype=np.float32)))
    return bn


def _prelu(node: onnx.NodeProto, w: dict[str, np.ndarray]) -> nn.PReLU:
    slope = w[node.input[1]].reshape(-1)
    prelu = nn.PReLU(len(slope))
    prelu.weight = _param(slope)
    return prelu


def from_onnx(path: Path) -> SFaceNet:
    """The network of an SFace-shaped ONNX file (a chain ending Dropout, Flatten, Gemm,
    BatchNorm), with its weights, in eval mode."""
    model = onnx.load(str(path))
    w = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in w]
    if len(inputs) != 1:
        raise ValueError(f"{path}: expected one image input, found {inputs}")
    current, rank = inputs[0], 4
    before: list[nn.Module] = []
    after: list[nn.Module] = []
    dropout: float | None = None
    pending_shift: float | None = None
    for node in model.graph.node:
        if node.op_type not in SUPPORTED:
            raise ValueError(f"{path}: operator {node.op_type} is not part of SFace's chain")
        if node.input[0] != current:
            raise ValueError(f"{path}: node {node.output[0]} does not follow {current}")
        out = before if dropout is None else after
        if node.op_type == "Sub":
            pending_shift = float(w[node.input[1]].reshape(-1)[0])
        elif node.op_type == "Mul":
            if pending_shift is None:
                raise ValueError(f"{path}: Mul without the preceding Sub")
            out.append(Affine(pending_shift, float(w[node.input[1]].reshape(-1)[0])))
        elif node.op_type == "Conv":
            out.append(_conv(node, w))
        elif node.op_type == "BatchNormalization":
            out.append(_batchnorm(node, w, rank))
        elif node.op_type == "PRelu":
            out.append(_prelu(node, w))
        elif node.op_type == "Dropout":
            dropout = float(_attrs(node).get("ratio", 0.5))  # type: ignore[arg-type]
        elif node.op_type == "Flatten":
            out.append(nn.Flatten(1))
            rank = 2
        elif node.op_type == "Gemm":
            a = _attrs(node)
            weight = w[node.input[1]]
            if not a.get("transB", 0):
                weight = weight.T
            linear = nn.Linear(weight.shape[1], weight.shape[0], bias=len(node.input) > 2)
            linear.weight = _param(weight)
            if len(node.input) > 2:
                linear.bias = _param(w[node.input[2]])
            out.append(linear)
        current = node.output[0]
    if dropout is None:
        raise ValueError(f"{path}: no Dropout on the last feature map (not SFace's layout)")
    return SFaceNet(nn.Sequential(*before), dropout, nn.Sequential(*after)).eval()


def check_against_onnx(net: SFaceNet, path: Path, images: np.ndarray) -> float:
    """Lowest cosine between the network's and onnxruntime's embeddings of ``images``
    (N x 3 x 112 x 112, RGB 0..255); the network is put in eval mode first, because a
    training-mode BatchNorm uses batch statistics and gives other vectors."""
    import onnxruntime as ort

    net.eval()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # the shipped file lists its weights as inputs; ort warns
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    fixed_batch = session.get_inputs()[0].shape[0] == 1  # the shipped file: batch 1
    batch = images.astype(np.float32)
    if fixed_batch:
        expected = np.concatenate([session.run(None, {name: x[None]})[0] for x in batch])
    else:
        expected = session.run(None, {name: batch})[0]
    with torch.no_grad():
        got = net(torch.from_numpy(batch)).numpy()
    cos = (got * expected).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1))
    return float(cos.min())
