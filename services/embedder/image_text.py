"""The image-text (CLIP-architecture) model slot: a scene vector per image, CLIP text vectors
for queries, both in one space (MODEL_KIND_IMAGE_TEXT_ENCODER).

An image-text model is three files and a card in the model dir, as clip_import writes them
from an operator's open_clip checkpoint:

    <id>-image.onnx       image tower: (n, 3, S, S) normalised RGB -> (n, D) unit vectors
    <id>-text.onnx        text tower: (n, context_length) int64 token ids -> (n, D) unit vectors
                          (+ an ``identity`` input (n, face_dim) with an Id-CLIP translator)
    <id>.tokenizer.json   the CLIP BPE tokenizer (clip_tokenizer.py)
    <id>.card.json        what it is: kind "image_text", dimension, image size/mean/std/resize,
                          context length, tokenizer, where it came from, how it was checked

Each tower is an encoder of the runtime under its own id (``<id>-image``, ``<id>-text``), so the
local and Triton backends run them like every other model (triton_repository writes their
entries). The embedder serves at most one, named by its ``image_text_model`` setting; nothing
here imports torch.

Preprocessing is open_clip's evaluation transform, done with Pillow as torchvision does it on a
PIL image: resize (shortest side to S, bicubic; or "squash" to S x S), centre crop, scale to
[0, 1], normalise by the card's mean and std. clip_import checks it against open_clip's own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from facesearch_contract.v1 import embedder_pb2 as pb
from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.backends.base import EncoderRuntime
from facesearch_server.embedder.call_stop import CallStop
from facesearch_server.embedder.clip_tokenizer import CLEANING, ClipTokenizer
from facesearch_server.embedder.image_decode import decode_image
from facesearch_server.embedder.pipeline import DetectionSettings, FacePipeline, ImageEmbedding
from facesearch_server.runtime.errors import FailedPrecondition, InvalidArgument

KIND = "image_text"
CARD_SUFFIX = ".card.json"
# As trained face encoders' ids (training/train.py): safe as a file name and a Triton model name.
MODEL_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
IMAGE_INPUT, IMAGE_OUTPUT = "pixel_values", "image_embedding"
TEXT_INPUT, TEXT_OUTPUT = "input_ids", "text_embedding"
IDENTITY_INPUT = "identity"
RESIZE_MODES = ("shortest", "squash")
INTERPOLATIONS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
SETTING = "FACESEARCH_EMBEDDER_IMAGE_TEXT_MODEL"


def image_file(model_id: str) -> str:
    return f"{model_id}-image.onnx"


def text_file(model_id: str) -> str:
    return f"{model_id}-text.onnx"


def tokenizer_file(model_id: str) -> str:
    return f"{model_id}.tokenizer.json"


def card_file(model_id: str) -> str:
    return f"{model_id}{CARD_SUFFIX}"


@dataclass(frozen=True)
class Identity:
    """An Id-CLIP translator inside the text tower: a face embedding of ``face_model``
    (``face_dim`` values) becomes the token embedding at each ``placeholder`` token."""

    face_model: str
    face_dim: int
    placeholder: str
    placeholder_id: int


@dataclass(frozen=True)
class ImageTextCard:
    """What the embedder needs from an image-text model's card."""

    model_id: str
    dimension: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    resize_mode: str
    context_length: int
    cleaning: str
    identity: Identity | None
    raw: dict[str, Any]

    @classmethod
    def read(cls, path: Path) -> ImageTextCard:
        """Parse and check a card; ValueError naming the file and what is wrong."""
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a readable JSON model card ({exc})") from exc
        try:
            return cls._parse(raw)
        except (KeyError, TypeError, ValueError) as exc:
            problem = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ValueError(f"{path}: not a valid image-text model card: {problem}") from exc

    @classmethod
    def _parse(cls, raw: dict[str, Any]) -> ImageTextCard:
        if raw.get("kind") != KIND:
            raise ValueError(f"kind is {raw.get('kind')!r}, not {KIND!r}")
        model_id = str(raw["model_id"])
        if not MODEL_ID.fullmatch(model_id):
            raise ValueError(f"model_id {model_id!r} is not of the form {MODEL_ID.pattern}")
        image, text = raw["image"], raw["text"]
        mean = tuple(float(v) for v in image["mean"])
        std = tuple(float(v) for v in image["std"])
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError("image mean and std are three numbers each, std positive")
        if image["resize_mode"] not in RESIZE_MODES:
            raise ValueError(f"image resize_mode {image['resize_mode']!r}: one of {RESIZE_MODES}")
        if image["interpolation"] not in INTERPOLATIONS:
            raise ValueError(
                f"image interpolation {image['interpolation']!r}: one of {tuple(INTERPOLATIONS)}"
            )
        tokenizer = text["tokenizer"]
        if tokenizer["cleaning"] not in CLEANING:
            raise ValueError(f"tokenizer cleaning {tokenizer['cleaning']!r}: one of {CLEANING}")
        ident = raw.get("identity")
        identity = None
        if ident:
            identity = Identity(
                str(ident["face_model"]),
                int(ident["face_dim"]),
                str(ident["placeholder"]),
                int(ident["placeholder_id"]),
            )
        return cls(
            model_id=model_id,
            dimension=int(raw["embedding_dim"]),
            image_size=int(image["size"]),
            mean=mean,  # type: ignore[arg-type]
            std=std,  # type: ignore[arg-type]
            interpolation=str(image["interpolation"]),
            resize_mode=str(image["resize_mode"]),
            context_length=int(text["context_length"]),
            cleaning=str(tokenizer["cleaning"]),
            identity=identity,
            raw=raw,
        )

    # -- the towers as runtime encoders ---------------------------------------------------
    @property
    def image_tower(self) -> mf.EncoderSpec:
        return mf.EncoderSpec(
            model_id=f"{self.model_id}-image",
            kind="image_text_image",
            dimension=self.dimension,
            file_name=image_file(self.model_id),
            inputs=(mf.TensorSpec(IMAGE_INPUT, "float32", (3, self.image_size, self.image_size)),),
            output=mf.TensorSpec(IMAGE_OUTPUT, "float32", (self.dimension,)),
        )

    @property
    def text_tower(self) -> mf.EncoderSpec:
        inputs = [mf.TensorSpec(TEXT_INPUT, "int64", (self.context_length,))]
        if self.identity is not None:
            inputs.append(mf.TensorSpec(IDENTITY_INPUT, "float32", (self.identity.face_dim,)))
        return mf.EncoderSpec(
            model_id=f"{self.model_id}-text",
            kind="image_text_text",
            dimension=self.dimension,
            file_name=text_file(self.model_id),
            inputs=tuple(inputs),
            output=mf.TensorSpec(TEXT_OUTPUT, "float32", (self.dimension,)),
        )

    def towers(self) -> dict[str, mf.EncoderSpec]:
        return {s.model_id: s for s in (self.image_tower, self.text_tower)}


