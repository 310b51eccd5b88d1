"""facesearch beside the vector stores people would use instead, same vectors, same queries,
same run, every figure at equal recall.

Systems: facesearch (a real retriever process, HNSW collection, over gRPC); faiss (reference:
the same FAISS HNSW in-process, no service, to tell the service's cost from the library's);
hnswlib, usearch,
milvus-lite, chromadb and lancedb (the ``peers`` extra: ``pip install -e ".[peers]"``; a store
that is not installed is skipped, saying so). Each runs in its own process, one after the other
(``bench/peers/worker.py``), and reports:

- ingest: vectors/s from the first write to the last acknowledged one, in batches of 1,024
  (facesearch: durable UpsertStream; the stores: their own write call);
- ready: seconds from the first write until the approximate index serves every vector
  (facesearch: Describe READY with all vectors in the graph);
- width: the smallest search width (ef / ef_search / expansion_search) whose recall@10 on the
  held-out queries reaches --target; recall@10 (against exact search) of the scored queries
  at that width; nothing is tuned on the scored queries;
- q/s and p50 / p99 ms per call at batch 1 with 1 and 8 clients, and at batch 64 with 1
  client (closed loop, Python threads, k = 10, after --warmup untimed calls, at least
  --duration s and --min-samples calls; p99 only from >= 100 calls);
- RSS: growth of the resident memory of the processes holding the index (facesearch: the
  retriever process; milvus-lite: its server process too) from the empty collection to after
  the timed searches;
- deletes: the exact top hit of --deletes scored queries deleted, the store closed and
  reopened from disk: seconds to the first answer, to full speed (facesearch: READY again),
  and how many deleted ids came back (must be 0).

Data: the retriever bench's (``bench/retriever/bench_retriever.load_data``): real SFace faces
of ../shared/data padded to --n with identity-matched synthetic vectors; queries are degraded
copies of real faces, split into --tune-queries held out for tuning and --queries scored.

Small (a few minutes):  python -m bench.peers.bench_peers --n 20000
Full:                   python -m bench.peers.bench_peers --n 100000
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.peers.systems import PEERS  # noqa: E402
from bench.retriever.bench_retriever import load_data  # noqa: E402

SYSTEMS = ("facesearch", *PEERS)
# Measured beside the peers but judged against none of the targets: facesearch's own library.
REFERENCES = ("facesearch", "faiss")
K = 10


def missing(name: str) -> list[str]:
    """The imports a system needs that are not installed here."""
    need = () if name == "facesearch" else PEERS[name].requires
    return [m for m in need if importlib.util.find_spec(m) is None]


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("faiss-cpu", "grpcio", "hnswlib", "usearch", "milvus-lite", "chromadb", "lancedb"):
        try:
            out.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            pass
    return ", ".join(out)


def prepare(args: argparse.Namespace, where: Path) -> str:
    """Gallery, queries and exact top 10 of every query, saved for the workers."""
    x, queries, how = load_data(args.n, args.queries + args.tune_queries, args.synthetic)
    if len(queries) < args.queries + args.tune_queries:
        raise SystemExit(
            f"only {len(queries)} queries available; ask for fewer (--queries, --tune-queries)"
        )
    q_score, q_tune = queries[: args.queries], queries[args.queries :]
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    np.savez(
        where / "arrays.npz",
        x=x,
        q_tune=q_tune,
        q_score=q_score,
        truth_tune=flat.search(q_tune, K)[1],
        truth_score=flat.search(q_score, K)[1],
    )
    return f"{how}; {len(q_tune)} held out for tuning, {len(q_score)} scored"


def run_worker(name: str, args: argparse.Namespace, where: Path) -> dict:
    """Both phases (measure, then reopen in a new process), each in a session of its own so
    that one past its time goes with the servers it started."""
    out = where / f"{name}.json"
    t = time.perf_counter()
    for phase in ("measure", "reopen"):
        cmd = [
            sys.executable,
            "-m",
            "bench.peers.worker",
            f"--system={name}",
            f"--phase={phase}",
            f"--data={where}",
            f"--workdir={where / name}",
            f"--out={out}",
            f"--threads={args.threads}",
            f"--target={args.target}",
            f"--duration={args.duration}",
            f"--min-samples={args.min_samples}",
            f"--warmup={args.warmup}",
            f"--deletes={args.deletes}",
            f"--build-timeout={args.build_timeout}",
        ]
        proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True)
        try:
            proc.wait(timeout=args.system_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return {"system": name, "error": f"{phase}: over --system-timeout"}
        finally:
            if proc.poll() is None:  # the bench itself was interrupted
                os.killpg(proc.pid, signal.SIGKILL)
        if not out.exists():
            return {"system": name, "error": f"{phase}: worker exited {proc.returncode}"}
        if "error" in json.loads(out.read_text()):
            break
    result = json.loads(out.read_text())
    result["wall_s"] = time.perf_counter() - t
    return result


def fmt_load(r: dict, batch: int, clients: int) -> tuple[str, str]:
    (load,) = [x for x in r["loads"] if x["batch"] == batch and x["clients"] == clients]
    lat = load["latency"]
    tail = f"{lat['p99_ms']:.2f}" if lat["p99_ms"] is not None else f"max {lat['max_ms']:.2f}"
    return f"{load['qps']:,.0f}", f"{lat['p50_ms']:.2f} / {tail} ({lat['n']})"


def qps(r: dict, batch: int, clients: int) -> float:
    return next(x["qps"] for x in r["loads"] if x["batch"] == batch and x["clients"] == clients)


def p50(r: dict, batch: int, clients: int) -> float:
    return next(
        x["latency"]["p50_ms"]
        for x in r["loads"]
        if x["batch"] == batch and x["clients"] == clients
    )


def table(results: list[dict]) -> str:
    """The figures side by side, as a Markdown table (what README quotes)."""
    head = (
        "| system | width (held-out recall) | recall@10 | ingest vec/s | ready s "
        "| b1 c1 q/s | b1 c1 p50 / p99 ms (n) | b1 c8 q/s | b1 c8 p50 / p99 ms (n) "
        "| b64 c1 q/s | b64 c1 p50 / p99 ms (n) | RSS MiB | reopen s: answer / full speed "
        "| deleted ids back |"
    )
    lines = [head, "|---" * 14 + "|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['system']} | {r['error']} |" + " |" * 12)
            continue
        b11, b18, b641 = fmt_load(r, 1, 1), fmt_load(r, 1, 8), fmt_load(r, 64, 1)
        ready = f"{r['ready_s']:.1f}" if "ready_s" in r else "not ready"
        reopen_ready = f"{r['reopen_ready_s']:.1f}" if "reopen_ready_s" in r else "not ready"
        lines.append(
            f"| {r['system']} | {r['width_name']} {r['width']} ({r['held_out_recall']:.3f}) "
            f"| {r['recall']:.3f} | {r['ingest_per_s']:,.0f} | {ready} "
            f"| {b11[0]} | {b11[1]} | {b18[0]} | {b18[1]} | {b641[0]} | {b641[1]} "
            f"| {r['rss_bytes'] / 2**20:,.0f} | {r['reopen_first_answer_s']:.1f} / {reopen_ready} "
            f"| {r['deleted_returned']} of {r['deleted']} |"
        )
    return "\n".join(lines)


def verdicts(results: list[dict], target: float) -> list[str]:
    """The issue's targets, each with the figures it compares."""
    ok = {r["system"]: r for r in results if "error" not in r}
    fs = ok.get("facesearch")
    if fs is None:
        return ["facesearch has no figures: no target can be judged"]
    out = []
    if fs["recall"] < target:
        out.append(f"MISSED recall: facesearch scored recall@10 {fs['recall']:.3f} < {target}")
    for r in ok.values():
        if r["system"] in REFERENCES:
            continue
        for batch, clients, what in ((64, 1, "batch 64"), (1, 8, "8 clients")):
            a, b = qps(fs, batch, clients), qps(r, batch, clients)
            mark = "met" if a >= b else "MISSED"
            out.append(
                f"{mark}: {what}, facesearch {a:,.0f} q/s vs {r['system']} {b:,.0f} ({a / b:.2f}x)"
            )
    if "hnswlib" in ok:
        a, b = p50(fs, 1, 1), p50(ok["hnswlib"], 1, 1)
        mark = "met" if a - b <= 1.0 else "MISSED"
        out.append(
            f"{mark}: batch-1 p50 latency facesearch {a:.2f} ms vs hnswlib {b:.2f} ms "
            f"({a - b:+.2f} ms; target within 1 ms)"
        )
    if "faiss" in ok:  # not a target: where facesearch's time goes
        f = ok["faiss"]
        out.append(
            f"(reference) facesearch / in-process FAISS, same index: "
            f"batch 1 p50 {p50(fs, 1, 1) - p50(f, 1, 1):+.2f} ms, "
            f"8 clients {qps(fs, 1, 8) / qps(f, 1, 8):.2f}x, "
            f"batch 64 {qps(fs, 64, 1) / qps(f, 64, 1):.2f}x"
        )
    for r in ok.values():
        if r["deleted_returned"]:
            out.append(f"MISSED deletes: {r['system']} returned deleted ids after reopen")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="gallery size (vectors)")
    ap.add_argument("--queries", type=int, default=1000, help="scored queries")
    ap.add_argument("--tune-queries", type=int, default=1000, help="held-out tuning queries")
    ap.add_argument("--target", type=float, default=0.95, help="recall@10 every width is tuned to")
    ap.add_argument("--systems", type=lambda s: s.split(","), default=list(SYSTEMS))
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="per system")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per timed figure")
    ap.add_argument("--min-samples", type=int, default=200, help="timed calls per figure")
    ap.add_argument("--warmup", type=int, default=20, help="untimed calls before each figure")
    ap.add_argument("--deletes", type=int, default=100)
    ap.add_argument("--build-timeout", type=float, default=1800, help="seconds to wait for ready")
    ap.add_argument("--system-timeout", type=float, default=3600, help="seconds per system")
    ap.add_argument("--synthetic", action="store_true", help="random vectors, not the gallery")
    ap.add_argument(
        "--require-all", action="store_true", help="fail when a system is not installed"
    )
    ap.add_argument("--json", type=Path, help="also write every figure here")
    args = ap.parse_args()
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown:
        ap.error(f"unknown systems {sorted(unknown)}; known: {', '.join(SYSTEMS)}")
    skipped = {s: missing(s) for s in args.systems if missing(s)}
    if skipped and args.require_all:
        raise SystemExit(f"not installed: {skipped} (pip install -e '.[peers]')")
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        where = Path(tmp)
        how = prepare(args, where)
        print(f"# data: {how}; n={args.n}", flush=True)
        print(f"# {versions()}; {args.threads} threads per system; cpus {os.cpu_count()}")
        for s, mods in skipped.items():
            print(f"# skipped {s}: {', '.join(mods)} not installed (pip install -e '.[peers]')")
        results = []
        for name in args.systems:
            if name in skipped:
                continue
            print(f"# {name} ...", flush=True)
            results.append(run_worker(name, args, where))
    print()
    print(table(results))
    print()
    for r in results:
        if "info" in r:
            print(f"# {r['system']}: {r['info']}")
        if "own_default_recall" in r:
            own = r["own_default_recall"]
            print(f"# facesearch at its own tuned width: scored recall@10 {own:.3f}")
        if "ready_error" in r:
            print(f"# {r['system']} never ready: {r['ready_error']}")
        if "reopen_ready_error" in r:
            print(f"# {r['system']} not at full speed after reopen: {r['reopen_ready_error']}")
        if "tuning" in r:
            curve = ", ".join(f"{t['width']}: {t['recall']:.3f}" for t in r["tuning"])
            print(f"# {r['system']} held-out recall by {r['width_name']}: {curve}")
    print()
    for line in verdicts(results, args.target):
        print(line)
    if args.json:
        args.json.write_text(json.dumps({"data": how, "results": results}, indent=1))
    if any("error" in r for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
