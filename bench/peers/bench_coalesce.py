"""Search coalescing A/B (issue 13): the retriever with ``search_coalescing`` on and off, side by
side with bare hnswlib, on the same vectors and queries, in interleaved rounds (the box is
shared, so each round holds all three under the same load).

Two retriever processes (on, off) hold the same HNSW collection (the peers bench's facesearch
adapter, its default graph); hnswlib is built in this process with the same graph. Every
system searches at the same width (``--width``; 56 is what every HNSW here needed for recall
0.95 at 20k, bench/peers/README.md). Figures per round: q/s and p50 / p99 ms per call, closed
loop, Python threads, k = 10, for each (batch, clients) of ``--loads``; and, for the servers,
callers per FAISS search of the coalesced groups (from /metrics).

    nice -n 10 python -m bench.peers.bench_coalesce --n 20000 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.peers.facesearch_system import Facesearch  # noqa: E402
from bench.peers.systems import Hnswlib, System  # noqa: E402
from bench.retriever.bench_retriever import load_data, measure  # noqa: E402
from facesearch_contract.v1 import retriever_service_pb2_grpc as pb_grpc  # noqa: E402
from harness.service_process import start_service  # noqa: E402

K = 10


class Retriever(Facesearch):
    """The peers bench's facesearch, with coalescing set and /metrics on."""

    def __init__(self, workdir: Path, n: int, dim: int, threads: int, coalescing: bool) -> None:
        super().__init__(workdir, n, dim, threads)
        self.coalescing = coalescing
        self.name = f"facesearch {'coalescing' if coalescing else 'alone'}"

    def _start(self) -> None:
        self.svc = start_service(
            "retriever",
            {
                "FACESEARCH_RETRIEVER_DATA_DIR": str(self.workdir / "retriever"),
                "FACESEARCH_RETRIEVER_FAISS_OMP_THREADS": str(self.threads),
                "FACESEARCH_RETRIEVER_SEARCH_COALESCING": str(self.coalescing).lower(),
            },
            metrics=True,
            log_dir=self.workdir / "log",
        )
        self.stub = pb_grpc.RetrieverStub(self.svc.channel())

    def groups(self) -> tuple[float, float]:
        """(FAISS searches of coalesced groups, callers they answered) so far."""
        url = f"http://127.0.0.1:{self.svc.metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        got = {}
        for line in text.splitlines():
            for name in ("search_groups_total", "search_group_callers_total"):
                if line.startswith(f"facesearch_retriever_{name} "):
                    got[name] = float(line.split()[1])
        return got.get("search_groups_total", 0.0), got.get("search_group_callers_total", 0.0)


def cpu_s(s: System) -> float:
    """CPU seconds (user + system) the server process has used so far; 0 for in-process."""
    if not isinstance(s, Retriever):
        return 0.0
    t = psutil.Process(s.svc.proc.pid).cpu_times()
    return t.user + t.system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--width", type=int, default=56, help="ef / ef_search for every system")
    ap.add_argument("--threads", type=int, default=2, help="OpenMP / hnswlib threads")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=4.0, help="seconds per figure")
    ap.add_argument("--loads", default="1x1,1x8", help="batch x clients, comma-separated")
    ap.add_argument("--synthetic", action="store_true")
    args = ap.parse_args()
    loads = [tuple(int(v) for v in s.split("x")) for s in args.loads.split(",")]

    x, q, how = load_data(args.n, args.queries, args.synthetic)
    print(f"# data: {how}; n {len(x):,}, {len(q):,} queries, width {args.width}", flush=True)
    ids = np.arange(len(x))
    tmp = Path(tempfile.mkdtemp(prefix="bench-coalesce-"))
    systems: list[System] = []
    try:
        for on in (True, False):
            s = Retriever(tmp / f"fs-{on}", len(x), x.shape[1], args.threads, on)
            systems.append(s)
            s.create()
            s.ingest(ids, x)
            s.build(len(x), 1800)
            s.set_width(args.width)
        h = Hnswlib(tmp / "hnswlib", len(x), x.shape[1], args.threads)
        h.workdir.mkdir(parents=True)
        h.create()
        h.ingest(ids, x)
        h.set_width(args.width)
        systems.append(h)
        print("# ready", flush=True)

        figs: dict[tuple[str, tuple[int, int]], list[dict]] = {}
        for r in range(args.rounds):
            for batch, clients in loads:
                for s in systems:
                    before = s.groups() if isinstance(s, Retriever) else (0.0, 0.0)
                    cpu0 = cpu_s(s)
                    m = measure(
                        s.searcher(q, batch, K),
                        len(q),
                        batch,
                        clients,
                        args.duration,
                        min_samples=200,
                        warmup=20,
                    )
                    after = s.groups() if isinstance(s, Retriever) else (0.0, 0.0)
                    calls = m["latency"]["n"] + 20
                    m["cpu_ms"] = 1000 * (cpu_s(s) - cpu0) / calls
                    g, c = after[0] - before[0], after[1] - before[1]
                    lat = m["latency"]
                    m.update(
                        p50_ms=lat["p50_ms"], p99_ms=lat["p99_ms"] or lat["max_ms"], n=lat["n"]
                    )
                    m["group"] = c / g if g else 0.0
                    figs.setdefault((s.name, (batch, clients)), []).append(m)
                    extra = f", {m['group']:.2f} callers per FAISS search" if g else ""
                    if isinstance(s, Retriever):
                        extra += f", server CPU {m['cpu_ms']:.3f} ms per call"
                    print(
                        f"round {r + 1} b{batch} c{clients} {s.name}: {m['qps']:,.0f} q/s, "
                        f"p50 {m['p50_ms']:.2f} / p99 {m['p99_ms']:.2f} ms (n={m['n']}){extra}",
                        flush=True,
                    )
        print("\n| load | system | q/s per round | median q/s | median p50 / p99 ms |")
        print("|---|---|---|---|---|")
        for batch, clients in loads:
            for s in systems:
                ms = figs[(s.name, (batch, clients))]
                per = " / ".join(f"{m['qps']:,.0f}" for m in ms)
                qps = statistics.median(m["qps"] for m in ms)
                p50 = statistics.median(m["p50_ms"] for m in ms)
                p99 = statistics.median(m["p99_ms"] for m in ms)
                lat = f"{p50:.2f} / {p99:.2f}"
                print(f"| b{batch} c{clients} | {s.name} | {per} | {qps:,.0f} | {lat} |")
    finally:
        for s in systems:
            s.shutdown()
        time.sleep(0.1)


if __name__ == "__main__":
    main()
