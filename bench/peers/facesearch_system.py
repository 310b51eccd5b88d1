"""facesearch as bench/peers measures it: a real retriever process (``python -m
facesearch_server.retriever``, its defaults but the FAISS thread count), one HNSW collection at
its default graph parameters, written with durable ``UpsertStream`` batches and searched over
gRPC, the way a deployment uses it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np

from bench.peers.systems import BATCH, EF_CONSTRUCTION, HNSW_M, System
from bench.retriever.bench_retriever import starts
from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_contract.v1 import retriever_service_pb2_grpc as pb_grpc
from facesearch_server.retriever.index_build import DEFAULT_TRAIN_THRESHOLD
from harness.service_process import ServiceProcess, start_service

MODEL = "sface-2021dec"
COLLECTION = "bench"


class Facesearch(System):
    name = "facesearch"
    width_name = "ef_search"
    requires = ()

    def _start(self) -> None:
        self.svc: ServiceProcess = start_service(
            "retriever",
            {
                "FACESEARCH_RETRIEVER_DATA_DIR": str(self.workdir / "retriever"),
                "FACESEARCH_RETRIEVER_FAISS_OMP_THREADS": str(self.threads),
            },
            log_dir=self.workdir / "log",
        )
        self.stub = pb_grpc.RetrieverStub(self.svc.channel())

    def create(self) -> None:
        self._start()
        self.stub.CreateCollection(
            pb.CreateCollectionRequest(
                name=COLLECTION,
                vector_fields=[
                    pb.VectorFieldSpec(
                        name="face",
                        dimension=self.dim,
                        metric=pb.METRIC_INNER_PRODUCT,
                        model_id=MODEL,
                        index=pb.IndexParams(
                            kind=pb.INDEX_KIND_HNSW, train_threshold=self._threshold()
                        ),
                    )
                ],
            ),
            timeout=60,
        )
        spec = self.describe().vector_fields[0].index
        # The peers are built with these numbers; a changed service default must not go unseen.
        if (spec.hnsw_m, spec.ef_construction) != (HNSW_M, EF_CONSTRUCTION):
            raise RuntimeError(
                f"retriever HNSW defaults are M {spec.hnsw_m}, efC {spec.ef_construction}; "
                f"bench/peers/systems.py builds the peers with {HNSW_M}, {EF_CONSTRUCTION}"
            )

    def _threshold(self) -> int:
        """The default (0), except in runs smaller than it (the smoke test), where exact search
        would serve forever and the graph would never be built or measured."""
        return 0 if self.n >= DEFAULT_TRAIN_THRESHOLD[pb.INDEX_KIND_HNSW] else max(1, self.n // 2)

    def describe(self) -> pb.CollectionInfo:
        return self.stub.DescribeCollection(
            pb.DescribeCollectionRequest(collection=COLLECTION), timeout=30
        ).collection

    def ingest(self, ids: np.ndarray, x: np.ndarray) -> None:
        def batches() -> Iterator[pb.UpsertRequest]:
            for lo in range(0, len(ids), BATCH):
                req = pb.UpsertRequest(collection=COLLECTION, durable=True)
                for i, v in zip(ids[lo : lo + BATCH], x[lo : lo + BATCH], strict=True):
                    p = req.points.add(id=str(i))
                    p.vectors["face"].values.extend(v.tolist())
                    p.model_ids["face"] = MODEL
                yield req

        for ack in self.stub.UpsertStream(batches(), timeout=3600):
            if ack.error_code:
                raise RuntimeError(ack.error_message)

    def build(self, n: int, timeout_s: float) -> None:
        """Until Describe says READY with every vector in the graph (no exact-scanned delta)."""
        deadline = time.monotonic() + timeout_s
        while True:
            fs = self.describe().field_stats[0]
            if fs.build_state == pb.BUILD_STATE_READY and fs.indexed_vectors >= n:
                self.tuned = (fs.effective_index.ef_search, fs.measured_recall)
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"facesearch: build state {pb.BuildState.Name(fs.build_state)}, "
                    f"{fs.indexed_vectors} of {fs.vectors} vectors in the graph after {timeout_s}s"
                )
            time.sleep(0.2)

    def set_width(self, width: int) -> None:
        self.width = width

    def _request(self, q: np.ndarray, k: int) -> pb.SearchRequest:
        req = pb.SearchRequest(collection=COLLECTION, with_metadata=False)
        req.params.ef_search = self.width
        for v in q:
            query = req.queries.add(k=k)
            query.terms.add(model_id=MODEL).vector.values.extend(v.tolist())
        return req

    def _ids(self, resp: pb.SearchResponse, k: int) -> np.ndarray:
        out = np.full((len(resp.results), k), -1, dtype=np.int64)
        for i, res in enumerate(resp.results):
            ids = [int(h.id) for h in res.hits]
            out[i, : len(ids)] = ids
        return out

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        return self._ids(self.stub.Search(self._request(q, k), timeout=600), k)

    def searcher(self, q: np.ndarray, batch: int, k: int) -> Callable[[int], object]:
        # Requests built before timing, as the peers get their numpy slices for free.
        reqs = {s: self._request(q[s : s + batch], k) for s in starts(len(q), batch)}
        return lambda start: self.stub.Search(reqs[start], timeout=600)

    def delete(self, ids: np.ndarray) -> None:
        self.stub.Delete(
            pb.DeleteRequest(collection=COLLECTION, ids=pb.IdList(ids=[str(i) for i in ids])),
            timeout=60,
        )

    def close(self) -> None:
        self.svc.stop()

    def reopen(self) -> None:
        self._start()

    def shutdown(self) -> None:
        if hasattr(self, "svc"):
            self.svc.stop()

    def wait_reopened(self, n: int, timeout_s: float) -> None:
        """After a restart: until the built index is in force again over every vector."""
        self.build(n, timeout_s)

    def pids(self) -> list[int]:
        return [self.svc.proc.pid]

    def info(self) -> str:
        ef, recall = getattr(self, "tuned", (0, 0.0))
        return (
            f"retriever process over gRPC, HNSW M {HNSW_M}, efC {EF_CONSTRUCTION}, "
            f"{self.threads} OpenMP threads; its own tuning chose ef_search {ef} "
            f"(held-out recall {recall:.3f})"
        )
