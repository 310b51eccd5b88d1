"""``python -m facesearch_server.embedder`` (or ``facesearch-embedder``).

Settings: EmbedderSettings (services/embedder/settings.py), tabled in services/embedder/README.md.
"""

from __future__ import annotations

from pathlib import Path

from facesearch_contract.v1 import embedder_service_pb2_grpc as pb_grpc
from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.backends.base import EncoderRuntime
from facesearch_server.embedder.face_detection import FaceDetector, YuNetDetector
from facesearch_server.embedder.face_detection_runtime import RuntimeFaceDetector
from facesearch_server.embedder.image_decode import ImageLimits
from facesearch_server.embedder.image_text import SceneEncoder
from facesearch_server.embedder.pipeline import DetectionSettings, FacePipeline
from facesearch_server.embedder.pixel_budget import PixelBudget
from facesearch_server.embedder.servicer import EmbedderServicer
from facesearch_server.embedder.settings import EmbedderSettings
from facesearch_server.embedder.text_encoding import TextEncoder
from facesearch_server.runtime.readiness import ReadinessCheck
from facesearch_server.runtime.server import ServiceDefinition, Servicer, run_service


def build_runtime(cfg: EmbedderSettings) -> EncoderRuntime:
    if cfg.backend == "triton":
        from facesearch_server.embedder.backends.triton import TritonRuntime

        return TritonRuntime(
            cfg.triton_url,
            timeout_s=cfg.triton_timeout_s,
            retries=cfg.triton_retries,
            max_batch=cfg.encoder_max_batch,
            model_dir=cfg.model_dir,  # the fine-tuned face encoders' cards
        )
    from facesearch_server.embedder.backends.local import LocalRuntime

    return LocalRuntime(
        cfg.model_dir,
        intra_op_threads=cfg.ort_threads,
        max_batch=cfg.encoder_max_batch,
        spinning=cfg.ort_spinning,
        device=cfg.ort_device,
    )


def build_detector(cfg: EmbedderSettings, runtime: EncoderRuntime) -> YuNetDetector:
    if cfg.detector_on_runtime():
        return RuntimeFaceDetector(runtime, max_side=cfg.detect_max_side)
    return FaceDetector(max_side=cfg.detect_max_side)


def models_ready(runtime: EncoderRuntime, detector_on_runtime: bool = True) -> ReadinessCheck:
    """Every encoder it serves (fine-tuned face encoders included) can run: loaded in-process
    (local), or the Triton server reachable and each model READY there (a Triton restarting or
    still loading is not ready). YuNet counts only where detection runs on the runtime."""

    async def check() -> None:
        needed = [m for m in runtime.specs if detector_on_runtime or m != mf.YUNET]
        missing = [m for m in needed if not await runtime.ready(m)]
        if missing:
            raise RuntimeError(f"{runtime.name} cannot run {', '.join(missing)} now")

    return ReadinessCheck("models", check)


def build(cfg: EmbedderSettings) -> ServiceDefinition:
    runtime = build_runtime(cfg)
    limits = ImageLimits(max_bytes=cfg.max_image_bytes, max_pixels=cfg.max_image_pixels)
    faces = FacePipeline(
        runtime,
        cfg.face_model,
        limits=limits,
        detector=build_detector(cfg, runtime),
    )
    # The image-text model's towers join the runtime's encoders before it loads or connects.
    scene = (
        SceneEncoder.configured(
            runtime, Path(cfg.model_dir), cfg.image_text_model, weights=cfg.backend == "local"
        )
        if cfg.image_text_model
        else None
    )
    defaults = DetectionSettings(
        max_faces=cfg.max_faces,
        min_face_size=cfg.min_face_size,
        score_threshold=cfg.score_threshold,
    )
    servicer = EmbedderServicer(
        runtime,
        faces,
        TextEncoder(runtime),
        defaults,
        max_batch=cfg.max_batch,
        max_text_batch=cfg.max_text_batch,
        prepare_workers=cfg.prepare_workers,
        stream_window=cfg.stream_window,
        pixel_budget=PixelBudget(cfg.pixel_limits()),
        scene=scene,
        description_fusion_model=cfg.description_fusion_model,
    )

    async def stop() -> None:
        await servicer.close()
        await runtime.close()

    return ServiceDefinition(
        servicers=[
            Servicer("facesearch.v1.Embedder", servicer, pb_grpc.add_EmbedderServicer_to_server)
        ],
        # The runtime detector binds to the loop the runtime serves in (its start).
        on_start=[runtime.start, faces.detector.start],
        on_stop=[stop],
        readiness=[models_ready(runtime, cfg.detector_on_runtime())],
    )


def main() -> None:
    run_service("embedder", build)


if __name__ == "__main__":
    main()
