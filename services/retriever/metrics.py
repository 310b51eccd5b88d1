"""The retriever's own Prometheus metrics: what each collection holds.

Refreshed by a background task rather than at scrape time, because a collection's usage is
an async call over its shards and the scrape runs on prometheus-client's own thread. In router
mode the router exports them, from its shard servers' DescribeShard answers: the shard servers
hold routed shards by collection uid and know neither tenant nor name.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Gauge

from facesearch_server.retriever.catalog import Catalog
from facesearch_server.retriever.shard_router import CallBudget

log = logging.getLogger("facesearch.retriever.metrics")

POINTS = Gauge(
    "facesearch_retriever_points", "Live records per collection.", ["tenant", "collection"]
)
MEMORY = Gauge(
    "facesearch_retriever_memory_bytes",
    "Bytes of vectors, indexes and metadata in memory per collection.",
    ["tenant", "collection"],
)
DISK = Gauge(
    "facesearch_retriever_disk_bytes",
    "Bytes of snapshots and write-ahead logs on disk per collection.",
    ["tenant", "collection"],
)
_GAUGES = (POINTS, MEMORY, DISK)


# /metrics is served without auth: by default a scrape shows sizes per collection uid, never
# a tenant's or a collection's name (an operator opts in with metrics_collection_names).
REDACTED = "redacted"


async def refresh(catalog: Catalog, exported: set[tuple[str, str]], names: bool = False) -> None:
    """Set the gauges from the catalog; forget collections dropped since the last refresh."""
    seen: set[tuple[str, str]] = set()
    for tenant, space in list(catalog.tenants.items()):
        for name, coll in list(space.collections.items()):
            points, memory, disk = await coll.usage(CallBudget(timeout=10.0))
            labels = (tenant, name) if names else (REDACTED, coll.uid)
            for gauge, value in zip(_GAUGES, (points, memory, disk), strict=True):
                gauge.labels(*labels).set(value)
            seen.add(labels)
    for gone in exported - seen:
        for gauge in _GAUGES:
            gauge.remove(*gone)
    exported.clear()
    exported.update(seen)


async def refresh_loop(catalog: Catalog, interval_s: float, names: bool = False) -> None:
    exported: set[tuple[str, str]] = set()
    while True:
        try:
            await refresh(catalog, exported, names)
        except Exception:  # a metrics refresh must never take the service down
            log.warning("collection metrics refresh failed", exc_info=True)
        await asyncio.sleep(interval_s)
