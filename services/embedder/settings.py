"""The embedder's settings: the common keys plus its own (file section ``embedder`` or
``FACESEARCH_EMBEDDER_<KEY>``). Tabled in services/embedder/README.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from facesearch_contract.limits import max_items, value_range
from facesearch_contract.v1 import embedder_pb2 as pb
from facesearch_server.embedder.model_files import (
    DEFAULT_MODEL_DIR,
    DESCRIPTION_FUSION,
    DESCRIPTION_FUSION_INPUT_MODELS,
    SFACE,
    face_encoders,
    served_encoders,
)
from facesearch_server.embedder.pixel_budget import PixelLimits
from facesearch_server.runtime.settings import (
    DEFAULT_METRICS_PORTS,
    DEFAULT_PORTS,
    ServiceSettings,
    metrics_port_field,
    port_field,
)


class EmbedderSettings(ServiceSettings):
    service_name: ClassVar[str] = "embedder"

    port: int = port_field(DEFAULT_PORTS["embedder"])
    metrics_port: int = metrics_port_field(DEFAULT_METRICS_PORTS["embedder"])
    backend: Literal["local", "triton"] = Field(
        "local", description="`local` (onnxruntime in-process) or `triton`"
    )
    model_dir: str = Field(
        DEFAULT_MODEL_DIR,
        description="exported encoder files (local backend); missing ones are exported on "
        "start. Fine-tuned face encoders in it (`<id>.onnx` + `<id>.card.json`) are served too; "
        "with `triton` it holds their cards only",
    )
    face_model: str = Field(
        SFACE,
        description="default face encoder (requests' empty `model_id`): the shipped one or a "
        "fine-tuned one in `model_dir`",
    )
    image_text_model: str = Field(
        "",
        description="image-text (CLIP-architecture) model to serve, imported into `model_dir` "
        "by `clip_import` (`<id>.card.json`, tokenizer and, for `local`, both ONNX towers): "
        "scene vectors (`with_scene`) and its text vectors; empty = none",
    )
    description_fusion_model: str = Field(
        DESCRIPTION_FUSION,
        description="learned description fusion model served by `FuseDescription` (TGFR; "
        "shipped in the package, trained on `sface-2021dec` and `minilm-l6-v2` vectors); "
        "empty = none (`FuseDescription` answers FAILED_PRECONDITION)",
    )
    triton_url: str = Field("127.0.0.1:8001", description="Triton gRPC address")
    triton_timeout_s: float = Field(
        5.0, gt=0, description="total budget per Triton call, retries included; then UNAVAILABLE"
    )
    triton_retries: int = Field(
        3, ge=0, description="attempts after the first, with backoff, within the budget"
    )
    # Operators may lower the contract's ceilings (embedder.proto), never raise them.
    max_batch: int = Field(
        64,
        gt=0,
        le=max_items(pb.EmbedImagesRequest, "images"),
        description="images or crops per request (over: RESOURCE_EXHAUSTED)",
    )
    max_text_batch: int = Field(
        256,
        gt=0,
        le=max_items(pb.EmbedTextRequest, "texts"),
        description="texts per request (over: RESOURCE_EXHAUSTED)",
    )
    encoder_max_batch: int = Field(
        64, gt=0, description="largest batch sent to the encoder in one call"
    )
    ort_threads: int = Field(
        0, ge=0, description="onnxruntime intra-op threads, 0 = all cores (local backend)"
    )
    ort_device: Literal["cpu", "cuda"] = Field(
        "cpu",
        description="where the local backend runs its models: `cuda` = onnxruntime's CUDA "
        "provider (onnxruntime-gpu on a GPU host; refused at start-up where unavailable)",
    )
    ort_spinning: bool = Field(
        False,
        description="let onnxruntime's idle workers spin (steals CPU from decoding and gRPC "
        "on a small machine)",
    )
    prepare_workers: int = Field(2, gt=0, description="threads for decode/detect/align")
    stream_window: int = Field(
        16, gt=0, description="images a stream reads ahead of its oldest unanswered one"
    )
    max_image_bytes: int = Field(
        20 * 1024 * 1024, gt=0, description="encoded images larger than this are refused"
    )
    max_image_pixels: int = Field(
        40_000_000, gt=0, description="images with more pixels are refused (read from the header)"
    )
    # What decoding may cost (pixel_budget.py; README "Limits"): ~10 bytes and ~25 ns of CPU
    # per pixel here, whatever the file's size.
    max_request_pixels: int = Field(
        PixelLimits.max_request_pixels,
        gt=0,
        description="decoded pixels (width x height from the headers) one request's images may "
        "add up to; over: RESOURCE_EXHAUSTED before decoding",
    )
    max_inflight_pixels: int = Field(
        PixelLimits.max_inflight_pixels,
        gt=0,
        description="pixels admitted and not yet prepared, all calls together; a call that "
        "does not fit waits its turn, then RESOURCE_EXHAUSTED",
    )
    pixel_queue_timeout_s: float = Field(
        PixelLimits.queue_timeout_s,
        ge=0,
        description="longest wait for room in `max_inflight_pixels` (never past 90% of the "
        "caller's deadline); 0 = refuse at once when full",
    )
    trim_after_mb: int = Field(
        PixelLimits.trim_after_mb,
        ge=0,
        description="after this many MB of images received or decoded, once none is in flight, "
        "hand freed memory back to the OS (glibc `malloc_trim`); 0 = never",
    )
    detect_max_side: int = Field(
        640,
        gt=0,
        description="large photos are detected on a copy this size, aligned from full resolution",
    )
    detector_runtime: Literal["auto", "opencv", "runtime"] = Field(
        "auto",
        description="where YuNet runs: `opencv` (in-process on CPU, OpenCV's FaceDetectorYN), "
        "`runtime` (the backend's: onnxruntime in-process, or Triton), `auto` = `runtime` with "
        "`triton` or `ort_device: cuda` (no model on the embedder's CPU on a GPU host), else "
        "`opencv`",
    )
    max_faces: int = Field(
        64,
        gt=0,
        le=value_range(pb.DetectionOptions, "max_faces")[1],
        description="default: most faces returned per image",
    )
    min_face_size: float = Field(16.0, ge=0, description="default: smallest face side, pixels")
    score_threshold: float = Field(
        0.6, ge=0, le=1, description="default: lowest detection score kept"
    )

    @model_validator(mode="after")
    def _pixel_limits_nest(self) -> EmbedderSettings:
        # Each limit must admit what the one inside it allows, or an acceptable image or
        # request could never be served.
        if not self.max_image_pixels <= self.max_request_pixels <= self.max_inflight_pixels:
            raise ValueError(
                "the pixel limits must nest, max_image_pixels <= max_request_pixels <= "
                f"max_inflight_pixels; they are {self.max_image_pixels:,}, "
                f"{self.max_request_pixels:,} and {self.max_inflight_pixels:,}"
            )
        return self

    def detector_on_runtime(self) -> bool:
        """Whether YuNet runs through the encoder runtime (else OpenCV in-process)."""
        if self.detector_runtime == "auto":  # no model on the CPU where the encoders are not
            return self.backend == "triton" or self.ort_device == "cuda"
        return self.detector_runtime == "runtime"

    def pixel_limits(self) -> PixelLimits:
        return PixelLimits(
            max_request_pixels=self.max_request_pixels,
            max_inflight_pixels=self.max_inflight_pixels,
            queue_timeout_s=self.pixel_queue_timeout_s,
            trim_after_mb=self.trim_after_mb,
        )

    @field_validator("face_model")
    @classmethod
    def _face_model_served(cls, value: str, info: ValidationInfo) -> str:
        # Read from the model dir as the runtime will read it, so a typo or a model not copied
        # there stops the start with the list of what is there, not the first request.
        model_dir, backend = info.data.get("model_dir"), info.data.get("backend")
        if model_dir is None or backend is None:
            return value  # those keys failed themselves; their errors are reported
        served = face_encoders(served_encoders(Path(model_dir), weights=backend == "local"))
        if value not in served:
            trained = "<id>.card.json" if backend == "triton" else "<id>.onnx and <id>.card.json"
            raise ValueError(
                f"is not a face encoder served here; available: {', '.join(served)} (a "
                f"fine-tuned one needs {trained} in model_dir {model_dir})"
            )
        return value

    @field_validator("description_fusion_model")
    @classmethod
    def _fusion_model_known(cls, value: str) -> str:
        if value and value not in DESCRIPTION_FUSION_INPUT_MODELS:
            raise ValueError(
                f"is not a description fusion model; available: "
                f"{', '.join(DESCRIPTION_FUSION_INPUT_MODELS)}, or empty for none"
            )
        return value

    @field_validator("image_text_model")
    @classmethod
    def _image_text_model_there(cls, value: str, info: ValidationInfo) -> str:
        # Checked at start, as face_model is: a typo or a half-copied model dir stops the
        # service with what is there, not the first scene request.
        model_dir, backend = info.data.get("model_dir"), info.data.get("backend")
        if not value or model_dir is None or backend is None:
            return value
        from facesearch_server.embedder.image_text import load_card

        try:
            load_card(Path(model_dir), value, weights=backend == "local")
        except (FileNotFoundError, ValueError) as exc:
            raise ValueError(str(exc)) from exc
        return value

    @field_validator("ort_device")
    @classmethod
    def _ort_device_present(cls, value: str) -> str:
        # At start-up, with what to install, not as a silent fall back to the CPU.
        if value == "cuda":
            import onnxruntime as ort

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ValueError(
                    f"onnxruntime {ort.__version__} has no CUDA provider here (it has "
                    f"{', '.join(ort.get_available_providers())}): install onnxruntime-gpu "
                    "matching the host's CUDA, or set ort_device: cpu"
                )
        return value

    @field_validator("backend", "detector_runtime", "ort_device", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value
