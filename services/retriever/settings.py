"""The retriever's settings: the common keys plus its own (file section ``retriever`` or
``FACESEARCH_RETRIEVER_<KEY>``). Tabled in services/retriever/README.md."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from facesearch_contract.limits import max_items, value_range
from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import gpu
from facesearch_server.runtime.settings import (
    DEFAULT_METRICS_PORTS,
    DEFAULT_PORTS,
    ServiceSettings,
    TextList,
    metrics_port_field,
    port_field,
)


class RetrieverSettings(ServiceSettings):
    service_name: ClassVar[str] = "retriever"

    port: int = port_field(DEFAULT_PORTS["retriever"])
    metrics_port: int = metrics_port_field(DEFAULT_METRICS_PORTS["retriever"])
    shard_servers: TextList = Field(
        default_factory=list,
        description="router mode: shard server addresses (`[a:1, b:2]` or `a:1,b:2`); "
        "collections get one shard per server. Empty: every shard in this process",
    )
    # Operators may lower the contract's ceilings (retriever.proto), never raise them.
    max_k: int = Field(
        1000, gt=0, le=value_range(pb.Query, "k")[1], description="largest k a query may ask for"
    )
    max_upsert_batch: int = Field(
        1024,
        gt=0,
        le=max_items(pb.UpsertRequest, "points"),
        description="points per Upsert message (over: RESOURCE_EXHAUSTED)",
    )
    max_search_batch: int = Field(
        256,
        gt=0,
        le=max_items(pb.SearchRequest, "queries"),
        description="queries per Search (over: RESOURCE_EXHAUSTED)",
    )
    snapshot_interval_s: float = Field(
        60.0, gt=0, description="how often shards whose log grew are snapshotted"
    )
    snapshot_min_entries: int = Field(
        1000, ge=0, description="log entries that make a shard due for a snapshot"
    )
    faiss_omp_threads: int = Field(
        1,
        ge=0,
        description="OpenMP threads per FAISS call (0 = all cores); requests already run "
        "in parallel",
    )
    search_coalescing: bool = Field(
        False,
        description="gather concurrent small searches (<= 4 queries) of one shard with the "
        "same field, k, filter and params into one FAISS batch on a worker thread while the "
        "loop serves other requests (services/retriever/search_batcher.py); off by default: "
        "on 2 shared cores it cost more than it saved (bench/peers/README.md)",
    )
    search_coalesce_max_queries: int = Field(
        64,
        ge=1,
        le=max_items(pb.SearchRequest, "queries"),
        description="queries one coalesced search holds at most (15 where it may scan exactly)",
    )
    hnsw_build: Literal["cpu", "gpu"] = Field(
        "cpu",
        description="where HNSW graphs are built: `gpu` = CAGRA on the GPU (faiss-gpu with "
        "cuVS), turned into an HNSW graph served on the CPU; refused at start-up where "
        "unavailable",
    )
    metrics_refresh_s: float = Field(
        15.0, gt=0, description="how often the collection size gauges are refreshed"
    )
    metrics_collection_names: bool = Field(
        False,
        description="label the size gauges with tenant and collection names (else the "
        "collection's opaque uid and tenant 'redacted'): /metrics has no auth",
    )

    @field_validator("hnsw_build")
    @classmethod
    def _hnsw_build_possible(cls, value: str) -> str:
        # At start-up, not at the first build minutes later: the reason and the way out.
        if value == "gpu" and (why := gpu.cagra_missing()) is not None:
            raise ValueError(why)
        return value
