"""One system, end to end, in a process of its own (so its memory is its own and a crash of one
store does not take the others' figures with it). Started by ``bench_peers``; reads the arrays
it saved, writes one JSON object of figures.

    python -m bench.peers.worker --system hnswlib --data DIR --workdir DIR --out FILE.json
    python -m bench.peers.worker --phase reopen ...same arguments  (reads and completes FILE.json)

The second phase is a process of its own, so "reopen" means what it does after a restart: no
cache, server or open segment of the first process is left to answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.peers.systems import PEERS, WIDTHS, System, clean, rss_bytes  # noqa: E402
from bench.retriever.bench_retriever import measure, recall_at_k  # noqa: E402

K = 10
# Recall is computed searching in batches of this size (the retriever answers at most 256
# queries per Search); speed is measured separately, in the timed loops.
RECALL_BATCH = 250
# (batch, clients) of the timed figures.
LOADS = ((1, 1), (1, 8), (64, 1))


def make(name: str, workdir: Path, n: int, dim: int, threads: int) -> System:
    if name == "facesearch":
        from bench.peers.facesearch_system import Facesearch

        return Facesearch(workdir, n, dim, threads)
    return PEERS[name](workdir, n, dim, threads)


def search_all(system: System, q: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [system.search(q[lo : lo + RECALL_BATCH], K) for lo in range(0, len(q), RECALL_BATCH)]
    )


def per_query_recall(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.array([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)])


def tune(system: System, q: np.ndarray, truth: np.ndarray, target: float) -> list[dict]:
    """Recall on the held-out queries at each width, ascending, up to the first whose recall
    less one standard error reaches the target (the rule the retriever's own tuning uses, so
    that the scored queries land at or above it as often as below): the width then used for
    every scored figure."""
    curve = []
    for width in WIDTHS:
        if width < max(K, system.min_width):
            continue
        system.set_width(width)
        r = per_query_recall(search_all(system, q), truth)
        se = float(r.std(ddof=1) / np.sqrt(len(r))) if len(r) > 1 else 0.0
        curve.append({"width": width, "recall": float(r.mean()), "se": se})
        if r.mean() - se >= target:
            break
    return curve


def run(args: argparse.Namespace) -> dict:
    data = np.load(args.data / "arrays.npz")
    x, q_tune, q_score = data["x"], data["q_tune"], data["q_score"]
    t_tune, t_score = data["truth_tune"], data["truth_score"]
    if args.phase == "reopen":
        return reopen(args, x, q_score)
    clean(args.workdir)
    system = make(args.system, args.workdir, len(x), x.shape[1], args.threads)
    out: dict = {"system": args.system, "width_name": system.width_name}
    try:
        return measure_system(system, args, out, x, q_tune, q_score, t_tune, t_score)
    finally:
        system.shutdown()


def reopen(args: argparse.Namespace, x: np.ndarray, q_score: np.ndarray) -> dict:
    """The second process: open what the first left on disk (its deletes included), like a
    restart, and check that no deleted id comes back."""
    prior = json.loads(args.out.read_text())
    victims = np.array(prior["victims"], dtype=np.int64)
    system = make(args.system, args.workdir, len(x), x.shape[1], args.threads)
    system.width = prior["width"]
    out: dict = {}
    try:
        t = time.perf_counter()
        system.reopen()
        system.search(q_score[: args.deletes], K)
        out["reopen_first_answer_s"] = time.perf_counter() - t
        try:
            system.wait_reopened(len(x) - len(victims), args.build_timeout)
            out["reopen_ready_s"] = time.perf_counter() - t
        except TimeoutError as e:
            out["reopen_ready_error"] = str(e)
        found = search_all(system, q_score[: args.deletes])
        out["deleted"] = len(victims)
        out["deleted_returned"] = int(np.isin(found, victims).sum())
        system.close()
    finally:
        system.shutdown()
    return {**prior, **out}


def measure_system(
    system: System,
    args: argparse.Namespace,
    out: dict,
    x: np.ndarray,
    q_tune: np.ndarray,
    q_score: np.ndarray,
    t_tune: np.ndarray,
    t_score: np.ndarray,
) -> dict:
    ids = np.arange(len(x), dtype=np.int64)
    system.create()
    rss0 = rss_bytes(system.pids())
    t0 = time.perf_counter()
    system.ingest(ids, x)
    system.finish_ingest()
    out["ingest_s"] = time.perf_counter() - t0
    out["ingest_per_s"] = len(x) / out["ingest_s"]
    try:
        system.build(len(x), args.build_timeout)
        out["ready_s"] = time.perf_counter() - t0
    except TimeoutError as e:  # measured all the same, and the table says it never got ready
        out["ready_error"] = str(e)
    print(f"{args.system}: ingest {out['ingest_s']:.1f}s, ready {out.get('ready_s')}", flush=True)

    if args.system == "facesearch":
        # Its own tuned width (ef_search 0 = the collection's), scored on the same queries.
        system.set_width(0)
        out["own_default_recall"] = recall_at_k(search_all(system, q_score), t_score)
    curve = tune(system, q_tune, t_tune, args.target)
    out["tuning"] = curve
    out["width"] = curve[-1]["width"]
    out["held_out_recall"] = curve[-1]["recall"]
    system.set_width(out["width"])
    out["recall"] = recall_at_k(search_all(system, q_score), t_score)
    print(
        f"{args.system}: {system.width_name} {out['width']} (held-out {out['held_out_recall']:.3f})"
        f", scored recall@10 {out['recall']:.3f}",
        flush=True,
    )

    out["loads"] = []
    for batch, clients in LOADS:
        r = measure(
            system.searcher(q_score, batch, K),
            len(q_score),
            batch,
            clients,
            args.duration,
            args.min_samples,
            warmup=args.warmup,
        )
        out["loads"].append({"batch": batch, "clients": clients, **r})
        print(f"{args.system}: batch {batch} clients {clients}: {r['qps']:.0f} q/s {r['text']}")
    out["rss_bytes"] = rss_bytes(system.pids()) - rss0
    out["rss_total_bytes"] = rss_bytes(system.pids())
    out["info"] = system.info()

    # Deletes that must hold across a reopen (checked by the next process, ``reopen``): the
    # exact top hit of the first scored queries.
    victims = np.unique(t_score[: args.deletes, 0])
    system.delete(victims)
    system.close()
    out["victims"] = victims.tolist()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--system", required=True)
    ap.add_argument(
        "--phase", choices=("measure", "reopen"), default="measure", help="reopen: after measure"
    )
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--min-samples", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--deletes", type=int, default=100)
    ap.add_argument("--build-timeout", type=float, default=1800)
    args = ap.parse_args()
    try:
        result = run(args)
    except Exception as e:  # the orchestrator prints it beside the others' figures
        traceback.print_exc()
        result = {"system": args.system, "error": f"{args.phase}: {type(e).__name__}: {e}"}
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
