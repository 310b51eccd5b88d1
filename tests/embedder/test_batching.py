"""The local runtime's dynamic batcher: concurrent calls share model runs, each caller gets
its own rows back, shapes that cannot be stacked run apart, a failure reaches every caller of
that run."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from facesearch_server.embedder.backends.batching import DynamicBatcher


class SlowDouble:
    """A stand-in model (the batching logic is what is tested): doubles its input, slowly."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    async def __call__(self, model_id: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
        self.batches.append(len(inputs["x"]))
        await asyncio.sleep(0.05)
        if (inputs["x"] < 0).any():
            raise RuntimeError("model failed")
        return inputs["x"] * 2


def test_concurrent_calls_are_merged_and_split_back() -> None:
    model = SlowDouble()
    batcher = DynamicBatcher(model, max_batch=64)

    async def run() -> list[np.ndarray]:
        calls = [batcher.infer("m", {"x": np.full((1 + i % 3, 4), float(i))}) for i in range(20)]
        return await asyncio.gather(*calls)

    outs = asyncio.run(run())
    for i, out in enumerate(outs):
        assert out.shape == (1 + i % 3, 4)
        assert (out == 2.0 * i).all()
    assert sum(model.batches) == sum(1 + i % 3 for i in range(20))
    assert len(model.batches) <= 3  # the first call alone, then the rest together


def test_batches_respect_max_batch_and_shapes() -> None:
    model = SlowDouble()
    batcher = DynamicBatcher(model, max_batch=4)

    async def run() -> list[np.ndarray]:
        same = [batcher.infer("m", {"x": np.ones((1, 4))}) for _ in range(9)]
        other = [batcher.infer("m", {"x": np.ones((1, 7))}) for _ in range(2)]
        return await asyncio.gather(*same, *other)

    outs = asyncio.run(run())
    assert [o.shape[1] for o in outs] == [4] * 9 + [7] * 2
    assert max(model.batches) <= 4
    assert sum(model.batches) == 11


def test_a_failed_run_fails_every_caller_in_it_and_the_batcher_goes_on() -> None:
    batcher = DynamicBatcher(SlowDouble(), max_batch=64)

    async def run() -> tuple[list[object], np.ndarray]:
        merged = [batcher.infer("m", {"x": np.ones((1, 2))})]
        merged += [batcher.infer("m", {"x": -np.ones((1, 2))}) for _ in range(3)]
        failed = await asyncio.gather(*merged, return_exceptions=True)
        return failed, await batcher.infer("m", {"x": np.ones((2, 2))})

    failed, after = asyncio.run(run())
    assert all(isinstance(f, RuntimeError) for f in failed)
    assert (after == 2).all()


def test_a_cancelled_caller_does_not_stall_the_others() -> None:
    batcher = DynamicBatcher(SlowDouble(), max_batch=64)

    async def run() -> np.ndarray:
        first = asyncio.ensure_future(batcher.infer("m", {"x": np.ones((1, 2))}))
        doomed = asyncio.ensure_future(batcher.infer("m", {"x": np.ones((1, 2))}))
        later = asyncio.ensure_future(batcher.infer("m", {"x": np.full((1, 2), 3.0)}))
        await asyncio.sleep(0)
        doomed.cancel()
        await first
        with pytest.raises(asyncio.CancelledError):
            await doomed
        return await asyncio.wait_for(later, 2)

    assert (asyncio.run(run()) == 6).all()