def find_models(directory: Path) -> dict[str, Path]:
    """Image-text model cards in ``directory``, by model id (other cards are skipped)."""
    found = {}
    for path in sorted(Path(directory).glob(f"*{CARD_SUFFIX}")):
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # not ours to judge: model_files logs unreadable cards
        if isinstance(raw, dict) and raw.get("kind") == KIND and "model_id" in raw:
            found[str(raw["model_id"])] = path
    return found


def served_towers(directory: Path) -> dict[str, tuple[mf.EncoderSpec, Path]]:
    """Every tower of every complete image-text model in ``directory``: runtime id ->
    (spec, its model's card file), for the Triton repository and the test server."""
    towers: dict[str, tuple[mf.EncoderSpec, Path]] = {}
    for model_id in find_models(directory):
        card = load_card(directory, model_id)
        path = Path(directory) / card_file(model_id)
        towers.update({tower_id: (spec, path) for tower_id, spec in card.towers().items()})
    return towers


def load_card(directory: Path, model_id: str, weights: bool = True) -> ImageTextCard:
    """The card of image-text model ``model_id`` in ``directory``, its tokenizer (and, with
    ``weights``, both ONNX towers) checked to be there; FileNotFoundError naming what is
    missing and the image-text models that are there."""
    directory = Path(directory)
    path = directory / card_file(model_id)
    if not path.exists():
        there = ", ".join(find_models(directory)) or "none"
        raise FileNotFoundError(
            f"no image-text model {model_id!r} in {directory} (no {path.name}; image-text "
            f"models there: {there}). Import one with python -m "
            "facesearch_server.embedder.clip_import --checkpoint FILE --arch NAME --model-id "
            f"{model_id} --out {directory}"
        )
    card = ImageTextCard.read(path)
    if card.model_id != model_id:
        raise ValueError(f"{path}: its model_id is {card.model_id!r}, not {model_id!r}")
    needed = [tokenizer_file(model_id)]
    if weights:
        needed += [image_file(model_id), text_file(model_id)]
    missing = [n for n in needed if not (directory / n).exists()]
    if missing:
        raise FileNotFoundError(
            f"image-text model {model_id!r} in {directory} lacks {', '.join(missing)}: import "
            "it again with clip_import (the card, tokenizer and towers are written together)"
        )
    return card


