"""What happens around every RPC handler, in one place: authentication, request parsing,
error mapping and metrics. A grpc.aio server interceptor wraps each method handler with it.

Requests are parsed here, inside the handler, rather than by grpc: grpc answers a request its
deserializer refuses with UNKNOWN and the Python exception's name, while bytes that are not a
valid message (invalid UTF-8 in a string, nesting past the parser's limit) are the caller's
error: INVALID_ARGUMENT naming the message type. Parsing after authentication also means an
unauthenticated caller learns nothing about what the server expects.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
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
        self._recorded = False

    def __enter__(self) -> _Call:
        metrics.RPC_IN_FLIGHT.labels(self.pipeline.service).inc()
        return self

    def __exit__(self, *exc: object) -> None:
        self._record()

    def _record(self) -> None:
        """Count the call once. grpc.aio's abort sends the status before it raises, so a
        refused call is counted before its abort: a caller that scrapes /metrics right after
        its error must see the error counted."""
        if self._recorded:
            return
        self._recorded = True
        service = self.pipeline.service
        metrics.RPC_IN_FLIGHT.labels(service).dec()
        metrics.RPC_TOTAL.labels(service, self.short, self.code.name).inc()
        metrics.RPC_LATENCY.labels(service, self.short).observe(time.perf_counter() - self.start)

    async def _abort(self, code: grpc.StatusCode, details: str, trailing: Any = ()) -> None:
        self.code = code
        self._record()
        await self.context.abort(code, details, trailing)

    def authenticate(self) -> None:
        self.pipeline.auth.authenticate(self.method, self.context)

    async def fail(self, exc: BaseException) -> None:
        """Answer the caller for ``exc``; always raises."""
        if isinstance(exc, errors.ServiceError):
            log.info(
                "rpc refused",
                extra={"method": self.short, "code": exc.code.name, "why": exc.message},
            )
            status = errors.to_rpc_status(exc)
            await self._abort(status.code, status.details, status.trailing_metadata)
        if isinstance(exc, NotImplementedError):
            # A method the servicer does not override (the generated base class raises this).
            await self._abort(
                grpc.StatusCode.UNIMPLEMENTED, f"{self.short} is not served by this server"
            )
        if isinstance(exc, asyncio.CancelledError):
            self.code = grpc.StatusCode.CANCELLED
            raise exc
        if isinstance(exc, grpc.aio.AbortError):
            code = self.context.code()
            self.code = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
            raise exc
        log.error("rpc failed", exc_info=exc, extra={"method": self.short})
        await self._abort(
            grpc.StatusCode.INTERNAL, f"internal error in {self.short}; the server log has details"
        )


Deserializer = Callable[[bytes], Any]


def _parser(deserializer: Deserializer | None) -> Deserializer:
    """``deserializer`` with its failures as INVALID_ARGUMENT; identity when there is none."""
    if deserializer is None:
        return lambda raw: raw
    cls = getattr(deserializer, "__self__", None)  # the message class of ``X.FromString``
    descriptor = getattr(cls, "DESCRIPTOR", None)
    name = getattr(descriptor, "full_name", "") or "request message"

    def parse(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception as exc:
            # Only the caller's bytes reach the parser, so any failure is theirs; the parser's
            # own words name no field, and its exception class is not the caller's business.
            raise errors.InvalidArgument(
                "request",
                f"is not a valid {name}: the bytes do not parse (invalid UTF-8 in a string "
                "field, nesting past the parser's depth limit, or a truncated or corrupt "
                "encoding); send messages built by protobuf stubs of the published contract",
            ) from exc

    return parse


async def _parsed(raw: AsyncIterable[bytes], parse: Deserializer) -> AsyncIterator[Any]:
    async for item in raw:
        yield parse(item)


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
        parse = _parser(handler.request_deserializer)
        streamed_request = handler.request_streaming

        def request_of(raw: Any) -> Any:
            """The parsed request, or for a streamed one an iterator that parses each."""
            return _parsed(raw, parse) if streamed_request else parse(raw)

        def unary_response(behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
            async def wrapped(raw: Any, context: grpc.aio.ServicerContext) -> Any:
                with _Call(self, method, context) as call:
                    try:
                        call.authenticate()
                        return await behavior(request_of(raw), context)
                    except BaseException as exc:
                        await call.fail(exc)

            return wrapped

        def stream_response(behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., Any]:
            async def wrapped(raw: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                with _Call(self, method, context) as call:
                    try:
                        call.authenticate()
                        answer = behavior(request_of(raw), context)
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

        # No deserializer: grpc hands over the raw bytes and ``request_of`` parses them.
        kwargs = {
            "request_deserializer": None,
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
