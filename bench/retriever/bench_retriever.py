"""Retriever benchmark: every figure beside the bare library, in one run.

(a) The service (``python -m facesearch_server.retriever``, one flat shard, over gRPC) against
    in-process FAISS on the same vectors and index: QPS and p50/p99 per call at batch 1 and 64,
    with 1 and 16 concurrent clients.
(b) recall@10 against exact search for each index kind, twice: the bare library (the
    service's own index code, ``retriever.index_build``, run in-process) and the running
    service (a collection of that kind, searched over gRPC once its build is READY), each at
    its defaults (search width tuned by the build to 0.95 on held-out stored vectors), then at
    other widths; with build time and bytes per vector.
(c) The router over N shard server processes against one process, same data, same queries.

Every timed figure follows untimed warm-up calls, and runs for at least --duration seconds
and --min-samples calls; p99 is printed only from >= 100 samples, else the max with its n
(``bench/common/timing.py``).

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

from bench.common.timing import summarize, warm_up  # noqa: E402
from facesearch_contract.v1 import retriever_pb2 as pb  # noqa: E402
from facesearch_contract.v1 import retriever_service_pb2_grpc as pb_grpc  # noqa: E402
from facesearch_server.retriever import gpu, index_build  # noqa: E402
from harness.service_process import ServiceProcess, start_service  # noqa: E402

MODEL = "sface-2021dec"
K = 10
KINDS = {"flat": pb.INDEX_KIND_FLAT, "ivf_pq": pb.INDEX_KIND_IVF_PQ, "hnsw": pb.INDEX_KIND_HNSW}
# The service answers at most 256 queries per Search (max_search_batch).
SERVICE_BATCH = 250


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
    min_samples: int = 100,
    warmup: int = 3,
) -> dict[str, object]:
    """Closed loop: ``clients`` threads each call ``fn(start)`` (a batch of ``batch`` queries
    from offset ``start``) back to back, until ``seconds`` have passed and ``min_samples``
    calls were timed (so slow configurations still give a p99); at most 20x ``seconds`` (60 s
    at least)."""
    grid = starts(n_queries, batch)
    warm_up(lambda: fn(grid[0]), warmup)
    lat: list[float] = []
    done = [0]
    lock = threading.Lock()
    t0 = time.perf_counter()
    stop = t0 + seconds
    hard_stop = t0 + max(20 * seconds, 60.0)

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        gpu.pin_threads()  # OpenMP settings are per thread
        while True:
            now = time.perf_counter()
            with lock:
                enough = len(lat) >= min_samples
            if (now >= stop and enough) or now >= hard_stop:
                break
            start = grid[int(rng.integers(0, len(grid)))]
            t = time.perf_counter()
            fn(start)
            took = time.perf_counter() - t
            with lock:
                lat.append(took)
                done[0] += min(batch, n_queries - start)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    summary = summarize(lat)
    return {"qps": done[0] / wall, "latency": summary.as_dict(), "text": summary.text()}


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


def load_service(
    stub: pb_grpc.RetrieverStub,
    name: str,
    x: np.ndarray,
    shards: int,
    index: pb.IndexParams | None = None,
) -> float:
    stub.CreateCollection(
        pb.CreateCollectionRequest(
            name=name,
            shard_count=shards,
            vector_fields=[
                pb.VectorFieldSpec(name="face", dimension=x.shape[1], model_id=MODEL, index=index)
            ],
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
            print("# (a) service vs in-process FAISS, flat, k = 10, same run", flush=True)
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
                        args.min_samples,
                    )
                    srv = measure(
                        lambda s, reqs=reqs: stub.Search(reqs[s], timeout=60),
                        len(q),
                        batch,
                        clients,
                        args.duration,
                        args.min_samples,
                    )
                    rows.append({"batch": batch, "clients": clients, "faiss": lib, "service": srv})
                    print(
                        f"batch {batch:3d} clients {clients:2d}: faiss {lib['qps']:9.0f} q/s "
                        f"{lib['text']} | service {srv['qps']:9.0f} q/s {srv['text']} | "
                        f"service / faiss {srv['qps'] / lib['qps']:.2f}",
                        flush=True,
                    )
        finally:
            svc.stop()
    return rows


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def chunked_ms(
    search: Callable[[np.ndarray], np.ndarray], q: np.ndarray
) -> tuple[np.ndarray, float]:
    """Ids found for every query and ms per query, searching in the service's largest batch
    (so the bare and the service figure are per query at the same batch size)."""
    warm_up(lambda: search(q[:SERVICE_BATCH]), 1)
    t0 = time.perf_counter()
    found = np.concatenate(
        [search(q[lo : lo + SERVICE_BATCH]) for lo in range(0, len(q), SERVICE_BATCH)]
    )
    return found, (time.perf_counter() - t0) * 1000 / len(q)


def bare_recall(
    name: str, x: np.ndarray, q: np.ndarray, truth: np.ndarray, args: argparse.Namespace
) -> list[dict]:
    """The bare library: the service's index code (index_build) run in-process."""
    kind = KINDS[name]
    params = index_build.resolve_params(x.shape[1], pb.IndexParams(kind=kind))
    ann = index_build.build(
        kind,
        x.shape[1],
        pb.METRIC_INNER_PRODUCT,
        params,
        np.arange(len(x), dtype=np.int64),
        x,
        lambda p: None,
        threading.Event(),
    )
    assert ann is not None and ann.tuning is not None
    ivf = kind == pb.INDEX_KIND_IVF_PQ
    rows = []
    for width in [0, *(args.nprobes if ivf else args.ef_searches)]:
        req = pb.SearchParams(nprobe=width) if ivf else pb.SearchParams(ef_search=width)
        sp = index_build.search_parameters(ann, params, req, None)

        def search(qq: np.ndarray, sp: faiss.SearchParameters = sp) -> np.ndarray:
            if not ivf:
                return ann.index.search(qq, K, params=sp)[1]
            # What the service answers: IVF-PQ searches always re-rank their top 100 exactly.
            _, cand = ann.index.search(qq, 100, params=sp)
            exact = np.einsum("nkd,nd->nk", x[cand], qq)
            exact[cand < 0] = -np.inf
            order = np.argsort(-exact, axis=1)[:, :K]
            return np.take_along_axis(cand, order, axis=1)

        found, ms = chunked_ms(search, q)
        rows.append(
            {
                "kind": name,
                "side": "bare",
                "width": width or ann.width(params),
                "default": not width,
                "recall": recall_at_k(found, truth),
                "held_out_recall": ann.tuning.recall if not width else None,
                "ms_per_query": ms,
                "build_s": ann.build_seconds,
                "bytes_per_vector": faiss.serialize_index(ann.index).nbytes / len(x),
            }
        )
    return rows


