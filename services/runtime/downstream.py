"""Calls one service makes to another: channels, deadline propagation, forwarded credentials,
retries.

A call made while handling an RPC gets the smaller of the incoming call's remaining time and
the configured bound, so a caller's deadline holds across the whole chain, and it carries the
caller's credentials, so the next service sees the same tenant.

Retries are gRPC's own (a retry policy in the channel's service config), for the reads the
contract marks ``idempotency_level = NO_SIDE_EFFECTS`` and on UNAVAILABLE only: the peer is
restarting or a connection broke before it answered, and sending a read again changes nothing.
Every attempt counts against the call's one deadline, so a retry never makes a caller wait
longer than it allowed; writes are never retried here (the caller decides whether to repeat one).

Reconnects are prompt: gRPC's default backoff between connection attempts grows to 120 s, and a
call made while a channel waits out its backoff fails at once, so a peer back after an outage of
seconds went on failing for seconds more. Here the backoff stays under a second, and a call made
while the connection is down first waits (``downstream_connect_wait_s``, at most half of what is
left of its deadline) for the connection to come back, then is sent; a router's calls to its
shard servers do not wait, since it answers without a shard that is down (allow_partial).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import pkgutil
import time
from functools import cache
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2

import facesearch_contract.v1
from facesearch_server.runtime.auth import forwarded_credentials
from facesearch_server.runtime.config import ServerConfig
from facesearch_server.runtime.errors import DeadlineExceeded

# Keepalive keeps idle service-to-service channels alive through load balancers and lets a
# dead peer be noticed without waiting for a call to time out.
_KEEPALIVE = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
]
# Try again within a second once a peer went away (default: 1 s growing x1.6 up to 120 s), and
# give one connection attempt at least a second (default 20 s: a peer whose address black-holes
# packets would be retried only that often).
RECONNECT_BACKOFF = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 1000),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


# A few quick attempts: a restarting peer is back within a second or it is down, and then the
# caller's own retry (or a router's partial answer) is the better answer than waiting longer.
RETRY_POLICY = {
    "maxAttempts": 3,
    "initialBackoff": "0.05s",
    "maxBackoff": "0.5s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
# Per peer: once about half of recent calls failed, stop retrying (each failure costs a token,
# each success gives back a tenth), so an outage is not multiplied by the attempts.
RETRY_THROTTLING = {"maxTokens": 10, "tokenRatio": 0.1}
# Health checks are reads too, though not in the contract.
_EXTRA_READS = (("grpc.health.v1.Health", "Check"),)


@cache
def read_methods() -> tuple[tuple[str, str], ...]:
    """(service, method) of every contract method marked NO_SIDE_EFFECTS, the health check too.

    Read from the generated descriptors of every ``*_service_pb2`` module of the contract, so a
    service added to the contract (the retriever's internal one included) is covered by marking
    its reads in the .proto, not by a list here.
    """
    reads = list(_EXTRA_READS)
    package = facesearch_contract.v1
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.endswith("_service_pb2"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                level = method.GetOptions().idempotency_level
                if level == descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS:
                    reads.append((service.full_name, method.name))
    return tuple(sorted(reads))


def service_config() -> str:
    """The channel's service config: the retry policy on every read, throttled per peer."""
    names = [{"service": service, "method": method} for service, method in read_methods()]
    return json.dumps(
        {
            "methodConfig": [{"name": names, "retryPolicy": RETRY_POLICY}],
            "retryThrottling": RETRY_THROTTLING,
        }
    )


def retry_options(max_message_bytes: int) -> list[tuple[str, int | str]]:
    """Channel arguments that turn the retry policy on for a channel to another service."""
    return [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", service_config()),
        # A call is retried only while its request is still buffered (default 256 KiB): a
        # Search with thousands of excluded ids, or a seed photo, is larger.
        ("grpc.per_rpc_retry_buffer_size", max_message_bytes),
    ]


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        *_KEEPALIVE,
    ]


# Calls whose caller has its own answer for a peer that is down: a router answers without a
# shard server that cannot be reached (allow_partial, missing_shards), and waiting for that
# server would only delay every search while it is down.
_NO_CONNECT_WAIT = (b"/facesearch.v1.RetrieverShard/",)


