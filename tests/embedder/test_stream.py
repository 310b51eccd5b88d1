"""EmbedImagesStream: results in order, per-image errors without failing the stream, options
from the first message, and a bounded read-ahead (backpressure)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import numpy as np

from facesearch_contract.v1 import embedder_pb2 as pb
from facesearch_server.embedder.backends.local import LocalRuntime
from facesearch_server.embedder.pipeline import FacePipeline
from facesearch_server.embedder.servicer import EmbedderServicer
from facesearch_server.embedder.text_encoding import TextEncoder
from tests.embedder.conftest import MODEL_DIR, package_photos


def test_stream_returns_every_result_in_order_with_per_image_errors(stub) -> None:
    photos = [p.read_bytes() for p in package_photos()[:5]]
    sent: list[str] = []

    def requests() -> Iterator[pb.EmbedStreamRequest]:
        yield pb.EmbedStreamRequest(options=pb.DetectionOptions(max_faces=1, min_face_size=20))
        for i in range(12):
            media_id = f"m{i}"
            data = photos[i % len(photos)] if i % 4 != 3 else b"GIF89a broken"
            sent.append(media_id)
            yield pb.EmbedStreamRequest(image=pb.ImageInput(data=data, media_id=media_id))

    results = list(stub.EmbedImagesStream(requests(), timeout=120))
    assert [r.media_id for r in results] == sent
    assert [r.index for r in results] == list(range(12))
    for r in results:
        if int(r.media_id[1:]) % 4 == 3:
            assert r.error_code == 3 and "image[" in r.error_message and not r.faces
        else:
            assert r.error_code == 0 and len(r.faces) == 1
            assert np.linalg.norm(r.faces[0].embedding.values) > 0.999
    # The same photo gives the same vector wherever it sits in the stream.
    first, again = results[0].faces[0], results[5].faces[0]
    assert np.dot(first.embedding.values, again.embedding.values) > 0.9999


def test_stream_of_only_bad_images_still_completes(stub) -> None:
    requests = (
        pb.EmbedStreamRequest(image=pb.ImageInput(data=b"", media_id=str(i))) for i in range(3)
    )
    results = list(stub.EmbedImagesStream(requests, timeout=30))
    assert [r.error_code for r in results] == [3, 3, 3]
    assert all("is empty" in r.error_message for r in results)


def test_stream_reads_at_most_a_window_ahead_of_its_consumer(model_dir) -> None:
    """A client that sends faster than results are taken is held back, not buffered."""
    runtime = LocalRuntime(MODEL_DIR)
    runtime.load()
    window = 4
    servicer = EmbedderServicer(
        runtime, FacePipeline(runtime), TextEncoder(runtime), stream_window=window
    )
    photo = package_photos()[0].read_bytes()
    pulled = 0

    async def requests() -> AsyncIterator[pb.EmbedStreamRequest]:
        nonlocal pulled
        for i in range(50):
            pulled += 1
            yield pb.EmbedStreamRequest(image=pb.ImageInput(data=photo, media_id=str(i)))

    async def run() -> tuple[int, int, int]:
        stream = servicer.EmbedImagesStream(requests(), None)  # type: ignore[arg-type]
        first = await stream.__anext__()
        await asyncio.sleep(1.0)  # a slow consumer: the reader must stall meanwhile
        pulled_while_slow = pulled
        rest = [r async for r in stream]
        await servicer.close()
        await runtime.close()
        return first.index, pulled_while_slow, len(rest)

    first_index, pulled_while_slow, rest = asyncio.run(run())
    assert first_index == 0 and rest == 49
    # The consumer took 1 result; the batch being encoded, the queue (window) and one pending
    # put are all the reader may hold.
    assert pulled_while_slow <= 1 + 2 * window + 1
