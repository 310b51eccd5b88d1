"""One adapter per system bench/peers measures: facesearch (a real retriever process, over gRPC)
and the peer vector stores, each driven through its own public API.

Every adapter does the same things in the same order (``worker.run``): create, insert in
batches of ``BATCH`` vectors, wait until its approximate index serves every vector, search at a
given width, delete, close and reopen from disk. Graph parameters are the same for every HNSW
(``HNSW_M`` neighbours, ``EF_CONSTRUCTION``: the retriever's defaults), so the comparison is
between implementations at equal graph and equal recall, not between parameter choices; only
the search width differs, each tuned to the recall target on held-out queries.

Ids are the row numbers of the gallery (as strings where the store wants strings).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil

BATCH = 1024
HNSW_M = 32
EF_CONSTRUCTION = 200
# Search widths tried when tuning (ascending, steps of 12-25 % so that no system is pushed far
# past the target by the grid): the smallest reaching it on the held-out queries is used for
# every scored figure.
WIDTHS = (
    *(10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256),
    *(320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048),
)


class System:
    """What every adapter offers; ``name`` is the label in the output."""

    name = ""
    width_name = "ef"
    min_width = 10  # widths below it are the same search (the store raises them to it)
    # Imports the store needs; a missing one makes the bench skip the system, saying so.
    requires: tuple[str, ...] = ()

    def __init__(self, workdir: Path, n: int, dim: int, threads: int) -> None:
        self.workdir = workdir
        self.n = n  # vectors the bench will write (only facesearch's tiny runs need it)
        self.dim = dim
        self.threads = threads

    def create(self) -> None:
        raise NotImplementedError

    def insert(self, ids: np.ndarray, x: np.ndarray) -> None:
        raise NotImplementedError

    def ingest(self, ids: np.ndarray, x: np.ndarray) -> None:
        """Every vector, in batches of ``BATCH`` (what a loader does)."""
        for lo in range(0, len(ids), BATCH):
            self.insert(ids[lo : lo + BATCH], x[lo : lo + BATCH])

    def finish_ingest(self) -> None:
        """After the last insert: what the store needs before its writes are acknowledged
        whole (a flush); timed as ingest."""

    def build(self, n: int, timeout_s: float) -> None:
        """Until the approximate index serves all ``n`` vectors; timed as ready."""

    def set_width(self, width: int) -> None:
        raise NotImplementedError

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        """Ids (int64, -1 padded) of the top k of each query."""
        raise NotImplementedError

    def searcher(self, q: np.ndarray, batch: int, k: int) -> Callable[[int], object]:
        """A call that searches the batch of ``q`` at an offset: what the timed loop runs.
        Adapters whose requests cost building (gRPC) build them here, before timing."""
        return lambda start: self.search(q[start : start + batch], k)

    def delete(self, ids: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Persist and release, like a process that stops."""

    def reopen(self) -> None:
        """Open what ``close`` left on disk, like a process that starts again."""
        raise NotImplementedError

    def wait_reopened(self, n: int, timeout_s: float) -> None:
        """After ``reopen``: until the index serves at full speed again (a no-op for stores that
        load their built index with the collection)."""

    def shutdown(self) -> None:
        """At the end, whatever happened: nothing the store started may outlive the worker."""

    def pids(self) -> list[int]:
        """Processes holding the index (their RSS, children included, is the memory figure)."""
        return [os.getpid()]

    def info(self) -> str:
        return ""


def rss_bytes(pids: list[int]) -> int:
    """Resident memory of these processes and all their children."""
    seen: set[int] = set()
    total = 0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for p in procs:
            if p.pid in seen:
                continue
            seen.add(p.pid)
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
    return total