def wait_built(
    stub: pb_grpc.RetrieverStub, name: str, flat: bool, timeout_s: float
) -> pb.VectorFieldStats:
    """Polls DescribeCollection until the field's approximate index serves (READY; EXACT for
    flat, which has none)."""
    want = pb.BUILD_STATE_EXACT if flat else pb.BUILD_STATE_READY
    deadline = time.monotonic() + timeout_s
    while True:
        info = stub.DescribeCollection(pb.DescribeCollectionRequest(collection=name), timeout=30)
        fs = info.collection.field_stats[0]
        if fs.build_state == want:
            return fs
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: build state {fs.build_state} after {timeout_s}s")
        time.sleep(0.5)


def service_recall(
    stub: pb_grpc.RetrieverStub,
    name: str,
    x: np.ndarray,
    q: np.ndarray,
    truth: np.ndarray,
    args: argparse.Namespace,
) -> list[dict]:
    """The running service: a collection of this kind, loaded over gRPC, searched over gRPC
    after its own build (and its own width tuning) is READY."""
    kind = KINDS[name]
    ivf = kind == pb.INDEX_KIND_IVF_PQ
    coll = f"recall_{name}"
    # One build over every vector (not a first one at the default 5k / 20k threshold followed by
    # rebuilds while loading), so the index searched is the one a loaded collection settles on.
    index = pb.IndexParams(kind=kind, train_threshold=0 if kind == pb.INDEX_KIND_FLAT else len(x))
    load_s = load_service(stub, coll, x, 1, index)
    t0 = time.perf_counter()
    fs = wait_built(stub, coll, kind == pb.INDEX_KIND_FLAT, args.build_timeout)
    build_s = time.perf_counter() - t0
    tuned = fs.effective_index.nprobe if ivf else fs.effective_index.ef_search
    print(
        f"# service {name}: loaded in {load_s:.1f}s, build READY {build_s:.1f}s later"
        + (
            f"; its build tuned {'nprobe' if ivf else 'ef_search'} {tuned}, held-out recall@10 "
            f"{fs.measured_recall:.3f}"
            if kind != pb.INDEX_KIND_FLAT
            else ""
        ),
        flush=True,
    )
    widths = (
        [0] if kind == pb.INDEX_KIND_FLAT else [0, *(args.nprobes if ivf else args.ef_searches)]
    )
    rows = []
    for width in widths:
        params = pb.SearchParams(nprobe=width) if ivf else pb.SearchParams(ef_search=width)

        def search(qq: np.ndarray, params: pb.SearchParams = params) -> np.ndarray:
            req = search_request(coll, qq)
            req.params.CopyFrom(params)
            out = np.full((len(qq), K), -1, dtype=np.int64)
            for i, res in enumerate(stub.Search(req, timeout=600).results):
                ids = [int(h.id[1:]) for h in res.hits]  # points are named "v<row>"
                out[i, : len(ids)] = ids
            return out

        found, ms = chunked_ms(search, q)
        rows.append(
            {
                "kind": name,
                "side": "service",
                "width": width or tuned,
                "default": not width,
                "recall": recall_at_k(found, truth),
                "held_out_recall": fs.measured_recall if not width else None,
                "ms_per_query": ms,
                "build_s": build_s,
                "bytes_per_vector": fs.index_bytes / len(x),
            }
        )
    stub.DropCollection(pb.DropCollectionRequest(collection=coll), timeout=60)
    return rows