def preprocess(rgb: Image.Image, card: ImageTextCard) -> np.ndarray:
    """One RGB image -> (3, S, S) float32, as open_clip's evaluation transform makes it."""
    size = card.image_size
    resample = INTERPOLATIONS[card.interpolation]
    w, h = rgb.size
    if card.resize_mode == "squash":
        resized = rgb.resize((size, size), resample) if (w, h) != (size, size) else rgb
    else:
        # torchvision's Resize(int): the shorter side becomes ``size``, the longer one is
        # scaled and truncated; centre crop with its rounding.
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = size, int(size * long / short)
        new = (new_short, new_long) if w <= h else (new_long, new_short)
        resized = rgb.resize(new, resample) if new != (w, h) else rgb
        rw, rh = resized.size
        top, left = round((rh - size) / 2.0), round((rw - size) / 2.0)
        resized = resized.crop((left, top, left + size, top + size))
    pixels = np.asarray(resized, dtype=np.float32) / 255.0
    pixels = (pixels - np.asarray(card.mean, np.float32)) / np.asarray(card.std, np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32)


def preprocess_bgr(bgr: np.ndarray, card: ImageTextCard) -> np.ndarray:
    """The embedder's decoded image (HxWx3 uint8 BGR) -> the image tower's input."""
    return preprocess(Image.fromarray(np.ascontiguousarray(bgr[..., ::-1])), card)


class SceneEncoder:
    """Scene vectors of images and CLIP vectors of texts through an encoder runtime."""

    def __init__(self, runtime: EncoderRuntime, card: ImageTextCard, directory: Path) -> None:
        self.runtime = runtime
        self.card = card
        self.model_id = card.model_id
        self.image_tower, self.text_tower = card.image_tower, card.text_tower
        self.tokenizer = ClipTokenizer(
            Path(directory) / tokenizer_file(card.model_id), card.context_length, card.cleaning
        )

    @classmethod
    def configured(
        cls, runtime: EncoderRuntime, directory: Path, model_id: str, weights: bool
    ) -> SceneEncoder:
        """The model the ``image_text_model`` setting names; its towers join the runtime's
        encoders (loaded with the others by the local runtime, looked up on Triton)."""
        card = load_card(directory, model_id, weights)
        runtime.specs.update(card.towers())
        return cls(runtime, card, directory)

    def prepare(self, bgr: np.ndarray) -> np.ndarray:
        return preprocess_bgr(bgr, self.card)

    async def embed_pixels(self, pixels: Sequence[np.ndarray]) -> np.ndarray:
        """(n, D) unit scene vectors of prepared images (``prepare``)."""
        if not pixels:
            return np.zeros((0, self.card.dimension), np.float32)
        tower = self.image_tower.model_id
        step = self.runtime.max_batch(tower)
        parts = [
            await self.runtime.infer(tower, {IMAGE_INPUT: np.stack(pixels[i : i + step])})
            for i in range(0, len(pixels), step)
        ]
        return _unit(np.concatenate(parts))

    async def embed_texts(
        self,
        texts: Sequence[str],
        field: str = "texts",
        identities: np.ndarray | None = None,
    ) -> np.ndarray:
        """(n, D) unit text vectors. ``identities`` (n, face_dim): the face embedding each
        text's placeholder stands for, for a text tower with an Id-CLIP translator."""
        ids = self.tokenizer.encode(texts, field)
        feeds_all: dict[str, np.ndarray] = {TEXT_INPUT: ids}
        identity = self.card.identity
        if identity is not None:
            feeds_all[IDENTITY_INPUT] = _identity_feed(ids, identities, identity, field)
        elif identities is not None:
            raise FailedPrecondition(
                f"image-text model {self.model_id!r} has no identity translator (Id-CLIP): "
                "train one with facesearch train idclip"
            )
        tower = self.text_tower.model_id
        step = self.runtime.max_batch(tower)
        parts = []
        for i in range(0, len(texts), step):
            feeds = {name: arr[i : i + step] for name, arr in feeds_all.items()}
            parts.append(await self.runtime.infer(tower, feeds))
        return _unit(np.concatenate(parts))

    async def encode(self, images: Sequence[ImageEmbedding]) -> None:
        """Fill in ``scene`` of every image prepared with its ``scene_input``, in batches."""
        todo = [im for im in images if im.scene_input is not None]
        vectors = await self.embed_pixels([im.scene_input for im in todo])  # type: ignore[misc]
        for im, vec in zip(todo, vectors, strict=True):
            im.scene, im.scene_input = vec, None

    def model_info(self, backend: str, ready: bool, max_batch: int) -> pb.ModelInfo:
        return pb.ModelInfo(
            model_id=self.model_id,
            kind=pb.MODEL_KIND_IMAGE_TEXT_ENCODER,
            dimension=self.card.dimension,
            backend=backend,
            ready=ready,
            is_default=True,
            max_batch=max_batch,
            card_json=json.dumps(self.card.raw),
        )

    async def ready(self) -> bool:
        towers = (self.image_tower.model_id, self.text_tower.model_id)
        return all([await self.runtime.ready(t) for t in towers])


