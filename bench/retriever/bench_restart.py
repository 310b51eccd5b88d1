"""Restart to full speed after deletes: one HNSW shard (the service's ``LocalShard``, in-process)
loaded with --n vectors, built, --deletes of them deleted, snapshotted with the purge still
owed, then reopened, twice:

- now: the snapshot keeps the built index with its tombstones and the labels it owes a purge;
  the reopened shard serves through the index at once and the purge rebuild runs after;
- before (issue #13): a snapshot taken while deletes were owed a purge left the index out, so
  the reopened shard scanned every vector exactly until a full rebuild finished. Reproduced
  from the same snapshot with its index files removed, then the same full build.

Printed: time to the first answered query, time until the built index is in force (queries at
full speed), the rebuild that stood before it, and the purge rebuild (plus the scrub snapshot)
that follows in the background.

Synthetic unit vectors: the build and load times depend on n, dim and the graph parameters, not
much on the data. Per-query speed does depend on it (random 128-d vectors need a very wide HNSW
search for 0.95 recall), so it is not printed here: see bench_retriever.py for real faces.
One OpenMP thread, as the service runs builds by default (``faiss_omp_threads``).

    python -m bench.retriever.bench_restart --n 100000
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from facesearch_contract.v1 import retriever_pb2 as pb  # noqa: E402
from facesearch_server.retriever import index_build  # noqa: E402
from facesearch_server.retriever.build_schedule import SCRUB  # noqa: E402
from facesearch_server.retriever.shard import LocalShard  # noqa: E402
from facesearch_server.retriever.shard_search import FieldSearch  # noqa: E402

MODEL = "sface-2021dec"


def spec(dim: int, m: int, ef_construction: int) -> pb.VectorFieldSpec:
    params = pb.IndexParams(kind=pb.INDEX_KIND_HNSW, hnsw_m=m, ef_construction=ef_construction)
    return pb.VectorFieldSpec(
        name="face",
        dimension=dim,
        metric=pb.METRIC_INNER_PRODUCT,
        model_id=MODEL,
        index=index_build.resolve_params(dim, params),
    )


def load(shard: LocalShard, x: np.ndarray) -> None:
    for lo in range(0, len(x), 1024):
        pts = []
        for i in range(lo, min(len(x), lo + 1024)):
            p = pb.Point(id=f"f{i}")
            p.vectors["face"].values.extend(x[i].tolist())
            p.model_ids["face"] = MODEL
            pts.append(p)
        shard.upsert(pts, durable=False)


def reopen(
    directory: Path, fs: pb.VectorFieldSpec, q: np.ndarray, background: bool = True
) -> dict[str, float]:
    """Open like a restarting process, answer one query, then bring the index in force (and,
    with ``background``, run the purge rebuild and scrub that follow at full speed)."""
    jobs: list[str] = []
    t0 = time.perf_counter()
    shard = LocalShard(directory, [fs], lambda s, name: jobs.append(name))
    shard.builds.settle_s = 3600.0  # jobs run below, one by one, timed
    shard.search(FieldSearch("face", q[:1], 10, None, [], pb.SearchParams(), False, False))
    first_query = time.perf_counter() - t0
    out = {"first_query_s": first_query}
    shard.resume_builds()
    ready = shard.field_stats()[0].build_state == pb.BUILD_STATE_READY
    if ready:
        out["index_in_force_s"] = first_query
    while jobs and (background or not ready):
        job = jobs.pop(0)
        t = time.perf_counter()
        shard.build_now(job)
        took = time.perf_counter() - t
        if job == SCRUB:
            out["scrub_snapshot_s"] = took
        elif ready:
            out["purge_rebuild_s"] = took  # in the background, at full speed meanwhile
        else:
            out["rebuild_s"] = took
            out["index_in_force_s"] = time.perf_counter() - t0
            ready = True
    shard.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--deletes", type=int, default=100)
    ap.add_argument("--hnsw-m", type=int, default=index_build.DEFAULT_HNSW_M)
    ap.add_argument("--ef-construction", type=int, default=index_build.DEFAULT_EF_CONSTRUCTION)
    ap.add_argument("--omp-threads", type=int, default=1)
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a tmp dir)")
    ap.add_argument(
        "--now-only",
        action="store_true",
        help="reopen the current snapshot only: no 'before' arm (a second full build) and no "
        "background purge rebuild after full speed (another); for sizes where each build "
        "takes tens of minutes",
    )
    args = ap.parse_args()
    faiss.omp_set_num_threads(args.omp_threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.n, args.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[:1]
    fs = spec(args.dim, args.hnsw_m, args.ef_construction)
    work = Path(tempfile.mkdtemp(prefix="bench-restart-", dir=args.dir))
    try:
        now_dir = work / "now"
        shard = LocalShard(now_dir, [fs])
        t = time.perf_counter()
        load(shard, x)
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        shard.build_now("face")
        build_s = time.perf_counter() - t
        victims = [f"f{i}" for i in rng.choice(args.n, args.deletes, replace=False)]
        shard.delete_ids(victims)
        shard.snapshot()  # the purge is still owed: the case that used to drop the index
        shard.close()
        before: dict[str, float] = {}
        if not args.now_only:
            before_dir = work / "before"
            shutil.copytree(now_dir, before_dir)
            (snap,) = [p for p in before_dir.glob("snapshot-*") if not p.name.endswith(".tmp")]
            manifest = json.loads((snap / "manifest.json").read_text())
            manifest["ann"] = {}
            (snap / "manifest.json").write_text(json.dumps(manifest))
            for f in snap.glob("ann-*"):
                f.unlink()
        snapshot_mib = sum(f.stat().st_size for f in now_dir.rglob("*") if f.is_file()) / 2**20

        now = reopen(now_dir, fs, q, background=not args.now_only)
        if not args.now_only:
            before = reopen(before_dir, fs, q)
        print(
            f"n={args.n} dim={args.dim} HNSW M={args.hnsw_m} efC={args.ef_construction} "
            f"deletes={args.deletes} omp_threads={args.omp_threads}; "
            f"load {load_s:.1f}s, first full build {build_s:.1f}s, shard on disk "
            f"{snapshot_mib:,.0f} MiB" + ("; --now-only: '-' = not run" if args.now_only else "")
        )
        print(f"{'':34}{'now':>12}{'before':>12}")
        rows = [
            ("time to first query (s)", "first_query_s"),
            ("time to built index in force (s)", "index_in_force_s"),
            ("rebuild before in force (s)", "rebuild_s"),
            ("purge rebuild, background (s)", "purge_rebuild_s"),
            ("scrub snapshot after it (s)", "scrub_snapshot_s"),
        ]
        for label, key in rows:
            cells = [f"{d[key]:12.2f}" if key in d else f"{'-':>12}" for d in (now, before)]
            print(f"{label:34}{''.join(cells)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
