"""What happens around every RPC handler, in one place: authentication, error mapping and
metrics. A grpc.aio server interceptor wraps each method handler with it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from facesearch_server.runtime import errors, metrics
from facesearch_server.runtime.auth import Authenticator

log = logging.getLogger("facesearch.rpc")


class _Call:
    """Book-keeping of one RPC: who, how long, and how it ended."""

    def __init__(self, pipeline: CallPipeline, method: str, context: grpc.aio.ServicerContext):
        self.pipeline = pipeline
        self.method = method
        self.short = method.rsplit("/", 1)[-1]
        self.context = context
        self.start = time.perf_counter()
        self.code = grpc.StatusCode.OK

    def __enter__(self) -> _Call:
        metrics.RPC_IN_FLIGHT.labels(self.pipeline.service).inc()
        return self

    def __exit__(self, *exc: object) -> None:
        service = self.pipeline.service
        metrics.RPC_IN_FLIGHT.labels(service).dec()
        metrics.RPC_TOTAL.labels(service, self.short, self.code.name).inc()
        metrics.RPC_LATENCY.labels(service, self.short).observe(time.perf_counter() - self.start)

    def authenticate(self) -> None:
        self.pipeline.auth.authenticate(self.method, self.context)

    async def fail(self, exc: BaseException) -> None:
        """Answer the caller for ``exc``; always raises."""
        if isinstance(exc, errors.ServiceError):
            self.code = exc.code
            log.info(
                "rpc refused",
                extra={"method": self.short, "code": exc.code.name, "why": exc.message},
            )
            status = errors.to_rpc_status(exc)
            await self.context.abort(status.code, status.details, status.trailing_metadata)
        if isinstance(exc, NotImplementedError):
            # A method the servicer does not override (the generated base class raises this).
            self.code = grpc.StatusCode.UNIMPLEMENTED
            await self.context.abort(
                grpc.StatusCode.UNIMPLEMENTED, f"{self.short} is not served by this server"
            )
        if isinstance(exc, asyncio.CancelledError):
            self.code = grpc.StatusCode.CANCELLED
            raise exc
        if isinstance(exc, grpc.aio.AbortError):
            code = self.context.code()
            self.code = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
            raise exc
        self.code = grpc.StatusCode.INTERNAL
        log.error("rpc failed", exc_info=exc, extra={"method": self.short})
        await self.context.abort(
            grpc.StatusCode.INTERNAL, f"internal error in {self.short}; the server log has details"
        )


class CallPipeline(grpc.aio.ServerInterceptor):
    def __init__(self, service: str, authenticator: Authenticator) -> None:
        self.service = service
        self.auth = authenticator

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method

        def unary_response(behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
            async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
                with _Call(self, method, context) as call:
                    try:
                        call.authenticate()
                        return await behavior(request, context)
                    except BaseException as exc:
                        await call.fail(exc)

            return wrapped

        def stream_response(behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., Any]:
            async def wrapped(
                request: Any, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                with _Call(self, method, context) as call:
                    try:
                        call.authenticate()
                        answer = behavior(request, context)
                        if inspect.isasyncgen(answer):
                            async for item in answer:
                                yield item
                        else:
                            # A handler that writes through context.write() and returns (as
                            # grpc's own health Watch does) instead of yielding.
                            await answer
                        if context.cancelled():
                            call.code = grpc.StatusCode.CANCELLED
                    except BaseException as exc:
                        await call.fail(exc)

            return wrapped

        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                unary_response(handler.unary_unary), **kwargs
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                unary_response(handler.stream_unary), **kwargs
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                stream_response(handler.unary_stream), **kwargs
            )
        return grpc.stream_stream_rpc_method_handler(
            stream_response(handler.stream_stream), **kwargs
        )