def side_text(row: dict) -> str:
    """One side of a recall line: width, recall (and the held-out recall its build measured,
    on tuned rows), speed, build time, size."""
    width = "" if row["kind"] == "flat" else f"width {row['width']:4d} "
    h = row.get("held_out_recall")
    held = f" (held-out {h:.3f})" if h else ""
    return (
        f"{width}recall@10 {row['recall']:.3f}{held} {row['ms_per_query']:.3f} ms/q build "
        f"{row['build_s']:.1f}s {row['bytes_per_vector']:.0f} B/vec"
    )


def bench_recall(x: np.ndarray, q: np.ndarray, args: argparse.Namespace) -> list[dict]:
    """recall@10 of each kind against exact search: bare library, then the running service."""
    gpu.configure(args.omp_threads)
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    truth = flat.search(q, K)[1]
    print(
        f"# (b) recall@10 vs exact search, {len(q)} queries, per query at batch {SERVICE_BATCH}, "
        f"same run: bare = the service's index code in-process; service = gRPC Search on a "
        f"collection of that kind after its build is READY",
        flush=True,
    )
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        svc = start_service("retriever", service_env(tmp, args))
        try:
            stub = pb_grpc.RetrieverStub(svc.channel())
            for name in args.kinds:
                ivf = name == "ivf_pq"
                if name == "flat":
                    found, ms = chunked_ms(lambda qq: flat.search(qq, K)[1], q)
                    bare = [
                        {
                            "kind": name,
                            "side": "bare",
                            "width": 0,
                            "default": True,
                            "recall": recall_at_k(found, truth),
                            "held_out_recall": None,
                            "ms_per_query": ms,
                            "build_s": 0.0,
                            "bytes_per_vector": faiss.serialize_index(flat).nbytes / len(x),
                        }
                    ]
                else:
                    bare = bare_recall(name, x, q, truth, args)
                served = service_recall(stub, name, x, q, truth, args)
                for b, s in zip(bare, served, strict=True):
                    what = "exact" if name == "flat" else ("nprobe" if ivf else "ef_search")
                    setting = (
                        what
                        if name == "flat"
                        else f"{what} {b['width'] if not b['default'] else 'tuned'}"
                    )
                    print(
                        f"{name:7s} {setting:18s} | bare: {side_text(b)} | service: "
                        f"{side_text(s)} | service - bare {s['recall'] - b['recall']:+.3f}",
                        flush=True,
                    )
                rows += bare + served
        finally:
            svc.stop()
    return rows


def bench_router(x: np.ndarray, q: np.ndarray, args: argparse.Namespace) -> list[dict]:
    """One retriever process against the router over N shard processes: both loaded with the
    same vectors, then measured back to back per batch size (same run, same queries)."""
    rows = []
    clients = max(args.concurrency)
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
            routed = f"router + {args.router_shards} shard processes"
            stubs = {
                "1 process": pb_grpc.RetrieverStub(single.channel()),
                routed: pb_grpc.RetrieverStub(router.channel()),
            }
            for label, stub in stubs.items():
                load_service(stub, "bench", x, 1 if label == "1 process" else 0)
            print(
                f"# (c) one retriever process vs {routed}, flat, {clients} clients, same run",
                flush=True,
            )
            for batch in args.batches:
                reqs = {s: search_request("bench", q[s : s + batch]) for s in starts(len(q), batch)}
                qps = {}
                for label, stub in stubs.items():
                    r = measure(
                        lambda s, stub=stub, reqs=reqs: stub.Search(reqs[s], timeout=60),
                        len(q),
                        batch,
                        clients,
                        args.duration,
                        args.min_samples,
                    )
                    qps[label] = r["qps"]
                    rows.append({"deployment": label, "batch": batch, "clients": clients, **r})
                    print(
                        f"{label:32s} batch {batch:3d} clients {clients:2d}: "
                        f"{r['qps']:9.0f} q/s {r['text']}",
                        flush=True,
                    )
                print(
                    f"{'router / 1 process':32s} batch {batch:3d}: "
                    f"{qps[routed] / qps['1 process']:.2f} of its q/s",
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
    ap.add_argument(
        "--min-samples",
        type=int,
        default=100,
        help="timed calls per figure at least (p99 needs 100; fewer prints the max and n)",
    )
    ap.add_argument(
        "--build-timeout", type=float, default=3600, help="seconds to wait for a service build"
    )
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
