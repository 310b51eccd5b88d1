"""Retriever test set-up: a real ``python -m facesearch_server.retriever`` process with auth on
and two tenants' API keys, and a small client that talks to it over gRPC like any caller."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_contract.v1 import retriever_service_pb2_grpc as pb_grpc
from harness.service_process import ServiceProcess, start_service

KEYS = {"key-alpha": "alpha", "key-beta": "beta"}
MODEL = "sface-2021dec"
DIM = 16


def retriever_env(data_dir: Path, keys_file: Path | None = None, **extra: str) -> dict[str, str]:
    env = {"FACESEARCH_RETRIEVER_DATA_DIR": str(data_dir)}
    if keys_file is not None:
        env["FACESEARCH_AUTH_ENABLED"] = "true"
        env["FACESEARCH_AUTH_KEYS_FILE"] = str(keys_file)
    env.update({f"FACESEARCH_RETRIEVER_{k.upper()}": v for k, v in extra.items()})
    return env


def write_keys(path: Path) -> Path:
    path.write_text("".join(f"{k}: {v}\n" for k, v in KEYS.items()))
    return path


class Client:
    """The Retriever stub with one tenant's API key on every call."""

    def __init__(self, channel: grpc.Channel, key: str | None) -> None:
        self.stub = pb_grpc.RetrieverStub(channel)
        self.md = (("x-api-key", key),) if key else ()

    def __getattr__(self, method: str) -> Any:
        fn = getattr(self.stub, method)

        def call(request: Any, timeout: float = 30.0, **kw: Any) -> Any:
            return fn(request, metadata=self.md, timeout=timeout, **kw)

        return call

    def create(
        self,
        name: str,
        dim: int = DIM,
        kind: int = pb.INDEX_KIND_FLAT,
        shards: int = 1,
        metric: int = pb.METRIC_INNER_PRODUCT,
        model: str = MODEL,
        index: pb.IndexParams | None = None,
        metadata_fields: Sequence[tuple[str, int]] = (),
        extra_fields: Sequence[pb.VectorFieldSpec] = (),
    ) -> pb.CollectionInfo:
        params = index or pb.IndexParams(kind=kind)
        req = pb.CreateCollectionRequest(
            name=name,
            shard_count=shards,
            vector_fields=[
                pb.VectorFieldSpec(
                    name="face", dimension=dim, metric=metric, model_id=model, index=params
                ),
                *extra_fields,
            ],
            metadata_fields=[pb.MetadataFieldSpec(name=n, type=t) for n, t in metadata_fields],
        )
        return self.CreateCollection(req).collection

    def upsert(self, collection: str, points: list[pb.Point], **kw: Any) -> pb.UpsertResponse:
        return self.Upsert(pb.UpsertRequest(collection=collection, points=points, **kw))

    def search(
        self,
        collection: str,
        vectors: np.ndarray,
        k: int = 5,
        flt: cpb.Filter | None = None,
        params: pb.SearchParams | None = None,
        timeout: float = 30.0,
        **kw: Any,
    ) -> pb.SearchResponse:
        req = pb.SearchRequest(collection=collection, params=params or pb.SearchParams(), **kw)
        for v in np.atleast_2d(vectors):
            q = req.queries.add(k=k)
            if flt is not None:
                q.filter.CopyFrom(flt)
            q.terms.add(model_id=MODEL).vector.values.extend(v.tolist())
        return self.Search(req, timeout=timeout)

    def ids(self, collection: str, vectors: np.ndarray, k: int = 5, **kw: Any) -> list[list[str]]:
        resp = self.search(collection, vectors, k, **kw)
        return [[h.id for h in r.hits] for r in resp.results]


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def point(pid: str, vec: np.ndarray, **meta: Any) -> pb.Point:
    p = pb.Point(id=pid)
    p.vectors["face"].values.extend(np.asarray(vec, dtype=np.float32).tolist())
    p.model_ids["face"] = MODEL
    for k, v in meta.items():
        mv = p.metadata[k]
        if isinstance(v, bool):
            mv.bool_value = v
        elif isinstance(v, int):
            mv.int_value = v
        elif isinstance(v, float):
            mv.double_value = v
        elif isinstance(v, (list, tuple)):
            mv.string_list_value.values.extend(v)
        else:
            mv.string_value = v
    return p


def eq(field: str, **value: Any) -> cpb.FieldCondition:
    return cpb.FieldCondition(field=field, equals=cpb.MetadataValue(**value))


def code_of(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One retriever per test module (start-up costs a second or two); tests use their own
    collection names so they do not see each other's data."""
    base = tmp_path_factory.mktemp("retriever")
    keys = write_keys(base / "keys.yaml")
    svc = start_service("retriever", retriever_env(base / "data", keys, max_k="100"))
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def alpha(server: ServiceProcess) -> Client:
    return Client(server.channel(), "key-alpha")


@pytest.fixture(scope="module")
def beta(server: ServiceProcess) -> Client:
    return Client(server.channel(), "key-beta")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)
