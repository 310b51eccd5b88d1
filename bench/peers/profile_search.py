"""Where a retriever's time goes while it serves one search load: py-spy samples the retriever
process (the peers bench's facesearch, HNSW at ``--width``) while Python client threads call
Search in a closed loop, and the busy samples are split into FAISS search, result building
(shard rows, fusion's SearchResponse), the worker-thread hop, and gRPC / event loop / protobuf.

Needs py-spy (not a project dependency): ``pip install --target /tmp/pyspy py-spy``.

    nice -n 10 python -m bench.peers.profile_search --batch 64 --clients 1 \\
        --py-spy /tmp/pyspy/bin/py-spy
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.peers.bench_coalesce import Retriever  # noqa: E402
from bench.retriever.bench_retriever import load_data, measure  # noqa: E402

# Leaf frames of threads waiting (py-spy samples some blocked waits as running).
IDLE = (
    "_worker (concurrent/futures/thread.py:81)",
    "select (selectors.py",
    "wait (threading.py",
    "Thread.run (threading.py",
)
HOP = ("concurrent/futures", "to_thread", "_write_to_self", "threading.py", "run_in_executor")


def category(frames: list[str]) -> str:
    stack = ";".join(frames)
    if "swigfaiss" in frames[-1]:
        return "FAISS search"
    if "shard_search.py" in stack:
        return "shard: hit lists (search_field)"
    if "_search_locked" in stack:
        return "shard: result rows (a pb.Point per hit)"
    if "fusion.py" in stack or "validation.py" in stack:
        return "fusion: plan and check queries, build SearchResponse"
    if any(h in stack for h in HOP):
        return "worker-thread hop"
    return "gRPC aio, event loop, protobuf (de)serialisation"


def split(raw: Path) -> tuple[int, int, collections.Counter[str]]:
    """(busy samples, idle samples left out, busy samples per category) of py-spy's raw file."""
    busy, idle = 0, 0
    cats: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, n = line.rsplit(" ", 1)
        frames = stack.split(";")
        if any(i in frames[-1] for i in IDLE):
            idle += int(n)
            continue
        busy += int(n)
        cats[category(frames)] += int(n)
    return busy, idle, cats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="FAISS OpenMP threads")
    ap.add_argument("--width", type=int, default=56)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--coalescing", action="store_true", help="search_coalescing on")
    ap.add_argument("--py-spy", default="py-spy", help="the py-spy executable")
    ap.add_argument("--out", type=Path, help="keep py-spy's raw samples here")
    args = ap.parse_args()

    x, q, how = load_data(args.n, 1000, False)
    print(f"# data: {how}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="profile-search-"))
    raw = args.out or tmp / "samples.txt"
    s = Retriever(tmp / "fs", len(x), x.shape[1], args.threads, args.coalescing)
    try:
        s.create()
        s.ingest(np.arange(len(x)), x)
        s.build(len(x), 1800)
        s.set_width(args.width)
        fn = s.searcher(q, args.batch, 10)
        pid = str(s.svc.proc.pid)
        seconds = str(int(args.seconds))
        cmd = [args.py_spy, "record", "--pid", pid, "--rate", "200", "--duration", seconds]
        cmd += ["--format", "raw", "--threads", "-o", str(raw)]
        spy = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(0.5)  # py-spy attached before the timed loop
        m = measure(fn, len(q), args.batch, args.clients, args.seconds, warmup=20)
        err = spy.communicate()[1].decode()
        if spy.returncode:
            raise SystemExit(f"py-spy failed: {err[-500:]}")
    finally:
        s.shutdown()
    busy, idle, cats = split(raw)
    print(
        f"batch {args.batch}, {args.clients} clients, {args.threads} OpenMP threads, width "
        f"{args.width}: {m['qps']:,.0f} q/s, {m['text']}; {busy:,} busy samples "
        f"({idle:,} waiting left out)"
    )
    for name, n in cats.most_common():
        print(f"{100 * n / busy:5.1f}%  {name}")


if __name__ == "__main__":
    main()
