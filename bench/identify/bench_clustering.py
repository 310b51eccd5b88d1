"""Clustering unlabelled faces into candidate persons: which method, at what quality and cost.

Every face of every LFW photo (the folder-labels bench's cache) whose identity is known (the
face nearest the frame's centre; bystanders, whose identity is unknown, are left out), so the
truth is exact. Methods, all from scikit-learn (no hand-written clustering) and all cut at a
threshold from the model card (1:1 FMR, the face pair's poorer quality band): connected
components of the graph of pairs above the threshold; agglomerative clustering with average
and with complete linkage; HDBSCAN on cosine distance. Figures: pairwise precision and
recall, BCubed F, clusters that mix two or more people (among clusters of 2+ faces), and the
time for the whole set. Then the service's own code (``face_clusters``): one full run, and the
same faces arriving in batches (shuffled, seeded), each batch joining the clusters kept from
the ones before, as ListClusters does between listings.

    python -m bench.identify.bench_clustering          # needs bench_folder_labels' cache
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.cluster import HDBSCAN, AgglomerativeClustering

from bench.identify.bench_folder_labels import CACHE
from facesearch_server.embedder import model_cards
from facesearch_server.embedder import model_files as mf
from facesearch_server.retriever.persons import face_clusters


def pairwise_precision_recall(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    def same_pairs(labels: np.ndarray) -> int:
        return sum(n * (n - 1) // 2 for n in Counter(labels.tolist()).values())

    both = same_pairs(np.array([f"{t}|{p}" for t, p in zip(truth, pred, strict=True)]))
    return both / max(same_pairs(pred), 1), both / max(same_pairs(truth), 1)


def bcubed_f(truth: np.ndarray, pred: np.ndarray) -> float:
    joint = Counter(zip(truth.tolist(), pred.tolist(), strict=True))
    t_count, p_count = Counter(truth.tolist()), Counter(pred.tolist())
    precision = np.mean([joint[(t, p)] / p_count[p] for t, p in zip(truth, pred, strict=True)])
    recall = np.mean([joint[(t, p)] / t_count[t] for t, p in zip(truth, pred, strict=True)])
    return float(2 * precision * recall / (precision + recall))


def mixed_clusters(truth: np.ndarray, pred: np.ndarray) -> tuple[int, int]:
    members: dict[int, set[str]] = {}
    for t, p in zip(truth.tolist(), pred.tolist(), strict=True):
        members.setdefault(p, set()).add(t)
    sizes = Counter(pred.tolist())
    multi = [c for c, n in sizes.items() if n >= 2]
    return sum(len(members[c]) > 1 for c in multi), len(multi)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fmr", type=float, nargs="+", default=[1e-4, 1e-5])
    parser.add_argument("--limit", type=int, default=0, help="first N faces only")
    parser.add_argument(
        "--time-all", action="store_true", help="also time average linkage on every face"
    )
    parser.add_argument(
        "--arrivals",
        type=int,
        nargs="+",
        default=[2, 10, 50],
        help="batches the faces arrive in, for the service's incremental clustering",
    )
    args = parser.parse_args()
    if not CACHE.exists():
        raise SystemExit(f"{CACHE} is missing: run python -m bench.identify.bench_folder_labels")
    z = np.load(CACHE, allow_pickle=False)
    keep = z["central"]
    emb, truth, quality = z["emb"][keep], z["identity"][keep], z["q"][keep]
    if args.limit:
        emb, truth, quality = emb[: args.limit], truth[: args.limit], quality[: args.limit]
    cal = model_cards.calibration_of(model_cards.shipped_card(mf.SFACE))
    assert cal is not None
    n = len(emb)
    started = time.perf_counter()
    sims = emb @ emb.T
    sim_seconds = time.perf_counter() - started
    singletons = sum(c == 1 for c in Counter(truth.tolist()).values())
    print(
        f"{n} faces of {len(set(truth.tolist()))} people ({singletons} with one face); "
        f"similarity matrix {sim_seconds:.1f} s"
    )
    print(
        f"{'method':38s} {'clusters':>8s} {'pair P':>7s} {'pair R':>7s} {'BCubed F':>9s} "
        f"{'mixed/2+':>11s} {'seconds':>8s}"
    )
    for fmr in args.fmr:
        # The threshold of the poorer face of each pair (bands by quality).
        bands = np.array([cal.threshold(fmr, float(q), 1) for q in quality], np.float32)
        need = np.maximum(bands[:, None], bands[None, :])
        distance = np.clip(1.0 - sims, 0.0, 2.0)
        cut = float(1.0 - cal.threshold(fmr, 0.9, 1))
        runs = {
            "connected components": lambda need=need: connected_components(
                csr_matrix(sims >= need), directed=False
            )[1],
            "agglomerative, average linkage": lambda d=distance, c=cut: AgglomerativeClustering(
                n_clusters=None, metric="precomputed", linkage="average", distance_threshold=c
            ).fit_predict(d),
            "agglomerative, complete linkage": lambda d=distance, c=cut: AgglomerativeClustering(
                n_clusters=None, metric="precomputed", linkage="complete", distance_threshold=c
            ).fit_predict(d),
            "HDBSCAN (min cluster 2)": lambda d=distance, c=cut: HDBSCAN(
                min_cluster_size=2, metric="precomputed", cluster_selection_epsilon=c, copy=True
            ).fit_predict(d.astype(np.float64)),
        }
        for name, run in runs.items():
            t0 = time.perf_counter()
            pred = np.asarray(run())
            seconds = time.perf_counter() - t0
            if name.startswith("HDBSCAN"):
                # Noise (-1) is "no cluster": each noise face its own singleton.
                noise = pred < 0
                pred = pred.copy()
                pred[noise] = pred.max() + 1 + np.arange(int(noise.sum()))
            p, r = pairwise_precision_recall(truth, pred)
            mixed, multi = mixed_clusters(truth, pred)
            print(
                f"{name + f' @ FMR {fmr:g}':38s} {len(set(pred.tolist())):8d} {p:7.3f} {r:7.3f} "
                f"{bcubed_f(truth, pred):9.3f} {f'{mixed}/{multi}':>11s} {seconds:8.1f}"
            )
    incremental(emb, truth, cal, args.arrivals)
    if args.time_all:
        # Bystanders included (their identity is unknown): only the cost is measured here.
        every = z["emb"]
        t0 = time.perf_counter()
        d = np.clip(1.0 - every @ every.T, 0.0, 2.0)
        AgglomerativeClustering(
            n_clusters=None,
            metric="precomputed",
            linkage="average",
            distance_threshold=float(1.0 - cal.threshold(args.fmr[0], 0.9, 1)),
        ).fit_predict(d)
        print(f"average linkage over all {len(every)} faces: {time.perf_counter() - t0:.1f} s")


def incremental(emb: np.ndarray, truth: np.ndarray, cal, arrivals: list[int]) -> None:  # type: ignore[no-untyped-def]
    """The service's clustering (face_clusters.extend) all at once and in batches."""
    threshold = cal.threshold(face_clusters.CLUSTER_FMR, 1.0, 1)
    order = np.random.default_rng(0).permutation(len(emb))
    ids = [str(i) for i in order]
    print(f"\nservice clustering (face_clusters), cut {threshold:.3f}, faces in random order")
    print(
        f"{'arrivals':>8s} {'faces/batch':>11s} {'clusters':>8s} {'pair P':>7s} {'pair R':>7s} "
        f"{'BCubed F':>9s} {'mixed/2+':>11s} {'total s':>8s} {'last batch s':>12s}"
    )
    for batches in [1, *arrivals]:
        assignment: dict[str, str] = {}
        size = -(-len(ids) // batches)
        started, last = time.perf_counter(), 0.0
        for b in range(0, len(ids), size):
            t0 = time.perf_counter()
            upto = ids[: b + size]
            assignment = face_clusters.extend(assignment, upto, emb[order[: len(upto)]], threshold)
            last = time.perf_counter() - t0
        total = time.perf_counter() - started
        pred = np.array([assignment[str(i)] for i in range(len(emb))])
        p, r = pairwise_precision_recall(truth, pred)
        mixed, multi = mixed_clusters(truth, pred)
        print(
            f"{batches:8d} {size:11d} {len(set(pred.tolist())):8d} {p:7.3f} {r:7.3f} "
            f"{bcubed_f(truth, pred):9.3f} {f'{mixed}/{multi}':>11s} {total:8.1f} {last:12.2f}"
        )


if __name__ == "__main__":
    main()
