"""Prometheus metrics: per-RPC counters and latency, served on their own port.

The default registry already carries process metrics (CPU, memory, open fds) on Linux; these
add what every service shares. Service-specific metrics live in the service's own package.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RPC_TOTAL = Counter(
    "facesearch_rpc_total",
    "RPCs finished, by method and gRPC status code.",
    ["service", "method", "code"],
)
RPC_LATENCY = Histogram(
    "facesearch_rpc_duration_seconds",
    "Wall time from the call reaching the handler to its last response message.",
    ["service", "method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RPC_IN_FLIGHT = Gauge("facesearch_rpc_in_flight", "RPCs being handled now.", ["service"])


def start_metrics_server(host: str, port: int) -> int:
    """Serve /metrics; returns the bound port (0 asks the OS for a free one)."""
    server, _thread = start_http_server(port, addr=host)
    return int(server.server_address[1])
