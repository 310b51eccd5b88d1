"""The face pipeline: decode -> detect -> align -> encode -> normalise.

Preparation (decode, detect, align, quality) is synchronous CPU work done per image; encoding
gathers the crops of many images into batches for the encoder runtime. The servicer runs the
two halves separately; scripts and other services' benchmarks can use the whole in-process:

    from facesearch_server.embedder.pipeline import FacePipeline
    pipe = FacePipeline.local()                    # onnxruntime on CPU, models in ./models
    results = pipe.embed_images_sync([jpeg_bytes]) # list of ImageEmbedding
    vec = results[0].faces[0].embedding            # 128 float32, unit length

Every face encoder the runtime serves can be used: SFace and the fine-tuned ones in the model
dir (embedder/training). ``model_id`` picks one per call; the pipeline's own ``model_id`` is
the default.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.backends.base import EncoderRuntime
from facesearch_server.embedder.call_stop import CallStop
from facesearch_server.embedder.face_alignment import CROP_SIZE, align_face, resize_crop
from facesearch_server.embedder.face_detection import FaceDetector, YuNetDetector
from facesearch_server.embedder.face_quality import Quality, face_quality
from facesearch_server.embedder.image_decode import ImageLimits, declared_pixels, decode_image
from facesearch_server.runtime.errors import InvalidArgument, ServiceError


@dataclass(frozen=True)
class DetectionSettings:
    max_faces: int = 64
    min_face_size: float = 16.0
    score_threshold: float = 0.6
    return_aligned_crops: bool = False


@dataclass
class FaceResult:
    box: tuple[float, float, float, float] | None  # x, y, w, h; None for given crops
    landmarks: np.ndarray | None  # 5x2
    detection_score: float
    quality: Quality
    aligned: np.ndarray  # 112x112 BGR crop fed to the encoder
    embedding: np.ndarray | None = None
    model_id: str = ""
    # Attribute probabilities from the embedding (names.NAMES order), when a model serves them.
    attributes: np.ndarray | None = None


@dataclass
class ImageEmbedding:
    width: int
    height: int
    faces: list[FaceResult] = field(default_factory=list)
    # With a scene request (image_text.py): the image tower's input, made while the decoded
    # pixels are at hand, then the image's scene vector once encoded.
    scene_input: np.ndarray | None = None
    scene: np.ndarray | None = None


def to_model_input(crops: list[np.ndarray]) -> np.ndarray:
    """BGR 112x112 crops -> SFace's input: RGB, float 0..255, NCHW."""
    if not crops:
        return np.zeros((0, 3, CROP_SIZE, CROP_SIZE), dtype=np.float32)
    batch = np.stack(crops)[..., ::-1]  # BGR -> RGB
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)