def _answers_without_peer(method: bytes | str) -> bool:
    name = method.encode() if isinstance(method, str) else method
    return name.startswith(_NO_CONNECT_WAIT)


class _ConnectWait:
    """Before a call, waits a bounded time for a channel that is not connected to connect.

    gRPC's own ``wait_for_ready`` would wait for the whole deadline (30 s when the caller gave
    none) before a peer that is down is reported; this waits at most ``wait_s`` and at most half
    of the call's remaining time, so the call itself keeps the other half, and then sends the
    call whatever the state: a peer still down answers UNAVAILABLE as before.
    """

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s
        self.channel: grpc.aio.Channel | None = None  # set once the channel exists

    async def details(self, details: Any) -> Any:
        channel = self.channel
        if channel is None or self.wait_s <= 0 or _answers_without_peer(details.method):
            return details
        state = channel.get_state(try_to_connect=True)
        if state == grpc.ChannelConnectivity.READY:
            return details
        timeout = details.timeout
        budget = self.wait_s if timeout is None else min(self.wait_s, timeout / 2)
        started = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(channel.channel_ready(), budget)
        if timeout is None:
            return details
        # The call's one deadline holds: the time spent waiting is taken off it.
        return grpc.aio.ClientCallDetails(
            details.method,
            max(timeout - (time.monotonic() - started), 0.0),
            details.metadata,
            details.credentials,
            details.wait_for_ready,
        )


# grpc.aio files an interceptor under the first call kind it implements: one class per kind.
class _WaitUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, wait: _ConnectWait) -> None:
        self.wait = wait

    async def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return await continuation(await self.wait.details(details), request)


class _WaitUnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, wait: _ConnectWait) -> None:
        self.wait = wait

    async def intercept_unary_stream(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return await continuation(await self.wait.details(details), request)


class _WaitStreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    def __init__(self, wait: _ConnectWait) -> None:
        self.wait = wait

    async def intercept_stream_unary(self, continuation, details, requests):  # type: ignore[no-untyped-def]
        return await continuation(await self.wait.details(details), requests)


class _WaitStreamStream(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, wait: _ConnectWait) -> None:
        self.wait = wait

    async def intercept_stream_stream(self, continuation, details, requests):  # type: ignore[no-untyped-def]
        return await continuation(await self.wait.details(details), requests)


def open_channel(address: str, cfg: ServerConfig) -> grpc.aio.Channel:
    """An asyncio channel to another service, TLS when this deployment uses TLS; reads are
    retried on UNAVAILABLE, and a call waits a moment for a lost connection to come back (see
    the module's docstring)."""
    wait = _ConnectWait(cfg.downstream_connect_wait_s)
    channel = _open(
        address,
        cfg,
        [
            _WaitUnaryUnary(wait),
            _WaitUnaryStream(wait),
            _WaitStreamUnary(wait),
            _WaitStreamStream(wait),
        ],
    )
    wait.channel = channel
    return channel


def _open(address: str, cfg: ServerConfig, interceptors: list[Any]) -> grpc.aio.Channel:
    options = [
        *channel_options(cfg.max_message_bytes),
        *retry_options(cfg.max_message_bytes),
        *RECONNECT_BACKOFF,
    ]
    if cfg.tls_cert_file:
        ca = Path(cfg.tls_client_ca_file or cfg.tls_cert_file).read_bytes()
        if cfg.tls_client_ca_file:
            # mTLS deployment: the peer requires a client certificate; present our own.
            creds = grpc.ssl_channel_credentials(
                root_certificates=ca,
                private_key=Path(cfg.tls_key_file).read_bytes(),
                certificate_chain=Path(cfg.tls_cert_file).read_bytes(),
            )
        else:
            creds = grpc.ssl_channel_credentials(ca)
        return grpc.aio.secure_channel(address, creds, options, interceptors=interceptors)
    return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)


def call_options(context: grpc.aio.ServicerContext | None, bound_s: float) -> dict[str, object]:
    """``timeout`` and ``metadata`` for a downstream call made on behalf of ``context``."""
    timeout = bound_s
    if context is not None:
        remaining = context.time_remaining()
        if remaining is not None:
            if remaining <= 0:
                raise DeadlineExceeded("the caller's deadline passed before the downstream call")
            timeout = min(timeout, remaining)
    return {"timeout": timeout, "metadata": forwarded_credentials()}
