"""Time of one feedback round (head update + candidates) at growing gallery sizes.

    python -m bench.personalize.round_latency --sizes 10000 100000 1000000 --rounds 200

A round is what SubmitFeedback computes, with the retriever replaced by the same FAISS index
in-process (the bare library): SCLoss training of the head (online_training.py, bounded steps)
on the session's labels so far, the clusters and the single linear query (scoring.py), one
batched FAISS search (the scoring query, top ``rescore_top``, plus the exploration pool in early
rounds), exact rescoring and the pick (round_planner.py). Printed beside it: the bare FAISS
search of the same batch alone, so the ratio shows what the personalizer adds.

Gallery: the real SFace embeddings (bench/common/gallery.py) padded with synthetic vectors drawn
to match their between- and within-identity statistics (``pad_synthetic``). Index: exact flat
inner product up to ``--flat-max`` vectors, else IVF-Flat (nlist = min(1024, 4 sqrt(n)),
nprobe 32) trained on a 64k sample (what the retriever's approximate index does at that size).
Session labels come from a simulated user with a random target (embedding ground truth).
Warm-up rounds run before timing; p99 is printed from >= 100 rounds only (else the max and n).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field

import faiss
import numpy as np

from bench.common.gallery import Gallery, data_available, load_real_gallery, pad_synthetic
from bench.common.timing import summarize
from facesearch_server.personalizer.exploration import random_directions
from facesearch_server.personalizer.head import Head
from facesearch_server.personalizer.online_training import train_round
from facesearch_server.personalizer.round_planner import RoundParams, exploratory_count, select
from facesearch_server.personalizer.scoring import clusters, retriever_query


def build_index(v: np.ndarray, flat_max: int, nprobe: int) -> faiss.Index:
    d = v.shape[1]
    if len(v) <= flat_max:
        index = faiss.IndexFlatIP(d)
    else:
        nlist = min(1024, int(4 * np.sqrt(len(v))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = v[np.random.default_rng(0).choice(len(v), min(len(v), 64 * 1024), replace=False)]
        index.train(sample)
        index.nprobe = nprobe
    index.add(v)
    return index


@dataclass
class RoundTimes:
    """Seconds per timed round, and per part of it."""

    round: list[float] = field(default_factory=list)
    train: list[float] = field(default_factory=list)
    faiss: list[float] = field(default_factory=list)


def warm_up_round(v: np.ndarray, index: faiss.Index) -> None:
    """torch's first backward pass and FAISS's first search are not rounds."""
    p = RoundParams()
    for _ in range(3):
        train_round(np.eye(v.shape[1], dtype=np.float32), v[:4], v[4:40], p.training)
        index.search(v[:2], 10)


def time_rounds(
    v: np.ndarray,
    index: faiss.Index,
    rounds: int,
    session_rounds: int = 10,
    k: int = 8,
    seed: int = 0,
) -> RoundTimes:
    """``rounds`` feedback rounds of simulated sessions, in-process: the personalizer's own
    modules (head update, scoring, round planner) over ``index`` in place of the retriever."""
    p = RoundParams()
    rng = np.random.default_rng(seed)
    times = RoundTimes()
    while len(times.round) < rounds:
        # A fresh session: random target, the user answers by embedding similarity.
        target = int(rng.integers(len(v)))
        sims = v[: min(len(v), 50_000)] @ v[target]
        tau = float(np.quantile(sims, 0.98))
        head = Head.identity("bench", v.shape[1])
        shown: list[int] = list(rng.choice(len(v), k, replace=False))
        labels = {i: (float(v[i] @ v[target]) >= tau) for i in shown}
        labels[shown[0]] = True  # the user sees someone like the person in mind
        rounds_with_positive = 0
        for _ in range(session_rounds):
            pos = np.array([i for i, s in labels.items() if s])
            neg = np.array([i for i, s in labels.items() if not s])
            t_start = time.perf_counter()
            # 1. the head update
            w, _ = train_round(head.weight, v[pos], v[neg], p.training)
            head.weight = w
            times.train.append(time.perf_counter() - t_start)
            rounds_with_positive += 1
            # 2. candidates: one batched search, exact rescoring, the pick
            c = clusters(head, v[pos], v[neg])
            n_exp = exploratory_count(k, len(pos), rounds_with_positive, p)
            queries = [retriever_query(head, c, p.scoring)]
            if n_exp:
                queries += list(random_directions(rng, p.pool_directions, v.shape[1]))
            q = np.stack(queries).astype(np.float32)
            kk = p.rescore_top + len(shown)  # room to drop what was shown
            t_f = time.perf_counter()
            _, ids = index.search(q, kk)
            times.faiss.append(time.perf_counter() - t_f)
            seen = set(shown)
            cands = [(str(i), v[i]) for i in ids[0] if i >= 0 and i not in seen][: p.rescore_top]
            pool = []
            for row in ids[1:]:
                pool += [(str(i), v[i]) for i in row if i >= 0 and i not in seen][
                    : p.pool_per_direction
                ]
            picks = select(head, c, cands, pool, v[shown], set(), k, n_exp, p)
            times.round.append(time.perf_counter() - t_start)
            new = [int(pk.id) for pk in picks]
            shown += new
            labels.update({i: (float(v[i] @ v[target]) >= tau) for i in new})
    return times


def run_size(base: Gallery, n: int, args: argparse.Namespace) -> dict[str, object]:
    g = pad_synthetic(base, n, seed=99) if n > len(base) else base
    v = np.ascontiguousarray(g.vectors[:n], np.float32)
    t0 = time.time()
    index = build_index(v, args.flat_max, args.nprobe)
    build_s = time.time() - t0
    warm_up_round(v, index)
    t = time_rounds(v, index, args.rounds, args.session_rounds, args.k)
    return {
        "n": n,
        "index": type(index).__name__,
        "build_s": build_s,
        "round": summarize(t.round),
        "train": summarize(t.train),
        "faiss": summarize(t.faiss),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    ap.add_argument("--rounds", type=int, default=100, help="rounds timed per size")
    ap.add_argument("--session-rounds", type=int, default=10, help="rounds per simulated session")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--flat-max", type=int, default=200_000)
    ap.add_argument("--nprobe", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="FAISS OpenMP threads")
    args = ap.parse_args()
    if not data_available():
        sys.exit("../shared/data is missing: the bench needs the real faces")
    faiss.omp_set_num_threads(args.threads)
    base = load_real_gallery()
    print(
        "| gallery | index | rounds (n) | round p50 ms | round p99 ms | head update p50 / p99 ms "
        "| bare FAISS search p50 / p99 ms |"
    )
    print("|---|---|---:|---:|---:|---|---|")
    for n in args.sizes:
        r = run_size(base, n, args)
        rnd, tr, fs = r["round"], r["train"], r["faiss"]
        print(
            f"| {r['n']:,} | {r['index']} | {rnd.n} | {rnd.p50_ms:.1f} | {rnd.tail_cell()} | "
            f"{tr.p50_ms:.1f} / {tr.tail_cell()} | {fs.p50_ms:.1f} / {fs.tail_cell()} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
