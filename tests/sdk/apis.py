"""The SDK's two APIs behind one face, so a live test runs its flows through both: ``SyncApi``
(``flows.<flow>(client, ...)``) and ``AsyncApi`` (``await aio.<flow>(client, ...)``). The
``api`` fixture (conftest.py) gives each test one of them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from facesearch import ClientSettings, FacesearchClient, aio, flows
from facesearch.aio import AsyncFacesearchClient


class SyncApi:
    """``api.<flow>(...)`` = ``flows.<flow>(client, ...)``."""

    mode = "sync"

    def __init__(self, client: FacesearchClient) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        flow = getattr(flows, name)
        if name in flows.STREAMING_FLOWS:
            return lambda *args, **kw: list(flow(self.client, *args, **kw))
        return lambda *args, **kw: flow(self.client, *args, **kw)

    def rpc(self, service: str, method: str, request: Any) -> Any:
        return getattr(getattr(self.client, service), method)(request)


class AsyncApi:
    """``api.<flow>(...)`` = ``await aio.<flow>(client, ...)``, run on a loop of its own
    (asyncio.Runner), where the AsyncFacesearchClient lives."""

    mode = "async"

    def __init__(self, runner: asyncio.Runner, client: AsyncFacesearchClient) -> None:
        self.runner, self.client = runner, client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        flow = getattr(aio, name)
        if name in aio.STREAMING_FLOWS:

            async def collect(*args: Any, **kw: Any) -> list[Any]:
                return [item async for item in flow(self.client, *args, **kw)]

            return lambda *args, **kw: self.runner.run(collect(*args, **kw))
        return lambda *args, **kw: self.runner.run(flow(self.client, *args, **kw))

    def rpc(self, service: str, method: str, request: Any) -> Any:
        call = getattr(getattr(self.client, service), method)

        async def reply() -> Any:
            return await call(request)

        return self.runner.run(reply())


async def open_async(settings: ClientSettings) -> AsyncFacesearchClient:
    # Made inside the runner's loop: the client's channel binds to the running loop.
    return AsyncFacesearchClient(settings)
