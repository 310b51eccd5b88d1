"""Calls one service makes to another: channels, deadline propagation, forwarded credentials.

A call made while handling an RPC gets the smaller of the incoming call's remaining time and
the configured bound, so a caller's deadline holds across the whole chain, and it carries the
caller's credentials, so the next service sees the same tenant.
"""

from __future__ import annotations

from pathlib import Path

import grpc

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


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        *_KEEPALIVE,
    ]


def open_channel(address: str, cfg: ServerConfig) -> grpc.aio.Channel:
    """An asyncio channel to another service, TLS when this deployment uses TLS."""
    options = channel_options(cfg.max_message_bytes)
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
        return grpc.aio.secure_channel(address, creds, options)
    return grpc.aio.insecure_channel(address, options=options)


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