def _ids_matrix(rows: list[list[int]], k: int) -> np.ndarray:
    out = np.full((len(rows), k), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r[:k]
    return out


class Hnswlib(System):
    name = "hnswlib"
    requires = ("hnswlib",)

    def create(self) -> None:
        import hnswlib

        self.capacity = 0
        self.index = hnswlib.Index(space="ip", dim=self.dim)
        self.index.init_index(max_elements=BATCH, ef_construction=EF_CONSTRUCTION, M=HNSW_M)
        self.index.set_num_threads(self.threads)

    def insert(self, ids: np.ndarray, x: np.ndarray) -> None:
        need = self.index.get_current_count() + len(ids)
        if need > self.index.get_max_elements():
            # Grown geometrically, as a store that does not know the final size must.
            self.index.resize_index(max(need, 2 * self.index.get_max_elements()))
        self.index.add_items(x, ids, num_threads=self.threads)

    def set_width(self, width: int) -> None:
        self.index.set_ef(width)
        self.width = width

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        return self.index.knn_query(q, k=k, num_threads=self.threads)[0].astype(np.int64)

    def delete(self, ids: np.ndarray) -> None:
        for i in ids:
            self.index.mark_deleted(int(i))

    def close(self) -> None:
        self.index.save_index(str(self.workdir / "hnswlib.bin"))
        del self.index

    def reopen(self) -> None:
        import hnswlib

        self.index = hnswlib.Index(space="ip", dim=self.dim)
        self.index.load_index(str(self.workdir / "hnswlib.bin"))
        self.index.set_num_threads(self.threads)
        self.index.set_ef(self.width)

    def info(self) -> str:
        return f"M {HNSW_M}, ef_construction {EF_CONSTRUCTION}, {self.threads} threads"


class Usearch(System):
    name = "usearch"
    width_name = "expansion_search"
    requires = ("usearch",)

    def create(self) -> None:
        from usearch.index import Index

        self.index = Index(
            ndim=self.dim,
            metric="ip",
            dtype="f32",
            connectivity=HNSW_M,
            expansion_add=EF_CONSTRUCTION,
        )

    def insert(self, ids: np.ndarray, x: np.ndarray) -> None:
        self.index.add(ids, x, threads=self.threads)

    def set_width(self, width: int) -> None:
        self.index.expansion_search = width
        self.width = width

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        m = self.index.search(q, k, threads=self.threads)
        keys = np.asarray(m.keys, dtype=np.int64)
        if keys.ndim == 1:  # one query: Matches, already cut to what was found
            keys, counts = keys[None, :], [len(keys)]
        else:
            counts = list(np.asarray(m.counts).reshape(-1))
        out = np.full((len(q), k), -1, dtype=np.int64)
        for i, c in enumerate(counts):
            out[i, :c] = keys[i, :c]
        return out

    def delete(self, ids: np.ndarray) -> None:
        self.index.remove(ids)

    def close(self) -> None:
        self.index.save(str(self.workdir / "usearch.bin"))
        del self.index

    def reopen(self) -> None:
        from usearch.index import Index

        self.index = Index.restore(str(self.workdir / "usearch.bin"))
        self.index.expansion_search = self.width

    def info(self) -> str:
        return (
            f"connectivity {HNSW_M}, expansion_add {EF_CONSTRUCTION}, f32, {self.threads} threads"
        )


class Chroma(System):
    name = "chromadb"
    width_name = "ef_search"
    requires = ("chromadb",)

    def _client(self):  # type: ignore[no-untyped-def]
        import chromadb

        return chromadb.PersistentClient(
            path=str(self.workdir / "chroma"),
            settings=chromadb.Settings(anonymized_telemetry=False),
        )

    def create(self) -> None:
        self.client = self._client()
        self.col = self.client.create_collection(
            "bench",
            embedding_function=None,
            configuration={
                "hnsw": {
                    "space": "ip",
                    "max_neighbors": HNSW_M,
                    "ef_construction": EF_CONSTRUCTION,
                    "num_threads": self.threads,
                }
            },
        )

    def insert(self, ids: np.ndarray, x: np.ndarray) -> None:
        self.col.add(ids=[str(i) for i in ids], embeddings=x)

    def set_width(self, width: int) -> None:
        # chromadb 1.5.9: modify() saves the new ef_search, but the open HNSW segment keeps the
        # old one until the client is opened again (checked: recall did not move otherwise).
        self.col.modify(configuration={"hnsw": {"ef_search": width}})
        self.close()
        self.reopen()
        self.width = width

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        r = self.col.query(query_embeddings=q, n_results=k, include=[])
        return _ids_matrix([[int(i) for i in row] for row in r["ids"]], k)

    def delete(self, ids: np.ndarray) -> None:
        self.col.delete(ids=[str(i) for i in ids])

    def close(self) -> None:
        from chromadb.api.client import SharedSystemClient

        del self.col
        del self.client
        SharedSystemClient.clear_system_cache()  # else a new client reuses the open segments

    def reopen(self) -> None:
        self.client = self._client()
        self.col = self.client.get_collection("bench")

    def info(self) -> str:
        return f"PersistentClient, max_neighbors {HNSW_M}, ef_construction {EF_CONSTRUCTION}"


class MilvusLite(System):
    name = "milvus-lite"
    requires = ("pymilvus", "milvus_lite")

    def _client(self):  # type: ignore[no-untyped-def]
        from pymilvus import MilvusClient

        return MilvusClient(str(self.workdir / "milvus.db"))

    def create(self) -> None:
        from pymilvus import DataType, MilvusClient

        self.client = self._client()
        schema = MilvusClient.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("v", DataType.FLOAT_VECTOR, dim=self.dim)
        params = self.client.prepare_index_params()
        params.add_index(
            field_name="v",
            index_type="HNSW",
            metric_type="IP",
            params={"M": HNSW_M, "efConstruction": EF_CONSTRUCTION},
        )
        self.client.create_collection("bench", schema=schema, index_params=params)

    def insert(self, ids: np.ndarray, x: np.ndarray) -> None:
        rows = [{"id": int(i), "v": v} for i, v in zip(ids, x.tolist(), strict=True)]
        self.client.insert("bench", rows)

    def finish_ingest(self) -> None:
        self.client.flush("bench")

    def build(self, n: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            d = self.client.describe_index("bench", "v")
            if d.get("indexed_rows", 0) >= n and d.get("pending_index_rows", 0) == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"milvus-lite index not complete after {timeout_s}s: {d}")
            time.sleep(0.2)

    def set_width(self, width: int) -> None:
        self.width = width

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        r = self.client.search(
            "bench", data=q.tolist(), limit=k, search_params={"params": {"ef": max(k, self.width)}}
        )
        return _ids_matrix([[int(h["id"]) for h in row] for row in r], k)

    def delete(self, ids: np.ndarray) -> None:
        self.client.delete("bench", ids=[int(i) for i in ids])

    def close(self) -> None:
        self.client.close()

    def shutdown(self) -> None:
        if hasattr(self, "client"):
            self.client.close()

    def reopen(self) -> None:
        self.client = self._client()
        self.client.load_collection("bench")

    def info(self) -> str:
        return f"HNSW M {HNSW_M}, efConstruction {EF_CONSTRUCTION} (its own server process)"


class Lance(System):
    """LanceDB: its HNSW variant is IVF_HNSW_SQ (8-bit scalar-quantised vectors in the graph);
    each search re-ranks ``REFINE`` x k candidates on the full vectors, or SQ alone would cap
    recall below the target."""

    name = "lancedb"
    requires = ("lancedb", "pyarrow")
    REFINE = 4
    min_width = 10 * REFINE

    def create(self) -> None:
        import lancedb

        self.db = lancedb.connect(str(self.workdir / "lance"))
        self.table = None

    def _arrow(self, ids: np.ndarray, x: np.ndarray):  # type: ignore[no-untyped-def]
        import pyarrow as pa

        flat = pa.array(np.ascontiguousarray(x, dtype=np.float32).reshape(-1))
        return pa.table(
            {
                "id": pa.array(ids.astype(np.int64)),
                "vector": pa.FixedSizeListArray.from_arrays(flat, self.dim),
            }
        )

    def insert(self, ids: np.ndarray, x: np.ndarray) -> None:
        if self.table is None:
            self.table = self.db.create_table("bench", data=self._arrow(ids, x))
        else:
            self.table.add(self._arrow(ids, x))

    @property
    def partitions(self) -> int:
        """One IVF partition per 100k rows, all probed: the graph, not the lists, does the work."""
        return max(1, self.n // 100_000)

    def build(self, n: int, timeout_s: float) -> None:
        self.table.create_index(
            metric="dot",
            vector_column_name="vector",
            index_type="IVF_HNSW_SQ",
            num_partitions=self.partitions,
            m=HNSW_M,
            ef_construction=EF_CONSTRUCTION,
        )

    def set_width(self, width: int) -> None:
        self.width = width

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        t = (
            self.table.search(q if len(q) > 1 else q[0])
            .distance_type("dot")
            .limit(k)
            .nprobes(self.partitions)
            .ef(max(k * self.REFINE, self.width))  # lance refuses ef below the rows it refines
            .refine_factor(self.REFINE)
            .select(["id"])
            .to_arrow()
        )
        ids = t.column("id").to_numpy()
        qi = t.column("query_index").to_numpy() if "query_index" in t.column_names else None
        rows: list[list[int]] = [[] for _ in range(len(q))]
        for j, i in enumerate(ids):
            rows[0 if qi is None else int(qi[j])].append(int(i))
        return _ids_matrix(rows, k)

    def delete(self, ids: np.ndarray) -> None:
        self.table.delete(f"id IN ({', '.join(str(int(i)) for i in ids)})")

    def close(self) -> None:
        del self.table
        del self.db

    def reopen(self) -> None:
        import lancedb

        self.db = lancedb.connect(str(self.workdir / "lance"))
        self.table = self.db.open_table("bench")

    def info(self) -> str:
        return (
            f"IVF_HNSW_SQ m {HNSW_M}, ef_construction {EF_CONSTRUCTION}, "
            f"refine_factor {self.REFINE}"
        )


class Faiss(System):
    """Reference, not a peer: the HNSW the retriever serves (FAISS ``IndexHNSWFlat``, same M and
    efConstruction, inner product), driven in-process without the service. facesearch minus
    this is what the service costs (gRPC, validation, results); this minus hnswlib is the
    library. Deletes are filtered with an id selector, as the retriever filters tombstones."""

    name = "faiss"
    width_name = "efSearch"
    requires = ("faiss",)

    def create(self) -> None:
        import faiss

        faiss.omp_set_num_threads(self.threads)
        self.index = faiss.IndexHNSWFlat(self.dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = EF_CONSTRUCTION
        self.deleted = np.zeros(0, dtype=np.int64)

    def insert(self, ids: np.ndarray, x: np.ndarray) -> None:
        # Ids are the gallery rows, written in order: FAISS's own sequential labels match them.
        self.index.add(np.ascontiguousarray(x, dtype=np.float32))

    def set_width(self, width: int) -> None:
        import faiss

        self.width = width
        self.params = faiss.SearchParametersHNSW()
        self.params.efSearch = width
        if len(self.deleted):
            self.selector = faiss.IDSelectorNot(
                faiss.IDSelectorBatch(len(self.deleted), faiss.swig_ptr(self.deleted))
            )
            self.params.sel = self.selector

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        import faiss

        faiss.omp_set_num_threads(self.threads)  # OpenMP keeps it per thread
        return self.index.search(q, k, params=self.params)[1].astype(np.int64)

    def delete(self, ids: np.ndarray) -> None:
        self.deleted = np.unique(np.concatenate([self.deleted, ids.astype(np.int64)]))
        self.set_width(self.width)

    def close(self) -> None:
        import faiss

        faiss.write_index(self.index, str(self.workdir / "faiss.index"))
        np.save(self.workdir / "deleted.npy", self.deleted)
        del self.index

    def reopen(self) -> None:
        import faiss

        faiss.omp_set_num_threads(self.threads)
        self.index = faiss.read_index(str(self.workdir / "faiss.index"))
        self.deleted = np.load(self.workdir / "deleted.npy")
        self.set_width(self.width)

    def info(self) -> str:
        return f"IndexHNSWFlat M {HNSW_M}, efConstruction {EF_CONSTRUCTION}, {self.threads} threads"


PEERS: dict[str, type[System]] = {
    c.name: c for c in (Faiss, Hnswlib, Usearch, MilvusLite, Chroma, Lance)
}


def clean(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
