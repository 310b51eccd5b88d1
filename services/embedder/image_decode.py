"""Encoded image bytes -> BGR pixels, refusing what cannot or must not be decoded.

Pillow reads only the header on open, so the pixel count is checked before any pixel is
decoded: a small PNG that declares 50,000 x 50,000 pixels is refused without allocating
gigabytes. Truncated files fail instead of yielding half-grey images, and EXIF orientation is
applied so boxes are in the upright image a person sees.

Memory: Pillow holds a decoded RGB image as 4 bytes a pixel and its byte export briefly twice,
so a 40 MP image peaks near 400 MB; the pixels are packed straight into OpenCV's BGR order
(no flipped copy) and EXIF rotation is done in place (no copy when there is none). Decoding
is always at full resolution (faces are aligned from the original pixels), so Pillow's
draft/reduce shortcuts do not apply.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facesearch_server.embedder.call_stop import CallStop, CallStopped
from facesearch_server.runtime.errors import InvalidArgument

# Formats the contract promises; PPM is Pillow's plugin for PGM/PPM/PBM. Restricting the list
# keeps exotic decoders (and their bugs) off the request path.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "PPM")
# Below this nothing can be detected or encoded meaningfully; say so instead of "no face".
MIN_SIDE = 16


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    min_side: int = MIN_SIDE


def _to_bgr(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grey (some PGM files): keep the dynamic range instead of clipping at 255.
        arr = np.asarray(img, dtype=np.float64)
        top = float(arr.max()) or 1.0
        grey = np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if img.mode != "RGB":
        img = img.convert("RGB")
    # Read-only (a view of the bytes): every consumer here only reads the pixels.
    bgr = img.tobytes("raw", "BGR")
    return np.frombuffer(bgr, np.uint8).reshape(img.height, img.width, 3)


def read_header(data: bytes, field: str, limits: ImageLimits) -> Image.Image:
    """Open (header only) and check size limits; nothing is decoded yet."""
    if not data:
        raise InvalidArgument(field, "is empty: send the encoded image file")
    if len(data) > limits.max_bytes:
        raise InvalidArgument(
            field, f"is {len(data)} bytes; this server accepts at most {limits.max_bytes}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidArgument(
            field,
            f"declares too many pixels ({exc}); at most {limits.max_pixels} are accepted "
            "(refused before decoding): send a smaller image",
        ) from exc
    except UnidentifiedImageError as exc:
        raise InvalidArgument(
            field, "is not an image in a supported format (JPEG, PNG, WebP, GIF, BMP, PGM/PPM)"
        ) from exc
    except Exception as exc:  # Pillow raises many kinds on malformed headers
        raise InvalidArgument(field, f"has a corrupt image header ({exc})") from exc
    width, height = img.size
    if width * height > limits.max_pixels:
        raise InvalidArgument(
            field,
            f"declares {width}x{height} = {width * height} pixels; at most {limits.max_pixels} "
            "are accepted (refused before decoding): send a smaller image",
        )
    if min(width, height) < limits.min_side:
        raise InvalidArgument(
            field,
            f"is {width}x{height} pixels; at least {limits.min_side}x{limits.min_side} is needed",
        )
    return img


def declared_pixels(data: bytes, limits: ImageLimits) -> int:
    """Width x height from the header, for the pixel budget; 0 when the image will be refused
    on its own (its preparation reports why)."""
    try:
        img = read_header(data, "image", limits)
    except InvalidArgument:
        return 0
    with img:
        return img.width * img.height


def decode_image(
    data: bytes, field: str, limits: ImageLimits | None = None, stop: CallStop | None = None
) -> np.ndarray:
    """Decode to an upright HxWx3 uint8 BGR array (OpenCV's order, read-only); raises
    InvalidArgument, or CallStopped between stages once ``stop`` says the call ended."""
    limits = limits or ImageLimits()
    img = read_header(data, field, limits)
    try:
        img.load()  # first frame only for GIF / animated WebP
        if stop is not None:
            stop.check()
        ImageOps.exif_transpose(img, in_place=True)
        bgr = _to_bgr(img)
    except (MemoryError, CallStopped):
        raise
    except Exception as exc:  # any decoder failure on untrusted bytes is the input's fault
        reason = str(exc) or type(exc).__name__
        raise InvalidArgument(
            field, f"could not be decoded ({reason}); the file may be truncated or corrupt"
        ) from exc
    finally:
        img.close()
    h, w = bgr.shape[:2]
    if min(h, w) < limits.min_side:  # EXIF rotation cannot shrink it, but a GIF frame can
        raise InvalidArgument(field, f"is {w}x{h} pixels; at least {limits.min_side} needed")
    return bgr
