"""Channels to the services, sync and asyncio, with what every call needs.

- Retries: gRPC's own retry policy (service config), only for idempotent methods and only on
  UNAVAILABLE, with exponential backoff and jitter. A retried call keeps its one deadline.
- API key and default deadline: a client interceptor adds ``x-api-key`` and, when the caller
  gave no timeout, the settings' default, so no call can hang forever.
- TLS: system roots or a given CA; ``tls_server_name`` when dialling an IP.
- Reconnects: within a second of a service coming back (gRPC's default backoff grows to 120 s,
  and a call made while a channel waits it out fails at once, for seconds after the service is
  back); a caller who would rather wait passes ``wait_for_ready=True`` with its timeout.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import grpc

from facesearch.settings import ClientSettings

# Safe to send twice: a second attempt leaves the same state as one. CreateCollection,
# DropCollection, StartSession, SubmitFeedback and EndSession are not (a retry could answer
# ALREADY_EXISTS or NOT_FOUND, or count a round twice), nor are the streams.
IDEMPOTENT_METHODS: dict[str, tuple[str, ...]] = {
    "facesearch.v1.Embedder": (
        "EmbedImages",
        "EmbedFaces",
        "EmbedText",
        "FuseDescription",
        "ListModels",
    ),
    "facesearch.v1.Retriever": (
        "ListCollections",
        "DescribeCollection",
        "SetAlias",
        "ListAliases",
        "Upsert",
        "Get",
        "Delete",
        "Search",
        "Stats",
    ),
    "facesearch.v1.Personalizer": ("GetSession", "ResetUser", "DescribeUser"),
    "grpc.health.v1.Health": ("Check",),
}


def service_config(settings: ClientSettings) -> str:
    names = [
        {"service": service, "method": method}
        for service, methods in IDEMPOTENT_METHODS.items()
        for method in methods
    ]
    if settings.max_attempts < 2:
        # One attempt means no retry; gRPC refuses a retry policy of fewer than 2 attempts.
        return json.dumps({"methodConfig": [{"name": names}]})
    policy = {
        "maxAttempts": min(settings.max_attempts, 5),
        "initialBackoff": f"{settings.initial_backoff_s}s",
        "maxBackoff": f"{settings.max_backoff_s}s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    return json.dumps({"methodConfig": [{"name": names, "retryPolicy": policy}]})


# The same as between the services (facesearch_server.runtime.downstream): try again within a
# second once a service went away, and give one connection attempt at least a second.
RECONNECT_BACKOFF: list[tuple[str, Any]] = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 1000),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def channel_options(settings: ClientSettings) -> list[tuple[str, Any]]:
    size = settings.max_message_mb * 1024 * 1024
    options: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", size),
        ("grpc.max_receive_message_length", size),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", service_config(settings)),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        *RECONNECT_BACKOFF,
    ]
    if settings.tls_server_name:
        options.append(("grpc.ssl_target_name_override", settings.tls_server_name))
    return options


def channel_credentials(settings: ClientSettings) -> grpc.ChannelCredentials | None:
    if not settings.uses_tls:
        return None
    root = Path(settings.tls_ca_file).read_bytes() if settings.tls_ca_file else None
    if settings.tls_cert_file:
        # mTLS: the client certificate is the caller's identity (its CN is the tenant).
        return grpc.ssl_channel_credentials(
            root_certificates=root,
            private_key=Path(settings.tls_key_file or "").read_bytes(),
            certificate_chain=Path(settings.tls_cert_file).read_bytes(),
        )
    return grpc.ssl_channel_credentials(root_certificates=root)


class _Details(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class _CallDefaults:
    """What the interceptors add to a call: the API key and a default deadline."""

    def __init__(self, settings: ClientSettings) -> None:
        self.key = settings.api_key
        self.timeout = settings.timeout_s
        self.stream_timeout = settings.stream_timeout_s

    def apply(self, details: Any, streaming: bool) -> tuple[float | None, list[tuple[str, str]]]:
        timeout = details.timeout
        if timeout is None:
            timeout = self.stream_timeout if streaming else self.timeout
        metadata = list(details.metadata or ())
        if self.key and not any(k in ("x-api-key", "authorization") for k, _ in metadata):
            metadata.append(("x-api-key", self.key))
        return timeout, metadata


class SyncDefaults(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, settings: ClientSettings) -> None:
        self.defaults = _CallDefaults(settings)

    def _details(self, details: Any, streaming: bool) -> _Details:
        timeout, metadata = self.defaults.apply(details, streaming)
        return _Details(
            details.method,
            timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Callable, details: Any, request: Any) -> Any:
        return continuation(self._details(details, False), request)

    def intercept_unary_stream(self, continuation: Callable, details: Any, request: Any) -> Any:
        return continuation(self._details(details, True), request)

    def intercept_stream_unary(self, continuation: Callable, details: Any, requests: Any) -> Any:
        return continuation(self._details(details, True), requests)

    def intercept_stream_stream(self, continuation: Callable, details: Any, requests: Any) -> Any:
        return continuation(self._details(details, True), requests)


def _aio_details(defaults: _CallDefaults, details: Any, streaming: bool) -> Any:
    timeout, metadata = defaults.apply(details, streaming)
    return grpc.aio.ClientCallDetails(
        details.method,
        timeout,
        grpc.aio.Metadata(*metadata),
        details.credentials,
        details.wait_for_ready,
    )


# grpc.aio files an interceptor under the first call kind it implements, so each kind needs
# its own class.
class _AioUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, defaults: _CallDefaults) -> None:
        self.defaults = defaults

    async def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return await continuation(_aio_details(self.defaults, details, False), request)


class _AioUnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, defaults: _CallDefaults) -> None:
        self.defaults = defaults

    async def intercept_unary_stream(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return await continuation(_aio_details(self.defaults, details, True), request)


class _AioStreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    def __init__(self, defaults: _CallDefaults) -> None:
        self.defaults = defaults

    async def intercept_stream_unary(self, continuation, details, requests):  # type: ignore[no-untyped-def]
        return await continuation(_aio_details(self.defaults, details, True), requests)


class _AioStreamStream(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, defaults: _CallDefaults) -> None:
        self.defaults = defaults

    async def intercept_stream_stream(self, continuation, details, requests):  # type: ignore[no-untyped-def]
        return await continuation(_aio_details(self.defaults, details, True), requests)


def open_sync_channel(address: str, settings: ClientSettings) -> grpc.Channel:
    creds = channel_credentials(settings)
    options = channel_options(settings)
    if creds is not None:
        raw = grpc.secure_channel(address, creds, options=options)
    else:
        raw = grpc.insecure_channel(address, options=options)
    return grpc.intercept_channel(raw, SyncDefaults(settings))


def open_aio_channel(address: str, settings: ClientSettings) -> grpc.aio.Channel:
    defaults = _CallDefaults(settings)
    interceptors = [
        _AioUnaryUnary(defaults),
        _AioUnaryStream(defaults),
        _AioStreamUnary(defaults),
        _AioStreamStream(defaults),
    ]
    creds = channel_credentials(settings)
    options = channel_options(settings)
    if creds is not None:
        return grpc.aio.secure_channel(address, creds, options, interceptors=interceptors)
    return grpc.aio.insecure_channel(address, options, interceptors=interceptors)
