"""Identification recall of approximate face search, and what each FAISS index choice costs.

recall@10 against exact search counts every one of the exact top 10, most of which, for a face,
are strangers at diffuse distances no index finds cheaply. What a face search is for is the
same person's other photos that score above the match threshold. This bench measures both:

- recall@10: share of the exact top 10 the approximate top 10 returns (mean over queries);
- identification recall at threshold t ("id-recall"): of the exact top 10 of each query, the
  results of the query's own identity scoring >= t(query), the share the approximate top 10
  returns, pooled over queries. Two thresholds, from the SFace model card's calibration
  (services/embedder/model_cards/sface-2021dec.json):
  * ``match``: calibration.threshold(1e-3, quality, n), the score whose FPIR over the n faces
    searched is 1e-3 (the Persons service's default ``match``; 0.64 at 100k for good faces);
  * ``fmr1e-4``: calibration.threshold(1e-4, quality, 1), the 1:1 score at FMR 1e-4 (0.41, the
    clustering cut): a looser bar, so more and farther neighbours count.
  ``quality`` is the query face's quality score as the embedder computes it.

Data: LFW embedded by the embedder's own pipeline, with identities
(bench/.cache/calibration/lfw.npz, services/embedder/calibration): for every identity with two
or more faces one face is a query, the others are in the gallery; padded to ``--n`` with the
retriever bench's other real faces (../shared/data without its LFW folder, so no photo is in
twice) and its identity-matched synthetic faces (bench/common/gallery.py) as distractors.
Queries are searched clean and degraded (``--degraded``, a condition of lfw.npz, default blur3).
Widths are chosen on half the queries (by identity) and scored on the other half.

Each index is built with ``--omp-threads`` OpenMP threads (FAISS parallelises adds) and
reported with build seconds, bytes per vector (the serialised index), the smallest width
reaching recall@10 >= 0.95 and id-recall >= 0.99, and ms per query at each (batch of all
scored queries).

    python -m bench.retriever.bench_id_recall --n 100000 --omp-threads 2
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

K = 10
REPO = Path(__file__).resolve().parents[2]
LFW = REPO / "bench" / ".cache" / "calibration" / "lfw.npz"
RECALL_TARGET = 0.95
ID_TARGET = 0.99


@dataclass
class FaceSet:
    gallery: np.ndarray  # (n, d) unit vectors
    identity: np.ndarray  # (n,) int: LFW identity code, -1 for distractors
    queries: np.ndarray  # (m, d)
    query_identity: np.ndarray  # (m,)
    quality: np.ndarray  # (m,)
    condition: np.ndarray  # (m,) str
    tune: np.ndarray  # (m,) bool: used to choose widths (the rest are scored)
    how: str


def load_faces(n: int, degraded: str, seed: int = 0) -> FaceSet:
    from bench.common.gallery import load_real_gallery, pad_synthetic
    from facesearch_server.embedder.calibration.dataset import EmbeddedSet

    s = EmbeddedSet.load(LFW)
    clean = s.embeddings["clean"]
    ok = ~np.isnan(clean[:, 0])
    names, codes = np.unique(s.identities, return_inverse=True)
    rng = np.random.default_rng(seed)
    query_rows = []
    for ident in range(len(names)):
        rows = np.flatnonzero((codes == ident) & ok)
        if len(rows) >= 2:
            query_rows.append(int(rng.choice(rows)))
    qr = np.array(sorted(query_rows))
    in_gallery = ok.copy()
    in_gallery[qr] = False
    lfw_vecs = clean[in_gallery].astype(np.float32)
    g = load_real_gallery()
    others = np.flatnonzero((g.folder != "lfw") & ~g.degraded)
    need = n - len(lfw_vecs)
    padded = pad_synthetic(g, len(g) + max(0, need - len(others)))
    distract_rows = np.concatenate([others, np.arange(len(g), len(padded))])[:need]
    gallery = np.concatenate([lfw_vecs, padded.vectors[distract_rows]]).astype(np.float32)
    identity = np.concatenate([codes[in_gallery], np.full(len(distract_rows), -1)])
    qs, qi, qq, qc, qt = [], [], [], [], []
    tune_ident = rng.random(len(names)) < 0.5
    for cond in ("clean", degraded):
        e = s.embeddings[cond][qr]
        has = ~np.isnan(e[:, 0])
        qs.append(e[has])
        qi.append(codes[qr][has])
        qq.append(s.quality[cond][qr][has])
        qc.append(np.full(int(has.sum()), cond))
        qt.append(tune_ident[codes[qr][has]])
    q = np.concatenate(qs).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    how = (
        f"{len(lfw_vecs)} LFW faces (embedder pipeline, {len(names)} identities) + "
        f"{min(need, len(others))} other real faces + {max(0, need - len(others))} synthetic; "
        f"queries: {len(qr)} held-out LFW faces, clean and {degraded}"
    )
    return FaceSet(
        gallery=np.ascontiguousarray(gallery),
        identity=identity,
        queries=np.ascontiguousarray(q),
        query_identity=np.concatenate(qi),
        quality=np.concatenate(qq),
        condition=np.concatenate(qc),
        tune=np.concatenate(qt),
        how=how,
    )


@dataclass
class Truth:
    top: np.ndarray  # (m, K) exact top-K rows
    targets: dict[str, list[set[int]]]  # threshold name -> per query: rows to find


def exact_truth(fs: FaceSet) -> tuple[Truth, dict[str, np.ndarray]]:
    from facesearch_server.embedder.model_cards import calibration_of, shipped_card

    cal = calibration_of(shipped_card("sface-2021dec"))
    assert cal is not None
    n = len(fs.gallery)
    thresholds = {
        "match": np.array([cal.threshold(1e-3, float(q), n) for q in fs.quality]),
        "fmr1e-4": np.array([cal.threshold(1e-4, float(q), 1) for q in fs.quality]),
    }
    scores, top = faiss.knn(fs.queries, fs.gallery, K, metric=faiss.METRIC_INNER_PRODUCT)
    targets = {}
    for name, t in thresholds.items():
        same = fs.identity[top] == fs.query_identity[:, None]
        above = same & (scores >= t[:, None])
        targets[name] = [set(top[i][above[i]].tolist()) for i in range(len(top))]
    return Truth(top, targets), thresholds


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def id_recall(found: np.ndarray, targets: list[set[int]]) -> tuple[float, int]:
    hit = total = 0
    for f, t in zip(found, targets, strict=True):
        total += len(t)
        hit += len(t & set(f.tolist()))
    return (hit / total if total else 1.0), total


@dataclass
class Variant:
    name: str
    factory: Callable[[int, int], faiss.Index]  # (dim, n) -> untrained index
    set_width: Callable[[faiss.Index, int], None]
    widths: tuple[int, int]  # smallest and largest width to try
    needs_training: bool


def _hnsw_of(index: faiss.Index) -> faiss.IndexHNSW:
    if isinstance(index, faiss.IndexRefine):
        index = index.base_index
    return faiss.downcast_index(index)


def _set_ef(index: faiss.Index, w: int) -> None:
    _hnsw_of(index).hnsw.efSearch = w


def _ivf_of(index: faiss.Index) -> faiss.IndexIVF:
    base = index.base_index if isinstance(index, faiss.IndexRefine) else index
    return faiss.extract_index_ivf(base)


def _set_nprobe(index: faiss.Index, w: int) -> None:
    ivf = _ivf_of(index)
    ivf.nprobe = w
    # The coarse quantiser is itself an HNSW graph: its beam must hold the lists probed.
    faiss.downcast_index(ivf.quantizer).hnsw.efSearch = max(64, 2 * w)


def _hnsw(m: int, sq8: bool) -> Callable[[int, int], faiss.Index]:
    def make(d: int, _n: int) -> faiss.Index:
        if sq8:
            inner = faiss.IndexHNSWSQ(
                d, faiss.ScalarQuantizer.QT_8bit, m, faiss.METRIC_INNER_PRODUCT
            )
            inner.hnsw.efConstruction = 200
            refine = faiss.IndexRefineFlat(inner)
            refine.k_factor = 4  # re-rank 40 SQ8 candidates exactly
            return refine
        index = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 200
        return index

    return make


def _ivf_hnsw(sq8: bool) -> Callable[[int, int], faiss.Index]:
    def make(d: int, n: int) -> faiss.Index:
        nlist = int(4 * np.sqrt(n))
        codes = "SQ8" if sq8 else "Flat"
        index = faiss.index_factory(d, f"IVF{nlist}_HNSW32,{codes}", faiss.METRIC_INNER_PRODUCT)
        if sq8:
            refine = faiss.IndexRefineFlat(index)
            refine.k_factor = 4
            return refine
        return index

    return make


def variants(n: int) -> dict[str, Variant]:
    nlist = int(4 * np.sqrt(n))
    return {
        "hnsw32": Variant(
            "HNSW M32 efC200 (service default)", _hnsw(32, False), _set_ef, (16, 8192), False
        ),
        "hnsw64": Variant("HNSW M64 efC200", _hnsw(64, False), _set_ef, (16, 8192), False),
        "hnsw32_sq8": Variant(
            "HNSW M32 SQ8 + RefineFlat x4", _hnsw(32, True), _set_ef, (16, 8192), True
        ),
        "ivf_hnsw": Variant(
            f"IVF{nlist} (HNSW32 coarse) Flat", _ivf_hnsw(False), _set_nprobe, (1, nlist), True
        ),
        "ivf_hnsw_sq8": Variant(
            f"IVF{nlist} (HNSW32 coarse) SQ8 + RefineFlat x4",
            _ivf_hnsw(True),
            _set_nprobe,
            (1, nlist),
            True,
        ),
    }


def smallest_width(passes: Callable[[int], bool], lo: int, hi: int) -> int | None:
    """Doubling then three bisection steps (the tuner's search); None when even ``hi`` fails."""
    w = lo
    while not passes(w):
        if w >= hi:
            return None
        w = min(hi, w * 2)
    low = max(lo, w // 2)
    for _ in range(3):
        if w - low <= 1:
            break
        mid = (low + w) // 2
        if passes(mid):
            w = mid
        else:
            low = mid
    return w


def bench_variant(key: str, v: Variant, fs: FaceSet, truth: Truth) -> dict[str, object]:
    d = fs.gallery.shape[1]
    n = len(fs.gallery)
    index = v.factory(d, n)
    t0 = time.perf_counter()
    if v.needs_training:
        index.train(fs.gallery)
    index.add(fs.gallery)
    build_s = time.perf_counter() - t0
    nbytes = faiss.serialize_index(index).nbytes
    tune, score = fs.tune, ~fs.tune
    cache: dict[tuple[int, bool], np.ndarray] = {}

    def found(w: int, part: bool) -> np.ndarray:
        if (w, part) not in cache:
            v.set_width(index, w)
            sel = fs.tune if part else ~fs.tune
            cache[(w, part)] = index.search(fs.queries[sel], K)[1]
        return cache[(w, part)]

    def sub(targets: list[set[int]], sel: np.ndarray) -> list[set[int]]:
        return [t for t, s in zip(targets, sel, strict=True) if s]

    def recall_ok(w: int) -> bool:
        return recall_at_k(found(w, True), truth.top[tune]) >= RECALL_TARGET

    def id_ok(name: str) -> Callable[[int], bool]:
        return lambda w: id_recall(found(w, True), sub(truth.targets[name], tune))[0] >= ID_TARGET

    chosen = {"recall@10 0.95": smallest_width(recall_ok, *v.widths)}
    for name in truth.targets:
        chosen[f"id-recall({name}) 0.99"] = smallest_width(id_ok(name), *v.widths)
    rows = []
    for goal, w in chosen.items():
        if w is None:
            rows.append({"goal": goal, "width": None})
            continue
        v.set_width(index, w)
        q = fs.queries[score]
        index.search(q[:64], K)  # warm-up
        t0 = time.perf_counter()
        f = index.search(q, K)[1]
        ms = (time.perf_counter() - t0) * 1000 / len(q)
        row: dict[str, object] = {
            "goal": goal,
            "width": w,
            "recall@10": recall_at_k(f, truth.top[score]),
            "ms_per_query": ms,
            "qps": 1000 / ms,
        }
        for name, targets in truth.targets.items():
            row[f"id_recall_{name}"], row[f"id_targets_{name}"] = id_recall(f, sub(targets, score))
            for cond in np.unique(fs.condition):
                sel = fs.condition[score] == cond
                row[f"id_recall_{name}_{cond}"] = id_recall(
                    f[sel], [t for t, s in zip(sub(targets, score), sel, strict=True) if s]
                )[0]
        rows.append(row)
    return {
        "key": key,
        "index": v.name,
        "build_s": build_s,
        "bytes_per_vector": nbytes / n,
        "rows": rows,
    }


def bench_service_tuner(
    fs: FaceSet, truth: Truth, thresholds: dict[str, np.ndarray]
) -> dict[str, object]:
    """The service's own tuner (index_tuning.tune, as index_build runs it: 512 stored vectors
    held out of an HNSW M32 efC200 graph, no identities) under each objective, and what its
    widths give on the scored real queries."""
    from facesearch_contract.v1 import retriever_pb2 as pb
    from facesearch_server.retriever import index_build, index_tuning

    n, d = fs.gallery.shape
    labels = np.arange(n, dtype=np.int64)
    held = index_tuning.held_out_rows(n)
    keep = np.setdiff1d(labels, held)
    index = faiss.IndexIDMap2(
        faiss.IndexHNSWFlat(d, index_build.DEFAULT_HNSW_M, faiss.METRIC_INNER_PRODUCT)
    )
    faiss.downcast_index(index.index).hnsw.efConstruction = index_build.DEFAULT_EF_CONSTRUCTION
    t0 = time.perf_counter()
    index.add_with_ids(fs.gallery[keep], labels[keep])
    build_s = time.perf_counter() - t0
    goals = [("recall@10", index_tuning.RECALL_AT_K, 0.95, float(np.median(thresholds["match"])))]
    for name in thresholds:
        score = float(np.median(thresholds[name]))
        goals.append((f"above {name} ({score:.3f})", index_tuning.ABOVE_THRESHOLD, 0.99, score))
    tunings = []
    for goal, objective, target, min_score in goals:
        t0 = time.perf_counter()
        t = index_tuning.tune(
            pb.INDEX_KIND_HNSW,
            index,
            fs.gallery,
            labels,
            held,
            pb.METRIC_INNER_PRODUCT,
            target,
            0,
            threading.Event(),
            objective=objective,
            min_score=min_score,
        )
        assert t is not None
        tunings.append((goal, t, time.perf_counter() - t0))
    index.add_with_ids(fs.gallery[held], labels[held])
    score = ~fs.tune
    q = fs.queries[score]
    rows = []
    for goal, t, tune_s in tunings:
        sp = faiss.SearchParametersHNSW()
        sp.efSearch = t.width
        index.search(q[:64], K, params=sp)
        t0 = time.perf_counter()
        f = index.search(q, K, params=sp)[1]
        ms = (time.perf_counter() - t0) * 1000 / len(q)
        row: dict[str, object] = {
            "goal": goal,
            "width": t.width,
            "tuner_recall@10": t.recall,
            "tuner_above": t.above_threshold_recall,
            "tuner_objective_used": int(t.objective),
            "tune_s": tune_s,
            "recall@10": recall_at_k(f, truth.top[score]),
            "ms_per_query": ms,
            "qps": 1000 / ms,
        }
        for name, targets in truth.targets.items():
            row[f"id_recall_{name}"] = id_recall(
                f, [x for x, s in zip(targets, score, strict=True) if s]
            )[0]
        rows.append(row)
    return {"build_s": build_s, "rows": rows}


def print_tuner(r: dict) -> None:
    print(f"service tuner (HNSW M32 efC200, graph of n - 512 built in {r['build_s']:.1f} s):")
    for row in r["rows"]:
        ids = ", ".join(
            f"{k[len('id_recall_') :]} {v:.3f}"
            for k, v in row.items()
            if k.startswith("id_recall_")
        )
        print(
            f"  {row['goal']}: ef_search {row['width']} (sample: recall@10 "
            f"{row['tuner_recall@10']:.3f}, above-threshold {row['tuner_above']:.3f}, objective "
            f"used {row['tuner_objective_used']}, {row['tune_s']:.1f} s); real queries: recall@10 "
            f"{row['recall@10']:.3f}, id-recall {ids}; {row['ms_per_query']:.3f} ms/query",
            flush=True,
        )


def print_result(r: dict) -> None:
    head = f"{r['index']}: build {r['build_s']:.1f} s, {r['bytes_per_vector']:.0f} B/vector"
    print(head, flush=True)
    for row in r["rows"]:
        if row["width"] is None:
            print(f"  {row['goal']}: not reached at the widest width")
            continue
        ids = ", ".join(
            f"{k[len('id_recall_') :]} {v:.3f}"
            for k, v in row.items()
            if k.startswith("id_recall_")
        )
        print(
            f"  {row['goal']}: width {row['width']}: recall@10 {row['recall@10']:.3f}, "
            f"id-recall {ids}; {row['ms_per_query']:.3f} ms/query ({row['qps']:.0f} q/s)",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="gallery size (vectors)")
    ap.add_argument("--degraded", default="blur3", help="lfw.npz condition of the degraded queries")
    ap.add_argument(
        "--indexes", type=lambda s: [v for v in s.split(",") if v], default=list(variants(1000))
    )
    ap.add_argument(
        "--omp-threads", type=int, default=2, help="FAISS OpenMP threads (build, search)"
    )
    ap.add_argument(
        "--service-tuner",
        action="store_true",
        help="also run the service's tuner (index_tuning) under each objective on the gallery",
    )
    ap.add_argument("--json", type=Path, help="also write every figure here")
    args = ap.parse_args()
    faiss.omp_set_num_threads(args.omp_threads)
    fs = load_faces(args.n, args.degraded)
    truth, thresholds = exact_truth(fs)
    print(
        f"# data: {fs.how}; n={len(fs.gallery)}; queries {len(fs.queries)} "
        f"({int(fs.tune.sum())} choose widths, {int((~fs.tune).sum())} scored)"
    )
    for name, t in thresholds.items():
        per_q = [len(x) for x in truth.targets[name]]
        print(
            f"# threshold {name}: median {np.median(t):.3f} (range {t.min():.3f}..{t.max():.3f}); "
            f"queries with a same-person result above it in the exact top {K}: "
            f"{np.mean(np.array(per_q) > 0):.2f}, targets {sum(per_q)}"
        )
    print(f"# faiss {faiss.__version__}, {args.omp_threads} OpenMP threads", flush=True)
    out: list[dict[str, object]] = []
    if args.service_tuner:
        tuner = bench_service_tuner(fs, truth, thresholds)
        print_tuner(tuner)
        out.append({"key": "service_tuner", **tuner})
    table = variants(len(fs.gallery))
    for key in args.indexes:
        r = bench_variant(key, table[key], fs, truth)
        print_result(r)
        out.append(r)
    if args.json:
        args.json.write_text(json.dumps({"data": fs.how, "results": out}, indent=1, default=float))


if __name__ == "__main__":
    main()