def prepare_with_scene(
    faces: FacePipeline,
    scene: SceneEncoder,
    data: bytes,
    settings: DetectionSettings,
    field: str,
    stop: CallStop | None,
) -> ImageEmbedding:
    """FacePipeline.prepare_image plus the image tower's input, from one decoding."""
    if stop is not None:
        stop.check()
    bgr = decode_image(data, field, faces.limits, stop)
    result = faces.prepare_pixels(bgr, settings, stop)
    result.scene_input = scene.prepare(bgr)
    return result


def _identity_feed(
    ids: np.ndarray, identities: np.ndarray | None, identity: Identity, field: str
) -> np.ndarray:
    """The text tower's ``identity`` input: a face embedding for each text that names the
    person by the placeholder, zeros (unused) for the others; INVALID_ARGUMENT for a text and
    an embedding that do not go together."""
    has = (ids == identity.placeholder_id).any(axis=1)
    word = identity.placeholder
    if identities is None:
        for i in np.flatnonzero(has):
            raise InvalidArgument(
                f"{field}[{i}]",
                f"contains the placeholder {word!r}, which stands for a person: send that "
                f"person's face embedding in identities[{i}] (or leave the word out)",
            )
        return np.zeros((len(ids), identity.face_dim), np.float32)
    identities = np.asarray(identities, np.float32)
    if identities.shape != (len(ids), identity.face_dim):
        raise InvalidArgument(
            "identities",
            f"holds {identities.shape[0]} embedding(s) of {identities.shape[1:] or '?'} values; "
            f"this model takes one {identity.face_dim}-value {identity.face_model} embedding "
            "per text",
        )
    for i in np.flatnonzero(~has):
        raise InvalidArgument(
            f"{field}[{i}]",
            f"has no placeholder {word!r} for identities[{i}] to stand for: write the person "
            f"as {word!r} (e.g. '{word} shaking hands at a summit')",
        )
    norms = np.linalg.norm(identities, axis=1, keepdims=True)
    if not np.isfinite(identities).all() or (norms == 0).any():
        raise InvalidArgument("identities", "holds a zero or non-finite embedding")
    return identities / norms


def no_model(what: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"{what} needs an image-text model, and this embedder serves none: import one with "
        "python -m facesearch_server.embedder.clip_import and set "
        f"{SETTING} (services/embedder/README.md, 'Image-text models')"
    )


def _unit(out: np.ndarray) -> np.ndarray:
    # The towers normalise already; again here so every runtime returns unit vectors.
    out = np.asarray(out, dtype=np.float32)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
