"""Process start-up and shutdown shared by every service.

A service describes itself as a ``ServiceDefinition`` (its servicers plus start/stop hooks);
``run_service`` does the rest: logs, metrics endpoint, the grpc.aio server with the call
pipeline, health checking (liveness and readiness, see readiness.py), reflection, TLS, and a
graceful exit on SIGTERM.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from facesearch_server.runtime.auth import Authenticator
from facesearch_server.runtime.call_pipeline import CallPipeline
from facesearch_server.runtime.config import ServerConfig, load_config
from facesearch_server.runtime.downstream import channel_options
from facesearch_server.runtime.logs import setup_logging
from facesearch_server.runtime.metrics import start_metrics_server
from facesearch_server.runtime.readiness import Readiness, ReadinessCheck

log = logging.getLogger("facesearch.server")


@dataclass
class Servicer:
    """One gRPC service implementation and how to register it."""

    full_name: str  # e.g. "facesearch.v1.Retriever"
    implementation: Any
    register: Callable[[Any, grpc.aio.Server], None]  # the generated add_XServicer_to_server


@dataclass
class ServiceDefinition:
    servicers: list[Servicer]
    # Awaited before the port opens (load models, open stores) and after the server stopped.
    on_start: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # What the service needs to serve (Redis, a writable data directory, loaded models): while
    # one fails, health name "readiness" and the services' names answer NOT_SERVING.
    readiness: list[ReadinessCheck] = field(default_factory=list)


def _server_credentials(cfg: ServerConfig) -> grpc.ServerCredentials | None:
    if not cfg.tls_cert_file:
        return None
    pair = (Path(cfg.tls_key_file).read_bytes(), Path(cfg.tls_cert_file).read_bytes())
    if cfg.tls_client_ca_file:
        return grpc.ssl_server_credentials(
            [pair],
            root_certificates=Path(cfg.tls_client_ca_file).read_bytes(),
            require_client_auth=True,
        )
    return grpc.ssl_server_credentials([pair])


async def serve(cfg: ServerConfig, definition: ServiceDefinition) -> None:
    """Run until SIGTERM or SIGINT, then drain in-flight calls and return."""
    authenticator = Authenticator(
        cfg.auth_enabled,
        cfg.auth_keys,
        cfg.default_tenant,
        mtls=bool(cfg.tls_client_ca_file),
        trusted_peers=cfg.trusted_peers,
    )
    server = grpc.aio.server(
        interceptors=[CallPipeline(cfg.service, authenticator)],
        # Without this a second process on the same port binds too and the kernel splits
        # traffic between the two: a taken port must be an error.
        options=[*channel_options(cfg.max_message_bytes), ("grpc.so_reuseport", 0)],
        maximum_concurrent_rpcs=cfg.max_concurrent_rpcs,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for s in definition.servicers:
        s.register(s.implementation, server)
        # The service's descriptor lives in the sibling *_pb2 module, which the generated *_grpc
        # module does not import; reflection can only describe what the pool has loaded.
        importlib.import_module(s.register.__module__.removesuffix("_grpc"))
    names = [s.full_name for s in definition.servicers]
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )

    try:
        for hook in definition.on_start:
            await hook()
        readiness = Readiness(
            cfg.service, definition.readiness, health_servicer, names, cfg.readiness_timeout_s
        )
        await _run_until_signalled(cfg, server, health_servicer, readiness)
    finally:
        # Also after a failed start (port taken, a hook failing): release what started.
        for hook in definition.on_stop:
            await hook()
    log.info("stopped")


async def _run_until_signalled(
    cfg: ServerConfig,
    server: grpc.aio.Server,
    health_servicer: health.aio.HealthServicer,
    readiness: Readiness,
) -> None:
    address = f"{cfg.host}:{cfg.port}"
    creds = _server_credentials(cfg)
    port = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
    metrics_port = (
        start_metrics_server(cfg.metrics_host, cfg.metrics_port) if cfg.metrics_port else 0
    )
    await server.start()
    # Liveness: the process is up and answering; a dependency's outage never changes it.
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    # Readiness is known before the port is announced, then kept current by the loop.
    ready = await readiness.update()
    checker = asyncio.create_task(readiness.loop(cfg.readiness_interval_s))
    log.info(
        "serving",
        extra={
            "address": f"{cfg.host}:{port}",
            "metrics_port": metrics_port,
            "services": readiness.services,
            "ready": ready,
            "auth": cfg.auth_enabled,
            "tls": creds is not None,
        },
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()

    log.info("shutting down", extra={"grace_s": cfg.shutdown_grace_s})
    checker.cancel()
    # Tell load balancers first, so no new calls are routed here while in-flight ones finish.
    await health_servicer.enter_graceful_shutdown()
    await server.stop(cfg.shutdown_grace_s)


def run_service(name: str, build: Callable[[Any], ServiceDefinition]) -> None:
    """Entry point of a service process: ``python -m services.<name>``. ``build`` gets the
    service's own settings class (config.load_config)."""
    try:
        cfg = load_config(name)
    # SettingsError (a ValueError) names the key and where it came from: the file section or
    # the env variable.
    except (ValueError, OSError, yaml.YAMLError) as exc:
        print(f"facesearch-{name}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    setup_logging(name, cfg.log_level, cfg.log_format)

    async def build_and_serve() -> None:
        # build() runs inside the event loop, so it may open grpc.aio channels to other
        # services (a channel belongs to the loop it was created on).
        await serve(cfg, build(cfg))

    try:
        asyncio.run(build_and_serve())
    except (OSError, RuntimeError) as exc:  # grpc raises RuntimeError for a port it cannot bind
        log.error("cannot start", extra={"error": str(exc)})
        raise SystemExit(1) from exc
