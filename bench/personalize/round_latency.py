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
"""

from __future__ import annotations

import argparse
import sys
import time

import faiss
import numpy as np

from bench.common.gallery import data_available, load_real_gallery, pad_synthetic
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


def pct(x: list[float], q: float) -> float:
    return float(np.percentile(np.array(x) * 1000, q))


def run_size(base, n: int, args: argparse.Namespace) -> dict[str, float]:
    g = pad_synthetic(base, n, seed=99) if n > len(base) else base
    v = np.ascontiguousarray(g.vectors[:n], np.float32)
    t0 = time.time()
    index = build_index(v, args.flat_max, args.nprobe)
    build_s = time.time() - t0
    p = RoundParams()
    rng = np.random.default_rng(0)
    # Warm-up (torch's first backward pass, FAISS's first search) is not a round.
    train_round(np.eye(v.shape[1], dtype=np.float32), v[:4], v[4:40], p.training)
    index.search(v[:2], 10)
    round_t: list[float] = []
    faiss_t: list[float] = []
    train_t: list[float] = []
    while len(round_t) < args.rounds:
        # A fresh session: random target, the user answers by embedding similarity.
        target = int(rng.integers(len(v)))
        sims = v[: min(len(v), 50_000)] @ v[target]
        tau = float(np.quantile(sims, 0.98))
        head = Head.identity("bench", v.shape[1])
        shown: list[int] = list(rng.choice(len(v), 8, replace=False))
        labels = {i: (float(v[i] @ v[target]) >= tau) for i in shown}
        labels[shown[0]] = True  # the user sees someone like the person in mind
        rounds_with_positive = 0
        for _ in range(args.session_rounds):
            pos = np.array([i for i, s in labels.items() if s])
            neg = np.array([i for i, s in labels.items() if not s])
            t_start = time.perf_counter()
            # 1. the head update
            w, _ = train_round(head.weight, v[pos], v[neg], p.training)
            head.weight = w
            train_t.append(time.perf_counter() - t_start)
            rounds_with_positive += 1
            # 2. candidates: one batched search, exact rescoring, the pick
            c = clusters(head, v[pos], v[neg])
            n_exp = exploratory_count(args.k, len(pos), rounds_with_positive, p)
            queries = [retriever_query(head, c, p.scoring)]
            if n_exp:
                queries += list(random_directions(rng, p.pool_directions, v.shape[1]))
            q = np.stack(queries).astype(np.float32)
            kk = p.rescore_top + len(shown)  # room to drop what was shown
            t_f = time.perf_counter()
            _, ids = index.search(q, kk)
            faiss_t.append(time.perf_counter() - t_f)
            seen = set(shown)
            cands = [(str(i), v[i]) for i in ids[0] if i >= 0 and i not in seen][: p.rescore_top]
            pool = []
            for row in ids[1:]:
                pool += [(str(i), v[i]) for i in row if i >= 0 and i not in seen][
                    : p.pool_per_direction
                ]
            picks = select(head, c, cands, pool, v[shown], set(), args.k, n_exp, p)
            round_t.append(time.perf_counter() - t_start)
            new = [int(pk.id) for pk in picks]
            shown += new
            labels.update({i: (float(v[i] @ v[target]) >= tau) for i in new})
    return {
        "n": n,
        "index": type(index).__name__,
        "build_s": build_s,
        "round_p50_ms": pct(round_t, 50),
        "round_p99_ms": pct(round_t, 99),
        "train_p50_ms": pct(train_t, 50),
        "train_p99_ms": pct(train_t, 99),
        "faiss_p50_ms": pct(faiss_t, 50),
        "faiss_p99_ms": pct(faiss_t, 99),
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
        "| gallery | index | round p50 ms | round p99 ms | head update p50 / p99 ms "
        "| bare FAISS search p50 / p99 ms |"
    )
    print("|---|---|---|---|---|---|")
    for n in args.sizes:
        r = run_size(base, n, args)
        print(
            f"| {r['n']:,} | {r['index']} | {r['round_p50_ms']:.1f} | {r['round_p99_ms']:.1f} | "
            f"{r['train_p50_ms']:.1f} / {r['train_p99_ms']:.1f} | "
            f"{r['faiss_p50_ms']:.1f} / {r['faiss_p99_ms']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
