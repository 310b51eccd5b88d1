"""Retriever benchmark: every figure beside the bare library, in one run.

(a) The service (``python -m facesearch_server.retriever``, one flat shard, over gRPC) against
    in-process FAISS on the same vectors and index: QPS and p50/p99 per call at batch 1 and 64,
    with 1 and 16 concurrent clients.
(b) recall@10 against exact search for each index kind, with build time and bytes per vector,
    built by the service's own index code (``retriever.index_build``) at its defaults
    (search width tuned by the build to 0.95 on held-out stored vectors), then other widths.
(c) The router over N shard server processes against one process, same data, same queries.

Data: real SFace embeddings of ../shared/data (``bench/common/gallery.py``): the clean faces
are the gallery, padded to --n with synthetic vectors drawn to match the real identity and
within-identity statistics (see that module); the degraded (downscaled, blurred, JPEG) copies
of real faces are the queries, so a query's true match is in the gallery as a clean photo.
Without ../shared/data (or with --synthetic) both are random unit vectors, and recall on those
means little: the script says so in its output.

Smoke (a minute here):  python -m bench.retriever.bench_retriever --n 5000 --duration 1
Full:  python -m bench.retriever.bench_retriever --n 1000000 --duration 10 --router-shards 4
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import grpc
import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from facesearch_contract.v1 import retriever_pb2 as pb  # noqa: E402
from facesearch_contract.v1 import retriever_service_pb2_grpc as pb_grpc  # noqa: E402
from facesearch_server.retriever import gpu, index_build  # noqa: E402
from harness.service_process import ServiceProcess, start_service  # noqa: E402

MODEL = "sface-2021dec"
K = 10
KINDS = {"flat": pb.INDEX_KIND_FLAT, "ivf_pq": pb.INDEX_KIND_IVF_PQ, "hnsw": pb.INDEX_KIND_HNSW}


def load_data(n: int, n_queries: int, synthetic: bool) -> tuple[np.ndarray, np.ndarray, str]:
    if not synthetic:
        from bench.common.gallery import data_available, load_real_gallery, pad_synthetic

        if data_available():
            g = load_real_gallery()
            queries = g.vectors[g.degraded][:n_queries]
            clean = np.flatnonzero(~g.degraded)
            real = len(clean)
            if n > len(g):
                g = pad_synthetic(g, n + int(g.degraded.sum()))
            keep = np.flatnonzero(~g.degraded)[:n]
            how = (
                f"{min(real, n)} real SFace faces of ../shared/data + {max(0, n - real)} synthetic "
                f"(identity-matched statistics); queries: {len(queries)} degraded real faces"
            )
            return np.ascontiguousarray(g.vectors[keep]), np.ascontiguousarray(queries), how
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n + n_queries, 128)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x[:n], x[n:], "SYNTHETIC random unit vectors (recall figures are not meaningful)"


def starts(n_queries: int, batch: int) -> list[int]:
    """Offsets of the query batches a run cycles through (requests are built before timing,
    so neither side pays for making its input inside the timed loop)."""
    return list(range(0, max(1, n_queries - batch + 1), batch))


def measure(
    fn: Callable[[int], object],
    n_queries: int,
    batch: int,
    clients: int,
    seconds: float,
) -> dict[str, float]:
    """Closed loop: ``clients`` threads each call ``fn(start)`` (a batch of ``batch`` queries
    from offset ``start``) back to back."""
    lat: list[float] = []
    done = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    grid = starts(n_queries, batch)

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        mine: list[float] = []
        count = 0
        gpu.pin_threads()  # OpenMP settings are per thread
        while time.perf_counter() < stop:
            start = grid[int(rng.integers(0, len(grid)))]
            t0 = time.perf_counter()
            fn(start)
            mine.append(time.perf_counter() - t0)
            count += min(batch, n_queries - start)
        with lock:
            lat.extend(mine)
            done[0] += count

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    arr = np.array(lat) * 1000
    return {
        "qps": done[0] / wall,
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
    }


def search_request(collection: str, q: np.ndarray) -> pb.SearchRequest:
    req = pb.SearchRequest(collection=collection, with_metadata=False)
    for v in q:
        query = req.queries.add(k=K)
        query.terms.add(model_id=MODEL).vector.values.extend(v.tolist())
    return req


def service_env(data_dir: str, args: argparse.Namespace, **extra: str) -> dict[str, str]:
    env = {
        "FACESEARCH_RETRIEVER_DATA_DIR": data_dir,
        "FACESEARCH_RETRIEVER_FAISS_OMP_THREADS": str(args.omp_threads),
    }
    env.update({f"FACESEARCH_RETRIEVER_{k.upper()}": v for k, v in extra.items()})
    return env


def load_service(stub: pb_grpc.RetrieverStub, name: str, x: np.ndarray, shards: int) -> float:
    stub.CreateCollection(
        pb.CreateCollectionRequest(
            name=name,
            shard_count=shards,
            vector_fields=[pb.VectorFieldSpec(name="face", dimension=x.shape[1], model_id=MODEL)],
        )
    )
    t0 = time.perf_counter()

    def batches():  # type: ignore[no-untyped-def]
        for start in range(0, len(x), 1024):
            req = pb.UpsertRequest(collection=name, durable=False)
            for i in range(start, min(len(x), start + 1024)):
                p = req.points.add(id=f"v{i}")
                p.vectors["face"].values.extend(x[i].tolist())
                p.model_ids["face"] = MODEL
            yield req

    for ack in stub.UpsertStream(batches(), timeout=3600):
        if ack.error_code:
            raise RuntimeError(ack.error_message)
    return time.perf_counter() - t0


def bench_service_vs_faiss(x: np.ndarray, q: np.ndarray, args: argparse.Namespace) -> list[dict]:
    rows = []
    gpu.configure(args.omp_threads)
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(x.shape[1]))
    index.add_with_ids(x, np.arange(len(x), dtype=np.int64))
    with tempfile.TemporaryDirectory() as tmp:
        svc = start_service("retriever", service_env(tmp, args))
        try:
            stub = pb_grpc.RetrieverStub(svc.channel())
            load_s = load_service(stub, "bench", x, 1)
            print(f"# loaded {len(x)} vectors into the service in {load_s:.1f}s", flush=True)
            for batch in args.batches:
                for clients in args.concurrency:
                    reqs = {
                        s: search_request("bench", q[s : s + batch]) for s in starts(len(q), batch)
                    }
                    lib = measure(
                        lambda s, b=batch: index.search(q[s : s + b], K),
                        len(q),
                        batch,
                        clients,
                        args.duration,
                    )
                    srv = measure(
                        lambda s, reqs=reqs: stub.Search(reqs[s], timeout=60),
                        len(q),
                        batch,
                        clients,
                        args.duration,
                    )
                    rows.append({"batch": batch, "clients": clients, "faiss": lib, "service": srv})
                    print(
                        f"batch {batch:3d} clients {clients:2d}: faiss {lib['qps']:9.0f} q/s "
                        f"p50 {lib['p50_ms']:7.2f} p99 {lib['p99_ms']:7.2f} ms | service "
                        f"{srv['qps']:9.0f} q/s p50 {srv['p50_ms']:7.2f} p99 {srv['p99_ms']:7.2f}"
                        f" ms | ratio {srv['qps'] / lib['qps']:.2f}",
                        flush=True,
                    )
        finally:
            svc.stop()
    return rows


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def bench_recall(x: np.ndarray, q: np.ndarray, args: argparse.Namespace) -> list[dict]:
    gpu.configure(args.omp_threads)
    flat = faiss.IndexFlatIP(x.shape[1])
    t0 = time.perf_counter()
    flat.add(x)
    flat_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, truth = flat.search(q, K)
    flat_ms = (time.perf_counter() - t0) * 1000 / len(q)
    rows = [
        {
            "kind": "flat",
            "recall": 1.0,
            "recall_rescored": 1.0,
            "build_s": flat_build,
            "bytes_per_vector": faiss.serialize_index(flat).nbytes / len(x),
            "search_ms_per_query": flat_ms,
        }
    ]
    print(
        f"flat    exact (the reference)        recall@10 1.000 {flat_ms:.3f} ms/query batch "
        f"{len(q)}; build {flat_build:.1f}s {rows[0]['bytes_per_vector']:.0f} B/vector",
        flush=True,
    )
    labels = np.arange(len(x), dtype=np.int64)
    for name in args.kinds:
        kind = KINDS[name]
        if kind == pb.INDEX_KIND_FLAT:
            continue
        params = index_build.resolve_params(x.shape[1], pb.IndexParams(kind=kind))
        ann = index_build.build(
            kind,
            x.shape[1],
            pb.METRIC_INNER_PRODUCT,
            params,
            labels,
            x,
            lambda p: None,
            threading.Event(),
        )
        assert ann is not None and ann.tuning is not None
        ivf = kind == pb.INDEX_KIND_IVF_PQ
        print(
            f"# {name}: tuned {'nprobe' if ivf else 'ef_search'} {ann.tuning.width}, "
            f"held-out recall@10 {ann.tuning.recall:.3f} on the service's own sample "
            f"(target {ann.tuning.target:.2f})",
            flush=True,
        )
        # Defaults first, then other widths to show what recall costs.
        widths = [0, *(args.nprobes if ivf else args.ef_searches)]
        for width in widths:
            req = (
                pb.SearchParams(nprobe=width)
                if kind == pb.INDEX_KIND_IVF_PQ
                else pb.SearchParams(ef_search=width)
            )
            sp = index_build.search_parameters(ann, params, req, None)
            t0 = time.perf_counter()
            _, found = ann.index.search(q, K, params=sp)
            search_ms = (time.perf_counter() - t0) * 1000 / len(q)
            _, cand = ann.index.search(q, 100, params=sp)
            rescored = np.array(
                [c[np.argsort(-(x[c] @ qq))][:K] for c, qq in zip(cand, q, strict=True)]
            )
            setting = f"{'nprobe' if ivf else 'ef_search'} {width or ann.width(params)}"
            row = {
                "kind": name,
                "setting": setting + (" (default: tuned)" if not width else ""),
                "params": str(params).replace("\n", " "),
                "nlist": ann.nlist,
                "recall": recall_at_k(found, truth),
                "recall_rescored": recall_at_k(rescored, truth),
                # What the service answers: IVF-PQ searches always re-rank their top 100.
                "recall_service": recall_at_k(rescored if ivf else found, truth),
                "tuned_width": ann.tuning.width,
                "tuned_recall_held_out": ann.tuning.recall,
                "build_s": ann.build_seconds,
                "bytes_per_vector": faiss.serialize_index(ann.index).nbytes / len(x),
                "search_ms_per_query": search_ms,
            }
            rows.append(row)
            print(
                f"{name:7s} {row['setting']:30s} recall@10 as served {row['recall_service']:.3f}"
                f" (raw {row['recall']:.3f}, rescored top-100 {row['recall_rescored']:.3f}) "
                f"{search_ms:.3f} ms/query batch "
                f"{len(q)}; build {row['build_s']:.1f}s {row['bytes_per_vector']:.0f} B/vector "
                f"nlist {ann.nlist} [{row['params']}]",
                flush=True,
            )
    return rows


def bench_router(x: np.ndarray, q: np.ndarray, args: argparse.Namespace) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        procs: list[ServiceProcess] = []
        try:
            single = start_service("retriever", service_env(f"{tmp}/single", args))
            procs.append(single)
            shards = [
                start_service("retriever", service_env(f"{tmp}/s{i}", args))
                for i in range(args.router_shards)
            ]
            procs.extend(shards)
            servers = "[" + ", ".join(s.address for s in shards) + "]"
            router = start_service(
                "retriever", service_env(f"{tmp}/router", args, shard_servers=servers)
            )
            procs.append(router)
            targets = {
                "1 process": single,
                f"router + {args.router_shards} shard processes": router,
            }
            for label, svc in targets.items():
                stub = pb_grpc.RetrieverStub(svc.channel())
                load_service(stub, "bench", x, 0 if svc is router else 1)
                for batch in args.batches:
                    reqs = {
                        s: search_request("bench", q[s : s + batch]) for s in starts(len(q), batch)
                    }
                    r = measure(
                        lambda s, stub=stub, reqs=reqs: stub.Search(reqs[s], timeout=60),
                        len(q),
                        batch,
                        max(args.concurrency),
                        args.duration,
                    )
                    rows.append({"deployment": label, "batch": batch, **r})
                    print(
                        f"{label:32s} batch {batch:3d} clients {max(args.concurrency):2d}: "
                        f"{r['qps']:9.0f} q/s p50 {r['p50_ms']:7.2f} p99 {r['p99_ms']:7.2f} ms",
                        flush=True,
                    )
        finally:
            for p in procs:
                p.stop()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="gallery size (vectors)")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per throughput figure")
    ap.add_argument("--batches", type=lambda s: [int(v) for v in s.split(",")], default=[1, 64])
    ap.add_argument("--concurrency", type=lambda s: [int(v) for v in s.split(",")], default=[1, 16])
    ap.add_argument("--kinds", type=lambda s: s.split(","), default=list(KINDS))
    ap.add_argument("--nprobes", type=lambda s: [int(v) for v in s.split(",")], default=[64, 256])
    ap.add_argument("--ef-searches", type=lambda s: [int(v) for v in s.split(",")], default=[128])
    ap.add_argument("--router-shards", type=int, default=4)
    ap.add_argument("--skip", type=lambda s: s.split(","), default=[], help="a, b and/or c")
    ap.add_argument("--synthetic", action="store_true", help="random vectors, not the gallery")
    ap.add_argument(
        "--omp-threads", type=int, default=1, help="FAISS OpenMP threads, here and in the service"
    )
    ap.add_argument("--json", type=Path, help="also write every figure here")
    args = ap.parse_args()
    grpc_version = grpc.__version__
    x, q, how = load_data(args.n, args.queries, args.synthetic)
    print(f"# data: {how}; n={len(x)} dim={x.shape[1]} queries={len(q)}")
    print(f"# faiss {faiss.__version__}, grpcio {grpc_version}, GPUs {gpu.gpu_count()}", flush=True)
    out: dict[str, object] = {"data": how, "n": len(x)}
    if "a" not in args.skip:
        out["service_vs_faiss"] = bench_service_vs_faiss(x, q, args)
    if "b" not in args.skip:
        out["recall"] = bench_recall(x, q, args)
    if "c" not in args.skip:
        out["router"] = bench_router(x, q, args)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
