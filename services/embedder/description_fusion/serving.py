"""FuseDescription (embedder_service.proto): checks a request against what the fusion model
was trained on, encodes the description with the text model it reads, and runs the model
through the embedder's runtime (onnxruntime in-process or Triton: the same ONNX file)."""

from __future__ import annotations

import math

import numpy as np

from facesearch_contract.limits import max_bytes
from facesearch_contract.v1 import common_pb2 as common
from facesearch_contract.v1 import embedder_pb2 as pb
from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.backends.base import EncoderRuntime
from facesearch_server.embedder.description_fusion import names as fn
from facesearch_server.embedder.text_encoding import TextEncoder
from facesearch_server.runtime.errors import FailedPrecondition, InvalidArgument

MAX_DESCRIPTION_BYTES = max_bytes(pb.FuseDescriptionRequest, "description")


class DescriptionFusionServer:
    """One fusion model (``model_id``; empty = none served), bound to one face and one text
    model (model_files.DESCRIPTION_FUSION_INPUT_MODELS)."""

    def __init__(
        self, runtime: EncoderRuntime, text: TextEncoder, model_id: str, default_face_model: str
    ) -> None:
        if model_id and model_id not in mf.DESCRIPTION_FUSION_INPUT_MODELS:
            raise ValueError(
                f"description fusion model {model_id!r} is unknown; served ones: "
                f"{', '.join(mf.DESCRIPTION_FUSION_INPUT_MODELS)}"
            )
        self.runtime = runtime
        self.model_id = model_id
        self.default_face_model = default_face_model
        face, text_model = mf.DESCRIPTION_FUSION_INPUT_MODELS.get(model_id, ("", ""))
        self.face_model, self.text_model = face, text_model
        if model_id and text.model_id != text_model:
            raise ValueError(
                f"{model_id} reads {text_model} description vectors; the text encoder is "
                f"{text.model_id}"
            )
        self.text = text

    def _check(self, request: pb.FuseDescriptionRequest) -> np.ndarray:
        if not self.model_id:
            raise FailedPrecondition(
                "this embedder serves no description fusion model (its "
                "description_fusion_model setting is empty): set it to "
                f"{fn.FUSION_MODEL!r}, or search with attribute fusion"
            )
        if request.model_id and request.model_id != self.model_id:
            raise InvalidArgument(
                "model_id",
                f"{request.model_id!r} is not a description fusion model served here; "
                f"use {self.model_id!r} or leave it empty",
            )
        face_model = request.face_model_id or self.default_face_model
        if face_model != self.face_model:
            raise InvalidArgument(
                "face_model_id",
                f"{face_model!r}{' (the server default)' if not request.face_model_id else ''}"
                f" is not the face model {self.model_id} was trained on: it reads "
                f"{self.face_model!r} embeddings only",
            )
        values = np.asarray(request.embedding.values, dtype=np.float32)
        if values.shape != (fn.FACE_DIM,):
            raise InvalidArgument(
                "embedding",
                f"has {values.size} values; {self.face_model} embeddings have {fn.FACE_DIM}",
            )
        norm = float(np.linalg.norm(values))
        if not math.isfinite(norm) or norm == 0:
            raise InvalidArgument("embedding", "is zero or not finite: send Face.embedding")
        quality = request.quality
        if not 0 <= quality <= 1:  # NaN fails too
            raise InvalidArgument("quality", f"is {quality}; it must be in [0, 1]")
        if not request.description.strip():
            raise InvalidArgument("description", "is empty: describe the face in a few words")
        if len(request.description.encode()) > MAX_DESCRIPTION_BYTES:
            raise InvalidArgument(
                "description", f"is over {MAX_DESCRIPTION_BYTES:,} bytes of UTF-8: shorten it"
            )
        return values / norm

    async def fuse(self, request: pb.FuseDescriptionRequest) -> pb.FuseDescriptionResponse:
        face = self._check(request)
        # The token limit is the text encoder's; its error names "description[0]".
        text = await self.text.embed([request.description], field="description")
        out = await self.runtime.infer(
            self.model_id,
            {
                "embedding": face[None, :],
                "quality": np.array([[request.quality]], dtype=np.float32),
                "text": np.asarray(text, dtype=np.float32),
            },
        )
        fused, weight = fn.split_output(np.asarray(out, dtype=np.float32))
        return pb.FuseDescriptionResponse(
            fused=common.Vector(values=fused[0].tolist()),
            description_weight=float(weight[0]),
            model_id=self.model_id,
            face_model_id=self.face_model,
            text_model_id=self.text_model,
        )

    def model_info(self, backend: str, ready: bool, max_batch: int, card_json: str) -> pb.ModelInfo:
        return pb.ModelInfo(
            model_id=self.model_id,
            kind=pb.MODEL_KIND_DESCRIPTION_FUSION,
            dimension=fn.FACE_DIM,
            backend=backend,
            ready=ready,
            is_default=True,
            max_batch=max_batch,
            card_json=card_json,
        )
