"""gRPC adapter of the embedder: requests in, pipeline calls, protos out.

CPU preparation (decode, detect, align) runs on a small thread pool so the event loop keeps
serving health checks and other calls; encoding goes through the configured runtime.

Before anything is decoded, a call is weighed by the pixels its images declare and admitted
by the process's pixel budget (pixel_budget.py); its deadline and cancellation reach the
worker threads through a CallStop (call_stop.py), so a call that ended stops costing CPU.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import cv2
import grpc
import numpy as np

from facesearch_contract.limits import max_items, value_range
from facesearch_contract.v1 import common_pb2 as common
from facesearch_contract.v1 import embedder_pb2 as pb
from facesearch_contract.v1 import embedder_service_pb2_grpc as pb_grpc
from facesearch_server.embedder import model_cards
from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.attributes import messages as attribute_messages
from facesearch_server.embedder.attributes.description import DescriptionReader
from facesearch_server.embedder.backends.base import EncoderRuntime
from facesearch_server.embedder.call_stop import CallStop, CallStopped
from facesearch_server.embedder.description_fusion.serving import DescriptionFusionServer
from facesearch_server.embedder.face_encoder_info import face_encoder_info
from facesearch_server.embedder.image_text import SceneEncoder, no_model, prepare_with_scene
from facesearch_server.embedder.pipeline import (
    DetectionSettings,
    FacePipeline,
    FaceResult,
    ImageEmbedding,
)
from facesearch_server.embedder.pixel_budget import IMAGES_STOPPED, PixelBudget
from facesearch_server.embedder.text_encoding import TextEncoder
from facesearch_server.runtime.errors import InvalidArgument, ServiceError
from facesearch_server.runtime.validation import batch_size

_END = object()
log = logging.getLogger("facesearch.embedder")
# Prepares one image: (data, field, stop) -> its result or its own error.
Prepare = Callable[[bytes, str, CallStop], ImageEmbedding]

# Ceilings the contract declares (embedder.proto) on what an operator may configure.
CEILING_BATCH = max_items(pb.EmbedImagesRequest, "images")
CEILING_CROPS = max_items(pb.EmbedFacesRequest, "crops")
CEILING_TEXT_BATCH = max_items(pb.EmbedTextRequest, "texts")
_, CEILING_FACES = value_range(pb.DetectionOptions, "max_faces")


class EmbedderServicer(pb_grpc.EmbedderServicer):
    def __init__(
        self,
        runtime: EncoderRuntime,
        faces: FacePipeline,
        text: TextEncoder,
        defaults: DetectionSettings | None = None,
        max_batch: int = 64,
        max_text_batch: int = 256,
        prepare_workers: int = 2,
        stream_window: int = 16,
        pixel_budget: PixelBudget | None = None,
        scene: SceneEncoder | None = None,
        description_fusion_model: str = mf.DESCRIPTION_FUSION,
    ) -> None:
        self.runtime = runtime
        self.faces = faces
        self.text = text
        # The image-text model (image_text.py), when the image_text_model setting names one.
        self.scene = scene
        self.defaults = defaults or DetectionSettings()
        for name, value, ceiling in (
            ("max_batch", max_batch, min(CEILING_BATCH, CEILING_CROPS)),
            ("max_text_batch", max_text_batch, CEILING_TEXT_BATCH),
            ("max_faces", self.defaults.max_faces, CEILING_FACES),
        ):
            if not 1 <= value <= ceiling:
                raise ValueError(
                    f"{name} is {value}; it must be 1..{ceiling:,} (the contract's ceiling, "
                    "embedder.proto)"
                )
        self.max_batch = max_batch
        self.max_text_batch = max_text_batch
        # Images read ahead of the oldest unanswered one in a stream; bounds server memory.
        self.stream_window = stream_window
        self._pool = ThreadPoolExecutor(max_workers=prepare_workers, thread_name_prefix="prepare")
        self.budget = pixel_budget or PixelBudget()
        # Descriptions (TextRole DESCRIPTION) are read into attribute evidence (TGFR).
        self.descriptions = DescriptionReader(text.embed) if faces.attribute_model else None
        # Learned description fusion (FuseDescription); an empty id serves none.
        self.fusion = DescriptionFusionServer(
            runtime, text, description_fusion_model, faces.model_id
        )
        # Model cards, read once: beside the model files the runtime loads (a model dir brings
        # its own thresholds), else the ones this package ships (Triton serves the same files).
        # Fine-tuned face encoders have no shipped card: theirs is beside their file.
        model_dir = getattr(runtime, "model_dir", None)
        self._cards = {
            spec.model_id: model_cards.card_for(
                spec.model_id, mf.encoder_path(spec, model_dir) if model_dir else None
            )
            for spec in {**mf.ENCODERS, **faces.face_models}.values()
        }

    # -- request checks -------------------------------------------------------------------
    def _face_model(self, model_id: str, field: str = "model_id") -> str:
        """The face encoder a request asked for (empty = the default); INVALID_ARGUMENT naming
        the served ones for any other."""
        return self.faces.face_model(model_id, field)

    def _scene(self, asked: bool) -> SceneEncoder | None:
        """The image-text model when a request asks for scene vectors; FAILED_PRECONDITION
        when it asks and none is served."""
        if asked and self.scene is None:
            raise no_model("with_scene")
        return self.scene if asked else None

    def _settings(self, options: pb.DetectionOptions, field: str = "options") -> DetectionSettings:
        d = self.defaults
        threshold = options.score_threshold
        if threshold != 0 and not 0 < threshold < 1:
            raise InvalidArgument(
                f"{field}.score_threshold",
                f"is {threshold}; it must be in (0, 1), or 0 for the default",
            )
        if options.max_faces > d.max_faces:
            raise InvalidArgument(
                f"{field}.max_faces",
                f"is {options.max_faces}; this server returns at most {d.max_faces} faces "
                "per image",
            )
        return DetectionSettings(
            max_faces=options.max_faces or d.max_faces,
            min_face_size=float(options.min_face_size or d.min_face_size),
            score_threshold=float(threshold or d.score_threshold),
            return_aligned_crops=options.return_aligned_crops,
        )

    # -- preparation ----------------------------------------------------------------------
    def _submit(
        self, prepare: Prepare, data: bytes, field: str, pixels: int, stop: CallStop
    ) -> Future[ImageEmbedding | ServiceError]:
        """Prepare one image on the pool; its pixels go back to the budget when it is done.
        A job cancelled before it started gives nothing back: ``_withdraw`` does that."""
        loop = asyncio.get_running_loop()

        def job() -> ImageEmbedding | ServiceError:
            try:
                return prepare(data, field, stop)
            except CallStopped:
                IMAGES_STOPPED.labels(stop.why or "cancelled").inc()
                raise
            except ServiceError as exc:
                return exc
            finally:
                try:
                    loop.call_soon_threadsafe(self.budget.release, pixels)
                except RuntimeError:  # the loop closed (shutdown): no call waits any more
                    pass

        return self._pool.submit(job)

    def _withdraw(
        self, jobs: dict[Future[ImageEmbedding | ServiceError], int], stop: CallStop
    ) -> None:
        """After a call ended: drop its jobs not yet started (their pixels go back now) and
        tell the running ones to stop at their next check."""
        stop.cancel()
        skipped = 0
        # list() of a dict is one step under the GIL, so a stream's done callbacks (popping
        # from a worker thread) cannot change it mid-copy.
        for job, pixels in list(jobs.items()):
            if job.cancel():  # True also when asyncio already cancelled it: never ran
                skipped += 1
                self.budget.release(pixels)
        jobs.clear()
        if skipped:
            IMAGES_STOPPED.labels(stop.why or "cancelled").inc(skipped)
            log.info(
                "call ended before its images were prepared",
                extra={"skipped": skipped, "why": stop.why},
            )

    async def _prepare_batch(
        self, items: Sequence[tuple[bytes, str]], field: str, prepare: Prepare, stop: CallStop
    ) -> list[ImageEmbedding | ServiceError]:
        """Weigh, admit and prepare the images of one request, in order."""
        self.budget.received(sum(len(data) for data, _ in items))
        pixels = [self.faces.declared_pixels(data) for data, _ in items]
        total = sum(pixels)
        self.budget.check_request(total, len(items), field)
        try:
            await self.budget.admit(total, stop)
        except asyncio.CancelledError:  # the call ended while waiting its turn
            IMAGES_STOPPED.labels(stop.why or "cancelled").inc(len(items))
            raise
        jobs: dict[Future[ImageEmbedding | ServiceError], int] = {}
        try:
            for (data, item_field), px in zip(items, pixels, strict=True):
                jobs[self._submit(prepare, data, item_field, px, stop)] = px
            return list(await asyncio.gather(*(asyncio.wrap_future(j) for j in jobs)))
        finally:
            self._withdraw(jobs, stop)

    # -- RPCs -----------------------------------------------------------------------------
    async def EmbedImages(
        self, request: pb.EmbedImagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.EmbedImagesResponse:
        batch_size(request.images, "images", self.max_batch)
        model = self._face_model(request.model_id)
        settings = self._settings(request.options)
        scene = self._scene(request.with_scene)

        def prepare(data: bytes, field: str, stop: CallStop) -> ImageEmbedding:
            if scene is not None:
                return prepare_with_scene(self.faces, scene, data, settings, field, stop)
            return self.faces.prepare_image(data, settings, field, stop)

        prepared = await self._prepare_batch(
            [(img.data, f"images[{i}].data") for i, img in enumerate(request.images)],
            "images",
            prepare,
            CallStop.of(context),
        )
        if len(prepared) == 1 and isinstance(prepared[0], ServiceError):
            raise prepared[0]
        images = [p for p in prepared if isinstance(p, ImageEmbedding)]
        await self.faces.encode(images, model)
        if scene is not None:
            await scene.encode(images)
        return pb.EmbedImagesResponse(
            results=[
                _image_result(i, img.media_id, p, settings.return_aligned_crops, self.scene)
                for i, (img, p) in enumerate(zip(request.images, prepared, strict=True))
            ]
        )

    async def EmbedFaces(
        self, request: pb.EmbedFacesRequest, context: grpc.aio.ServicerContext
    ) -> pb.EmbedFacesResponse:
        batch_size(request.crops, "crops", self.max_batch)
        model = self._face_model(request.model_id)
        prepared = await self._prepare_batch(
            [(crop.data, f"crops[{i}].data") for i, crop in enumerate(request.crops)],
            "crops",
            self.faces.prepare_crop,
            CallStop.of(context),
        )
        if len(prepared) == 1 and isinstance(prepared[0], ServiceError):
            raise prepared[0]
        await self.faces.encode([p for p in prepared if isinstance(p, ImageEmbedding)], model)
        return pb.EmbedFacesResponse(
            results=[
                _image_result(i, crop.media_id, p, False)
                for i, (crop, p) in enumerate(zip(request.crops, prepared, strict=True))
            ]
        )

    async def EmbedText(
        self, request: pb.EmbedTextRequest, context: grpc.aio.ServicerContext
    ) -> pb.EmbedTextResponse:
        batch_size(request.texts, "texts", self.max_text_batch)
        scene = self.scene if self.scene and request.model_id == self.scene.model_id else None
        if request.model_id and request.model_id != self.text.model_id and scene is None:
            served = [self.text.model_id] + ([self.scene.model_id] if self.scene else [])
            raise InvalidArgument(
                "model_id",
                f"{request.model_id!r} is not a text model served here; use one of {served}",
            )
        if request.role not in pb.TextRole.values():
            # proto3 enums are open: an unknown number arrives as is, never as an error.
            raise InvalidArgument(
                "role", f"is {request.role}, not a TextRole: use QUERY, CAPTION or DESCRIPTION"
            )
        # MiniLM is a symmetric model: queries, captions and descriptions share one encoding,
        # so the role does not change the vector; so is CLIP's text tower.
        if len({len(v.values) for v in request.identities}) > 1:
            raise InvalidArgument("identities", "the embeddings differ in length: send one model's")
        identities = (
            np.array([list(v.values) for v in request.identities], dtype=np.float32)
            if request.identities
            else None
        )
        if scene is not None:
            vectors = await scene.embed_texts(list(request.texts), identities=identities)
        elif identities is not None:
            raise InvalidArgument(
                "identities",
                "only an image-text model with an identity translator takes face embeddings; "
                f"{self.text.model_id!r} does not",
            )
        else:
            vectors = await self.text.embed(list(request.texts))
        reply = pb.EmbedTextResponse(
            embeddings=[common.Vector(values=v.tolist()) for v in vectors],
            model_id=scene.model_id if scene is not None else self.text.model_id,
        )
        if request.role == pb.TEXT_ROLE_DESCRIPTION and self.descriptions is not None:
            model = self.faces.attribute_model or ""
            prior = attribute_messages.prior_vector(self._cards.get(model))
            for evidence in await self.descriptions.read_many(list(request.texts)):
                reply.descriptions.append(
                    attribute_messages.description_evidence(evidence, model, prior)
                )
        return reply

    async def FuseDescription(
        self, request: pb.FuseDescriptionRequest, context: grpc.aio.ServicerContext
    ) -> pb.FuseDescriptionResponse:
        return await self.fusion.fuse(request)

    async def EmbedImagesStream(
        self,
        request_iterator: AsyncIterator[pb.EmbedStreamRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.ImageResult]:
        # A reader task prepares images ahead while results go out in order. The queue is the
        # backpressure: when ``stream_window`` images wait for their turn, the reader stops
        # reading, and gRPC's flow control then slows the client down.
        # Each image is admitted by the pixel budget on its own before it is read ahead; an
        # image that finds no room in time fails the stream with RESOURCE_EXHAUSTED (the
        # results so far were delivered, so the caller resumes after the last one).
        queue: asyncio.Queue[object] = asyncio.Queue(maxsize=self.stream_window)
        state: dict[str, DetectionSettings] = {}
        model: list[str] = []  # the stream's face model, from its first message
        scenes: list[SceneEncoder] = []  # the image-text model, when the stream asked for it
        stop = CallStop.of(context)
        jobs: dict[Future[ImageEmbedding | ServiceError], int] = {}

        def prepare(data: bytes, field: str, stop: CallStop) -> ImageEmbedding:
            if scenes:
                return prepare_with_scene(
                    self.faces, scenes[0], data, state["settings"], field, stop
                )
            return self.faces.prepare_image(data, state["settings"], field, stop)

        async def read() -> None:
            index = 0
            try:
                async for req in request_iterator:
                    if "settings" not in state:
                        model.append(self._face_model(req.model_id, "model_id"))
                        scenes.extend([s] if (s := self._scene(req.with_scene)) else [])
                        state["settings"] = self._settings(req.options)
                        if not req.HasField("image"):
                            continue  # an options-only first message
                    field = f"image[{index}].data"
                    data = req.image.data  # each read of a bytes field copies it
                    self.budget.received(len(data))
                    pixels = self.faces.declared_pixels(data)
                    await self.budget.admit(pixels, stop)
                    job = self._submit(prepare, data, field, pixels, stop)
                    jobs[job] = pixels
                    job.add_done_callback(lambda j: jobs.pop(j, None))
                    await queue.put((index, req.image.media_id, asyncio.wrap_future(job)))
                    index += 1
                await queue.put(_END)
            except Exception as exc:  # handed to the writer, which fails the call with it
                await queue.put(exc)

        reader = asyncio.create_task(read())
        try:
            done = False
            while not done:
                batch = [await queue.get()]
                # Encode whatever is already waiting together: one encoder call for many images.
                while not queue.empty() and len(batch) < self.stream_window:
                    batch.append(queue.get_nowait())
                if batch[-1] is _END:
                    batch.pop()
                    done = True
                for item in batch:
                    if isinstance(item, BaseException):
                        raise item
                prepared = [await task for _, _, task in batch]  # type: ignore[misc]
                images = [p for p in prepared if isinstance(p, ImageEmbedding)]
                await self.faces.encode(images, model[0] if model else None)
                if scenes:
                    await scenes[0].encode(images)
                crops = state["settings"].return_aligned_crops if state else False
                for (index, media_id, _), p in zip(batch, prepared, strict=True):  # type: ignore[misc]
                    yield _image_result(index, media_id, p, crops, self.scene)
        finally:
            reader.cancel()
            self._withdraw(jobs, stop)

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        models = [
            pb.ModelInfo(
                model_id=mf.YUNET,
                kind=pb.MODEL_KIND_FACE_DETECTOR,
                dimension=0,
                # "local": in-process (OpenCV or onnxruntime); "triton": on the Triton server.
                backend=self.faces.detector.backend,
                ready=await self.faces.detector.ready(),
                is_default=True,
                max_batch=self.max_batch,
                card_json=json.dumps(self._cards[mf.YUNET]) if self._cards.get(mf.YUNET) else "",
            )
        ]
        # Every face encoder served (shipped and fine-tuned), the default marked.
        for spec in self.faces.face_models.values():
            models.append(
                face_encoder_info(
                    spec,
                    self._cards.get(spec.model_id),
                    backend=self.runtime.name,
                    ready=await self.runtime.ready(spec.model_id),
                    is_default=spec.model_id == self.faces.model_id,
                    max_batch=self.max_batch,
                )
            )
        text_spec = mf.ENCODERS[self.text.model_id]
        card = self._cards.get(text_spec.model_id)
        models.append(
            pb.ModelInfo(
                model_id=text_spec.model_id,
                kind=pb.MODEL_KIND_TEXT_ENCODER,
                dimension=text_spec.dimension,
                backend=self.runtime.name,
                ready=await self.runtime.ready(text_spec.model_id),
                is_default=True,
                max_batch=self.max_text_batch,
                card_json=json.dumps(card) if card else "",
            )
        )
        if self.faces.attribute_model:
            card = self._cards.get(self.faces.attribute_model)
            models.append(
                attribute_messages.model_info(
                    self.faces.attribute_model,
                    self.runtime.name,
                    await self.runtime.ready(self.faces.attribute_model),
                    self.max_batch,
                    json.dumps(card) if card else "",
                )
            )
        if self.fusion.model_id:
            card = self._cards.get(self.fusion.model_id)
            models.append(
                self.fusion.model_info(
                    self.runtime.name,
                    await self.runtime.ready(self.fusion.model_id),
                    self.max_batch,
                    json.dumps(card) if card else "",
                )
            )
        if self.scene is not None:
            models.append(
                self.scene.model_info(self.runtime.name, await self.scene.ready(), self.max_batch)
            )
        return pb.ListModelsResponse(models=models)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _face_proto(face: FaceResult, with_crop: bool) -> pb.Face:
    out = pb.Face(
        detection_score=face.detection_score,
        quality=pb.FaceQuality(
            score=face.quality.score,
            face_size=face.quality.face_size,
            sharpness=face.quality.sharpness,
        ),
        embedding=common.Vector(values=np.asarray(face.embedding).tolist()),
        model_id=face.model_id,
    )
    if face.attributes is not None:
        out.attributes.CopyFrom(attribute_messages.face_attributes(face.attributes, mf.ATTRIBUTES))
    if face.box is not None:
        x, y, w, h = face.box
        out.box.CopyFrom(common.BoundingBox(x=x, y=y, width=w, height=h))
    if face.landmarks is not None:
        out.landmarks.extend(common.Point2D(x=float(p[0]), y=float(p[1])) for p in face.landmarks)
    if with_crop:
        ok, png = cv2.imencode(".png", face.aligned)
        if ok:
            out.aligned_crop = png.tobytes()
    return out


def _image_result(
    index: int,
    media_id: str,
    prepared: ImageEmbedding | ServiceError,
    with_crops: bool,
    scene: SceneEncoder | None = None,
) -> pb.ImageResult:
    if isinstance(prepared, ServiceError):
        return pb.ImageResult(
            index=index,
            media_id=media_id,
            error_code=prepared.code.value[0],
            error_message=prepared.message,
        )
    result = pb.ImageResult(
        index=index,
        media_id=media_id,
        width=prepared.width,
        height=prepared.height,
        faces=[_face_proto(f, with_crops) for f in prepared.faces],
    )
    if prepared.scene is not None and scene is not None:
        result.scene.values.extend(prepared.scene.tolist())
        result.scene_model_id = scene.model_id
    return result
