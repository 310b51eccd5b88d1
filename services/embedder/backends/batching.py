"""Merge concurrent encoder calls into one batch, as Triton's dynamic batcher does.

Many clients sending one face each would otherwise run the model once per face. Calls queued
while the model is busy are concatenated along the batch dimension (only calls whose tensors
agree on every other dimension; texts of different lengths run apart) and the output is split
back per caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

Run = Callable[[str, dict[str, np.ndarray]], Awaitable[np.ndarray]]


@dataclass
class _Call:
    inputs: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future[np.ndarray] = field(repr=False)

    @property
    def key(self) -> tuple[tuple[str, tuple[int, ...], str], ...]:
        return tuple((n, a.shape[1:], a.dtype.str) for n, a in self.inputs.items())


class DynamicBatcher:
    def __init__(self, run: Run, max_batch: int) -> None:
        self.run = run
        self.max_batch = max_batch
        self._queues: dict[str, list[_Call]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}

    async def infer(self, model_id: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
        rows = len(next(iter(inputs.values())))
        call = _Call(inputs, rows, asyncio.get_running_loop().create_future())
        self._queues.setdefault(model_id, []).append(call)
        worker = self._workers.get(model_id)
        if worker is None or worker.done():
            self._workers[model_id] = asyncio.create_task(self._drain(model_id))
        return await call.future

    def _take(self, queue: list[_Call]) -> list[_Call]:
        """The oldest call plus queued calls of the same shape, up to max_batch rows."""
        first = queue.pop(0)
        group, rows = [first], first.rows
        for call in list(queue):
            if call.key == first.key and rows + call.rows <= self.max_batch:
                queue.remove(call)
                group.append(call)
                rows += call.rows
        return group

    async def _drain(self, model_id: str) -> None:
        queue = self._queues[model_id]
        while queue:
            group = [c for c in self._take(queue) if not c.future.cancelled()]
            if not group:
                continue
            try:
                if len(group) == 1:
                    out = await self.run(model_id, group[0].inputs)
                else:
                    merged = {
                        name: np.concatenate([c.inputs[name] for c in group])
                        for name in group[0].inputs
                    }
                    out = await self.run(model_id, merged)
            except Exception as exc:
                for c in group:
                    if not c.future.done():
                        c.future.set_exception(exc)
                continue
            start = 0
            for c in group:
                if not c.future.done():
                    c.future.set_result(out[start : start + c.rows])
                start += c.rows

    async def close(self) -> None:
        for worker in self._workers.values():
            worker.cancel()
