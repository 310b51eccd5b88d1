"""The embedder's settings: the common keys plus its own (file section ``embedder`` or
``FACESEARCH_EMBEDDER_<KEY>``). Tabled in services/embedder/README.md."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from facesearch_contract.limits import max_items, value_range
from facesearch_contract.v1 import embedder_pb2 as pb
from facesearch_server.embedder.model_files import DEFAULT_MODEL_DIR
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
        description="exported encoder files (local backend); missing ones are exported on start",
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

    def pixel_limits(self) -> PixelLimits:
        return PixelLimits(
            max_request_pixels=self.max_request_pixels,
            max_inflight_pixels=self.max_inflight_pixels,
            queue_timeout_s=self.pixel_queue_timeout_s,
            trim_after_mb=self.trim_after_mb,
        )

    @field_validator("backend", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value
