"""Image decoding on untrusted bytes: real images of every accepted format, mutated (bytes
overwritten, cut short, spliced) or replaced by arbitrary bytes, must decode to an upright
HxWx3 uint8 array or be refused with InvalidArgument; never another exception, never a hang."""

from __future__ import annotations

import io
from functools import cache

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from PIL import Image

from facesearch_server.embedder.image_decode import ImageLimits, decode_image
from facesearch_server.runtime.errors import InvalidArgument
from harness.shared_data import shared_data_dir

from .conftest import fuzz

pytestmark = pytest.mark.slow
# Small limits keep a mutated header that declares a large image cheap to refuse or decode.
LIMITS = ImageLimits(max_bytes=2 * 1024 * 1024, max_pixels=4_000_000)


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


@cache
def seeds() -> tuple[bytes, ...]:
    """Valid files of each format the embedder accepts, with the features that take other
    decoder paths: EXIF orientation, alpha, a palette, 16-bit grey, several GIF frames."""
    rng = np.random.default_rng(7)
    rgb = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: exif_transpose turns it upright
    grey16 = Image.fromarray(rng.integers(0, 65535, (40, 40), dtype=np.uint16))
    frames = [rgb.convert("P"), rgb.rotate(90).convert("P")]
    out = [
        _encode(rgb, "JPEG", quality=80, exif=exif.tobytes()),
        _encode(rgb, "JPEG", progressive=True),
        _encode(rgb.convert("RGBA"), "PNG"),
        _encode(rgb.convert("P"), "PNG"),
        _encode(grey16, "PNG"),
        _encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        _encode(rgb, "BMP"),
        _encode(rgb, "WEBP", quality=70),
        _encode(rgb, "PPM"),
        _encode(rgb.convert("L"), "PPM"),
    ]
    data = shared_data_dir()
    if data is not None:  # a real camera JPEG too, where the photos are
        photo = next((data / "lfw" / "lfw" / "Aaron_Peirsol").glob("*.jpg"), None)
        if photo is not None:
            out.append(photo.read_bytes())
    return tuple(out)


def decodes_or_refuses(data: bytes) -> None:
    try:
        bgr = decode_image(data, "image.data", LIMITS)
    except InvalidArgument as exc:
        assert str(exc).startswith("image.data")
        event("refused")
        return
    event("decoded")
    assert bgr.dtype == np.uint8 and bgr.ndim == 3 and bgr.shape[2] == 3
    assert min(bgr.shape[:2]) >= LIMITS.min_side


def test_every_seed_decodes() -> None:
    for seed in seeds():
        bgr = decode_image(seed, "image.data", LIMITS)  # valid: decoded, not refused
        assert bgr.dtype == np.uint8 and bgr.shape[2] == 3


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds())))
    for _ in range(draw(st.integers(0, 8))):
        # Headers are where parsers go wrong: bias edits toward the first bytes.
        end = draw(st.sampled_from([64, 512, len(data)]))
        pos = draw(st.integers(0, max(0, min(end, len(data)) - 1)))
        op = draw(st.sampled_from(["set", "flip", "insert", "delete"]))
        if not data:
            break
        if op == "set":
            data[pos] = draw(st.integers(0, 255))
        elif op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[pos : pos + draw(st.integers(1, 16))]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


# Pillow warns of a corrupt EXIF block it skips (the image still decodes): expected here.
@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")
@fuzz(2500)
@given(mutated())
def test_mutated_images_decode_or_are_refused(data: bytes) -> None:
    decodes_or_refuses(data)


@fuzz(1000)
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_are_refused(data: bytes) -> None:
    decodes_or_refuses(data)
