"""``python -m facesearch_server.embedder`` (or ``facesearch-embedder``).

Service keys (env ``FACESEARCH_EMBEDDER_<KEY>`` or the ``embedder`` section of the YAML file):
backend (local | triton), model_dir (./models; missing encoder files are exported there on
first start), triton_url, triton_timeout_s, triton_retries, max_batch, max_text_batch,
encoder_max_batch, ort_threads, prepare_workers, stream_window, max_image_bytes,
max_image_pixels, detect_max_side, max_faces, min_face_size, score_threshold.
"""

from __future__ import annotations

from facesearch_contract.v1 import embedder_service_pb2_grpc as pb_grpc
from facesearch_server.embedder.backends.base import EncoderRuntime
from facesearch_server.embedder.face_detection import FaceDetector
from facesearch_server.embedder.image_decode import ImageLimits
from facesearch_server.embedder.pipeline import DetectionSettings, FacePipeline
from facesearch_server.embedder.servicer import EmbedderServicer
from facesearch_server.embedder.text_encoding import TextEncoder
from facesearch_server.runtime.config import ServerConfig
from facesearch_server.runtime.server import ServiceDefinition, Servicer, run_service


def build_runtime(cfg: ServerConfig) -> EncoderRuntime:
    backend = str(cfg.get("backend", "local")).lower()
    encoder_batch = int(cfg.get("encoder_max_batch", 64))
    if backend == "local":
        from facesearch_server.embedder.backends.local import LocalRuntime

        return LocalRuntime(
            cfg.get("model_dir"),
            intra_op_threads=int(cfg.get("ort_threads", 0)),
            max_batch=encoder_batch,
            spinning=bool(cfg.get("ort_spinning", False)),
        )
    if backend == "triton":
        from facesearch_server.embedder.backends.triton import TritonRuntime

        return TritonRuntime(
            str(cfg.get("triton_url", "127.0.0.1:8001")),
            timeout_s=float(cfg.get("triton_timeout_s", 5.0)),
            retries=int(cfg.get("triton_retries", 3)),
            max_batch=encoder_batch,
        )
    raise SystemExit(
        f"facesearch-embedder: configuration error: backend {backend!r} is unknown; "
        "use 'local' or 'triton'"
    )


def build(cfg: ServerConfig) -> ServiceDefinition:
    runtime = build_runtime(cfg)
    limits = ImageLimits(
        max_bytes=int(cfg.get("max_image_bytes", 20 * 1024 * 1024)),
        max_pixels=int(cfg.get("max_image_pixels", 40_000_000)),
    )
    faces = FacePipeline(
        runtime, limits=limits, detector=FaceDetector(max_side=int(cfg.get("detect_max_side", 640)))
    )
    defaults = DetectionSettings(
        max_faces=int(cfg.get("max_faces", 64)),
        min_face_size=float(cfg.get("min_face_size", 16)),
        score_threshold=float(cfg.get("score_threshold", 0.6)),
    )
    servicer = EmbedderServicer(
        runtime,
        faces,
        TextEncoder(runtime),
        defaults,
        max_batch=int(cfg.get("max_batch", 64)),
        max_text_batch=int(cfg.get("max_text_batch", 256)),
        prepare_workers=int(cfg.get("prepare_workers", 2)),
        stream_window=int(cfg.get("stream_window", 16)),
    )

    async def stop() -> None:
        await servicer.close()
        await runtime.close()

    return ServiceDefinition(
        servicers=[
            Servicer("facesearch.v1.Embedder", servicer, pb_grpc.add_EmbedderServicer_to_server)
        ],
        on_start=[runtime.start],
        on_stop=[stop],
    )


def main() -> None:
    run_service("embedder", build)


if __name__ == "__main__":
    main()
