"""Bad input gets a clear status naming the field, never a crash or a hang; the service keeps
serving afterwards."""

from __future__ import annotations

import struct
import zlib

import cv2
import grpc
import numpy as np
import pytest

from facesearch.errors import field_violations
from facesearch_contract.v1 import embedder_pb2 as pb
from tests.embedder.conftest import MAX_BATCH, MAX_TEXT_BATCH, package_photos

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A valid ~100-byte PNG whose header declares width x height RGB pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    # One zlib stream of zero rows would inflate to 7.5 GB; a few KiB stand in for it.
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 4096))
        + _png_chunk(b"IEND", b"")
    )


def jpeg_bomb() -> bytes:
    """A real JPEG whose frame header (SOF0) is patched to declare 60,000 x 60,000 pixels."""
    data = bytearray(photo())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)
    return bytes(data)


def photo() -> bytes:
    return package_photos()[0].read_bytes()


def one_pixel() -> bytes:
    return cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))[1].tobytes()


IMAGE_CASES = [
    ("empty bytes", b"", "is empty"),
    ("truncated JPEG", photo()[: len(photo()) // 2], "truncated"),
    ("not an image", b"%PDF-1.7 this is not a picture" * 20, "not an image"),
    ("PNG declaring 50,000 x 50,000", png_bomb(), "refused before decoding"),
    ("JPEG declaring 60,000 x 60,000", jpeg_bomb(), "refused before decoding"),
    ("1x1 image", one_pixel(), "1x1 pixels"),
]


def _call_refused(call, request) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        call(request, timeout=30)
    return err.value


@pytest.mark.parametrize(("case", "data", "says"), IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
def test_single_bad_image_is_invalid_argument(stub, case: str, data: bytes, says: str) -> None:
    err = _call_refused(stub.EmbedImages, pb.EmbedImagesRequest(images=[pb.ImageInput(data=data)]))
    assert err.code() == INVALID, case
    assert says in err.details()
    assert field_violations(err)[0][0] == "images[0].data"


@pytest.mark.parametrize(("case", "data", "says"), IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
def test_single_bad_crop_is_invalid_argument(stub, case: str, data: bytes, says: str) -> None:
    err = _call_refused(stub.EmbedFaces, pb.EmbedFacesRequest(crops=[pb.FaceCrop(data=data)]))
    assert err.code() == INVALID, case
    assert says in err.details()


def test_bad_image_in_a_batch_is_reported_in_its_result(stub) -> None:
    images = [pb.ImageInput(data=photo(), media_id="good")] + [
        pb.ImageInput(data=data, media_id=case) for case, data, _ in IMAGE_CASES[:3]
    ]
    reply = stub.EmbedImages(pb.EmbedImagesRequest(images=images), timeout=60)
    assert [r.media_id for r in reply.results] == [i.media_id for i in images]
    good, *bad = reply.results
    assert good.error_code == 0 and len(good.faces) == 1
    for (case, _, says), result in zip(IMAGE_CASES[:3], bad, strict=True):
        assert result.error_code == INVALID.value[0], case
        assert says in result.error_message
        assert not result.faces


def test_empty_batches_are_invalid_argument(stub) -> None:
    for call, request, field in (
        (stub.EmbedImages, pb.EmbedImagesRequest(), "images"),
        (stub.EmbedFaces, pb.EmbedFacesRequest(), "crops"),
        (stub.EmbedText, pb.EmbedTextRequest(), "texts"),
    ):
        err = _call_refused(call, request)
        assert err.code() == INVALID
        assert field_violations(err) == [(field, "is empty: send at least one item")]


def test_batches_over_the_maximum_are_resource_exhausted(stub) -> None:
    tiny = one_pixel()  # never decoded: the size check comes first
    cases = (
        (
            stub.EmbedImages,
            pb.EmbedImagesRequest(images=[pb.ImageInput(data=tiny)] * (MAX_BATCH + 1)),
        ),
        (stub.EmbedFaces, pb.EmbedFacesRequest(crops=[pb.FaceCrop(data=tiny)] * (MAX_BATCH + 1))),
        (stub.EmbedText, pb.EmbedTextRequest(texts=["a face"] * (MAX_TEXT_BATCH + 1))),
    )
    for call, request in cases:
        err = _call_refused(call, request)
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "over this server's limit" in err.details()


def test_text_over_the_token_limit_is_refused_not_truncated(stub) -> None:
    long_text = "the archive photo shows a smiling man " * 60  # ~360 word pieces
    err = _call_refused(stub.EmbedText, pb.EmbedTextRequest(texts=["ok", long_text]))
    assert err.code() == INVALID
    (field, problem), *_ = field_violations(err)
    assert field == "texts[1]"
    assert "limit is 256" in problem


def test_empty_text_and_unknown_models_are_invalid_argument(stub) -> None:
    err = _call_refused(stub.EmbedText, pb.EmbedTextRequest(texts=["fine", "  "]))
    assert err.code() == INVALID and field_violations(err)[0][0] == "texts[1]"
    err = _call_refused(stub.EmbedText, pb.EmbedTextRequest(texts=["x"], model_id="clip-b32"))
    assert err.code() == INVALID and "model_id" in err.details()
    request = pb.EmbedImagesRequest(images=[pb.ImageInput(data=photo())], model_id="arcface-r100")
    err = _call_refused(stub.EmbedImages, request)
    assert err.code() == INVALID and "model_id" in err.details()


def test_out_of_range_threshold_is_invalid_argument(stub) -> None:
    request = pb.EmbedImagesRequest(
        images=[pb.ImageInput(data=photo())], options=pb.DetectionOptions(score_threshold=1.5)
    )
    err = _call_refused(stub.EmbedImages, request)
    assert err.code() == INVALID
    assert field_violations(err)[0][0] == "options.score_threshold"


def test_service_still_serves_after_bad_input(stub, embedder) -> None:
    reply = stub.EmbedImages(
        pb.EmbedImagesRequest(images=[pb.ImageInput(data=photo())]), timeout=30
    )
    assert len(reply.results[0].faces) == 1
    assert embedder.proc.poll() is None


def test_megabyte_texts_are_refused_quickly_and_health_stays_up(stub, embedder) -> None:
    import time

    from grpc_health.v1 import health_pb2, health_pb2_grpc

    huge = ["x" * 1_000_000] * 8
    started = time.perf_counter()
    err = _call_refused(stub.EmbedText, pb.EmbedTextRequest(texts=huge))
    assert err.code() == INVALID
    assert field_violations(err)[0][0] == "texts[0]" and "bytes" in err.details()
    assert time.perf_counter() - started < 2.0  # refused before any tokenizing
    health = health_pb2_grpc.HealthStub(embedder.channel())
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1


def test_more_faces_than_the_server_returns_is_invalid_argument(stub) -> None:
    request = pb.EmbedImagesRequest(
        images=[pb.ImageInput(data=photo())], options=pb.DetectionOptions(max_faces=100_000)
    )
    err = _call_refused(stub.EmbedImages, request)
    assert err.code() == INVALID
    assert field_violations(err)[0][0] == "options.max_faces"