class FacePipeline:
    def __init__(
        self,
        runtime: EncoderRuntime,
        model_id: str = mf.SFACE,
        limits: ImageLimits | None = None,
        detector: YuNetDetector | None = None,
        attribute_model: str | None = mf.ATTRIBUTES,
        face_models: Mapping[str, mf.EncoderSpec] | None = None,
    ) -> None:
        # The face encoders calls may pick: by default the runtime's table (shipped + the
        # fine-tuned ones in its model dir).
        table = face_models if face_models is not None else getattr(runtime, "specs", mf.ENCODERS)
        self.face_models = mf.face_encoders(dict(table))
        if model_id not in self.face_models:
            raise ValueError(
                f"{model_id!r} is not a face encoder served here; served: "
                f"{', '.join(self.face_models)}"
            )
        # The attribute model reads one face model's embedding (SFace's). A face embedded with
        # another face model gets that model's embedding of the same crop too, for its
        # attributes only, so attributes mean the same whichever face model a collection uses.
        self.attribute_input: str | None = None
        if attribute_model:
            self.attribute_input = mf.ATTRIBUTES_INPUT_MODEL.get(attribute_model)
            if self.attribute_input not in self.face_models:
                raise ValueError(
                    f"{attribute_model!r} reads {self.attribute_input!r} embeddings, which "
                    "this runtime does not serve"
                )
        self.attribute_model = attribute_model
        self.runtime = runtime
        self.model_id = model_id  # the default face model
        self.limits = limits or ImageLimits()
        self.detector = detector or FaceDetector()

    @classmethod
    def local(
        cls, model_dir: str | Path | None = None, threads: int = 0, model_id: str = mf.SFACE
    ) -> FacePipeline:
        """In-process pipeline on onnxruntime; exports missing model files on first use.
        ``model_id``: the default face encoder (a fine-tuned one must be in ``model_dir``)."""
        from facesearch_server.embedder.backends.local import LocalRuntime

        runtime = LocalRuntime(model_dir, intra_op_threads=threads)
        runtime.load()
        return cls(runtime, model_id)

    def face_model(self, model_id: str = "", field: str = "model_id") -> str:
        """A request's face model: empty = the default; one not served is INVALID_ARGUMENT
        naming the served ones."""
        if not model_id:
            return self.model_id
        if model_id not in self.face_models:
            served = ", ".join(
                f"{m} (default)" if m == self.model_id else m for m in self.face_models
            )
            raise InvalidArgument(
                field, f"{model_id[:100]!r} is not a face model served here; served: {served}"
            )
        return model_id

    # -- preparation (synchronous, CPU) ---------------------------------------------------
    # ``stop`` (a call's deadline and cancellation) is checked between stages: a call that
    # ended stops costing CPU after the stage under way, raising CallStopped.
    def declared_pixels(self, data: bytes) -> int:
        """Pixels the image's header declares (0 if it will be refused on its own)."""
        return declared_pixels(data, self.limits)

    def prepare_image(
        self,
        data: bytes,
        settings: DetectionSettings,
        field: str = "image",
        stop: CallStop | None = None,
    ) -> ImageEmbedding:
        """Decode, detect, align and score every face; embeddings are filled by ``encode``."""
        if stop is not None:
            stop.check()
        bgr = decode_image(data, field, self.limits, stop)
        return self.prepare_pixels(bgr, settings, stop)

    def prepare_pixels(
        self, bgr: np.ndarray, settings: DetectionSettings, stop: CallStop | None = None
    ) -> ImageEmbedding:
        h, w = bgr.shape[:2]
        result = ImageEmbedding(width=w, height=h)
        for det in self.detector.detect(
            bgr, settings.score_threshold, settings.min_face_size, settings.max_faces, stop
        ):
            if stop is not None:
                stop.check()
            aligned = align_face(bgr, det.landmarks)
            size = min(det.box[2], det.box[3])
            quality = face_quality(aligned, size, min_size=settings.min_face_size)
            result.faces.append(FaceResult(det.box, det.landmarks, det.score, quality, aligned))
        return result

    def prepare_crop(
        self, data: bytes, field: str = "crop", stop: CallStop | None = None
    ) -> ImageEmbedding:
        """An already aligned crop: no detection, resized to 112x112."""
        if stop is not None:
            stop.check()
        bgr = decode_image(data, field, self.limits, stop)
        h, w = bgr.shape[:2]
        aligned = resize_crop(bgr)
        # The crop is the face: its size is the crop's shorter side.
        quality = face_quality(aligned, float(min(h, w)))
        face = FaceResult(None, None, 1.0, quality, aligned)
        return ImageEmbedding(width=w, height=h, faces=[face])

    # -- encoding (batched through the runtime) -------------------------------------------
    async def encode(self, images: list[ImageEmbedding], model_id: str | None = None) -> None:
        """Fill in the embedding of every face of ``images`` with face model ``model_id``
        (default: the pipeline's), in as few calls as allowed."""
        model = self.face_model(model_id or "")
        faces = [f for img in images for f in img.faces]
        if not faces:
            return
        crops = [f.aligned for f in faces]
        vectors = await self.encode_crops(crops, model)
        probabilities = None
        if self.attribute_model:
            read = vectors
            if model != self.attribute_input:
                read = await self.encode_crops(crops, self.attribute_input)
            probabilities = await self.predict_attributes(read, crops)
        for i, (face, vec) in enumerate(zip(faces, vectors, strict=True)):
            face.embedding = vec
            face.model_id = model
            face.attributes = probabilities[i] if probabilities is not None else None

    async def predict_attributes(
        self, embeddings: np.ndarray, crops: list[np.ndarray]
    ) -> np.ndarray | None:
        """(n, 128) unit embeddings of the attribute model's input model (``attribute_input``)
        and their 112x112 BGR crops -> (n, attributes) probabilities; None without an
        attribute model."""
        if not self.attribute_model or not len(embeddings):
            return None
        step = self.runtime.max_batch(self.attribute_model)
        emb_name, crop_name = (t.name for t in mf.ENCODERS[self.attribute_model].inputs)
        parts = []
        for i in range(0, len(embeddings), step):
            feeds = {
                emb_name: np.ascontiguousarray(embeddings[i : i + step], dtype=np.float32),
                crop_name: to_model_input(crops[i : i + step]),
            }
            parts.append(await self.runtime.infer(self.attribute_model, feeds))
        return np.concatenate(parts).astype(np.float32)

    async def encode_crops(
        self, crops: list[np.ndarray], model_id: str | None = None
    ) -> np.ndarray:
        """Unit-length embeddings of 112x112 BGR crops by face model ``model_id`` (default:
        the pipeline's)."""
        model = self.face_model(model_id or "")
        step = self.runtime.max_batch(model)
        name = self.face_models[model].inputs[0].name
        parts = [
            await self.runtime.infer(model, {name: to_model_input(crops[i : i + step])})
            for i in range(0, len(crops), step)
        ]
        out = np.concatenate(parts).astype(np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    # -- whole pipeline -------------------------------------------------------------------
    async def embed_images(
        self,
        images: list[bytes],
        settings: DetectionSettings | None = None,
        model_id: str | None = None,
    ) -> list[ImageEmbedding | ServiceError]:
        """Per-image results in order; an image that cannot be used yields its error."""
        model = self.face_model(model_id or "")  # an unknown model fails before any decoding
        settings = settings or DetectionSettings()
        # A detector on the runtime hands its inference to this loop from a worker thread.
        await self.detector.start()
        prepared: list[ImageEmbedding | ServiceError] = []
        for i, data in enumerate(images):
            try:
                prepared.append(
                    await asyncio.to_thread(self.prepare_image, data, settings, f"images[{i}].data")
                )
            except InvalidArgument as exc:
                prepared.append(exc)
        await self.encode([p for p in prepared if isinstance(p, ImageEmbedding)], model)
        return prepared

    def embed_images_sync(
        self,
        images: list[bytes],
        settings: DetectionSettings | None = None,
        model_id: str | None = None,
    ) -> list[ImageEmbedding | ServiceError]:
        """Blocking form of ``embed_images`` for scripts (not inside a running event loop)."""
        return asyncio.run(self.embed_images(images, settings, model_id))

    def embed_crops_sync(self, crops: list[np.ndarray], model_id: str | None = None) -> np.ndarray:
        """Blocking: embeddings of 112x112 BGR crops (e.g. ``FaceResult.aligned``)."""
        return asyncio.run(self.encode_crops([resize_crop(c) for c in crops], model_id))
