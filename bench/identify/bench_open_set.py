"""Open-set identification on LFW, NIST FRVT style, with the calibration the model ships.

Two folds of LFW identities (by a hash of the name, as the shipped card is made): the card is
fitted on one fold and measured on the other, then the other way round, so no person is both
calibrated and measured. In the measured fold, ``--non-enrolled`` identities only ever search
(non-mated probes: every photo of them); the gallery enrols the first ``--refs`` clean photos of
other identities (mated probes: their remaining photos). Galleries larger than the fold can give
take distractor persons from the calibration fold (references only, never probes).

For each gallery size and probe condition it prints: the FPIR each operating point promises
against the FPIR measured (with two 95 % upper bounds: Clopper-Pearson over searches, and a
bootstrap over non-mated persons, honest when one person's photos fail together), FNIR at
those points, FNIR at the thresholds that give exactly FPIR 1 % / 0.1 % on these probes (what
raw cosine can reach with a perfect oracle), rank-1 accuracy, and raw cosine at the 1:1
verification threshold.

    python -m bench.identify.bench_open_set   # embeds LFW once (~15-30 min), then ~5 min
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from facesearch_server.embedder.calibration.dataset import EmbeddedSet
from facesearch_server.embedder.calibration.fit import fit_calibration, identity_fold
from facesearch_server.runtime.open_set import OperatingPoints, ScoreCalibration
from harness.shared_data import shared_data_dir

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "calibration" / "lfw.npz"
SFACE_1TO1 = 0.363  # OpenCV's published verification threshold: the raw-cosine baseline


@dataclass
class Gallery:
    refs: np.ndarray  # (M, d) reference embeddings
    ref_person: np.ndarray  # (M,) person index of each reference
    persons: list[str]
    mated: np.ndarray  # rows of mated probes
    mated_person: np.ndarray  # their person index
    non_mated: np.ndarray  # rows of non-mated probes


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return float(ci.low), float(ci.high)


def cluster_bootstrap_upper(
    per_run: list[tuple[np.ndarray, np.ndarray]], draws: int = 2000, seed: int = 0
) -> float:
    """95 % upper bound of a pooled FPIR, resampling non-mated *persons* (not searches) with
    replacement within each run. A person's photos are correlated searches (one look-alike in
    the gallery catches many of them), so the binomial interval over searches is too narrow.
    ``per_run``: (false matches per person, searches per person) of each run."""
    rng = np.random.default_rng(seed)
    hits, total = np.zeros(draws), np.zeros(draws)
    for k, n in per_run:
        pick = rng.integers(0, len(k), size=(draws, len(k)))
        hits += k[pick].sum(1)
        total += n[pick].sum(1)
    return float(np.quantile(hits / np.maximum(total, 1), 0.975))


def valid_rows(data: EmbeddedSet, condition: str) -> np.ndarray:
    return ~np.isnan(data.embeddings[condition]).any(1)


def build_gallery(
    data: EmbeddedSet,
    test_ids: list[str],
    calib_ids: list[str],
    size: int,
    non_enrolled: int,
    refs: int,
    rng: np.random.Generator,
) -> Gallery:
    clean_ok = valid_rows(data, "clean")
    rows_of: dict[str, list[int]] = {}
    for i, who in enumerate(data.identities):
        if clean_ok[i]:
            rows_of.setdefault(str(who), []).append(i)
    eligible = [p for p in test_ids if len(rows_of.get(p, [])) > refs]
    order = list(rng.permutation(eligible))
    outsiders, insiders = order[:non_enrolled], order[non_enrolled:]
    distractors = [p for p in rng.permutation(calib_ids) if len(rows_of.get(p, [])) >= refs]
    persons = (insiders + distractors)[:size]
    if len(persons) < size:
        raise SystemExit(f"only {len(persons)} persons available for a gallery of {size}")
    ref_rows, ref_person, mated, mated_person = [], [], [], []
    inside = set(insiders)
    for k, p in enumerate(persons):
        rows = rows_of[p]
        ref_rows += rows[:refs]
        ref_person += [k] * refs
        if p in inside:
            mated += rows[refs:]
            mated_person += [k] * len(rows[refs:])
    non_mated = [i for p in outsiders for i in rows_of[p]]
    return Gallery(
        refs=data.embeddings["clean"][ref_rows],
        ref_person=np.array(ref_person),
        persons=persons,
        mated=np.array(mated),
        mated_person=np.array(mated_person),
        non_mated=np.array(non_mated),
    )


def top_person(scores: np.ndarray, ref_person: np.ndarray, n_persons: int) -> tuple:  # type: ignore[type-arg]
    """Per probe: the best person and its score (max over that person's references)."""
    best = np.full((len(scores), n_persons), -np.inf, np.float32)
    np.maximum.at(best.T, ref_person, scores.T)
    idx = best.argmax(1)
    return idx, best[np.arange(len(best)), idx]


def evaluate(
    data: EmbeddedSet,
    g: Gallery,
    cal: ScoreCalibration,
    points: OperatingPoints,
    condition: str,
) -> dict[str, Any]:
    emb, q = data.embeddings[condition], data.quality[condition]
    m = len(g.refs)
    out: dict[str, Any] = {"references": m}

    def searches(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        ok = ~np.isnan(emb[rows]).any(1)
        rows = rows[ok]
        who, score = top_person(emb[rows] @ g.refs.T, g.ref_person, len(g.persons))
        return rows, who, score, ok

    nm_rows, _, nm_score, _ = searches(g.non_mated)
    mt_rows, mt_who, mt_score, mt_ok = searches(g.mated)
    truth = g.mated_person[mt_ok]
    _, nm_person = np.unique(data.identities[nm_rows], return_inverse=True)
    out["non_mated"], out["mated"] = len(nm_rows), len(mt_rows)
    out["undetected"] = int((~mt_ok).sum())
    out["rank1"] = float((mt_who == truth).mean())

    def thresholds(rows: np.ndarray, fpir: float) -> np.ndarray:
        return np.array([cal.threshold(fpir, float(q[r]), m) for r in rows])

    for name, fpir, needs_quality in (
        ("match", points.match_fpir, True),
        ("possible", points.possible_fpir, False),
    ):
        floor = points.min_match_quality if needs_quality else -np.inf
        nm_hit = (nm_score >= thresholds(nm_rows, fpir)) & (q[nm_rows] >= floor)
        mt_hit = (mt_score >= thresholds(mt_rows, fpir)) & (q[mt_rows] >= floor)
        k = int(nm_hit.sum())
        out[f"{name}_promised"] = fpir
        out[f"{name}_fpir"] = k / max(len(nm_rows), 1)
        out[f"{name}_fpir_hi"] = clopper_pearson(k, len(nm_rows))[1]
        out[f"{name}_by_person"] = (
            np.bincount(nm_person, weights=nm_hit).astype(np.int64),
            np.bincount(nm_person).astype(np.int64),
        )
        out[f"{name}_fnir"] = float(1 - (mt_hit & (mt_who == truth)).mean())
    for fpir in (1e-2, 1e-3):
        # The oracle: the threshold that gives exactly this FPIR on these non-mated probes.
        t = float(np.quantile(nm_score, 1 - fpir)) if len(nm_score) else np.inf
        out[f"oracle_fnir@{fpir:g}"] = float(1 - ((mt_score > t) & (mt_who == truth)).mean())
    out["raw_fpir"] = float((nm_score >= SFACE_1TO1).mean())
    out["raw_fnir"] = float(1 - ((mt_score >= SFACE_1TO1) & (mt_who == truth)).mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 600, 1400])
    parser.add_argument("--non-enrolled", type=int, default=200)
    parser.add_argument("--refs", type=int, default=1, help="reference photos per person")
    parser.add_argument(
        "--seeds",
        type=int,
        default=10,
        help="galleries per fold: a 100-person gallery's FPIR moves by tenths of a percent "
        "with the people drawn, so the promise is checked over many draws",
    )
    parser.add_argument("--conditions", nargs="+", default=["clean", "24px", "blur3", "jpeg10"])
    args = parser.parse_args()
    if not args.cache.exists():
        from facesearch_server.embedder.calibration.dataset import embed_folder
        from facesearch_server.embedder.pipeline import FacePipeline

        lfw = (shared_data_dir() or Path("../shared/data")) / "lfw"
        print(f"embedding {lfw} under every degradation into {args.cache} (once) ...")
        embed_folder(FacePipeline.local(), lfw).save(args.cache)
    data = EmbeddedSet.load(args.cache)
    everyone = sorted(set(map(str, data.identities)))
    points = OperatingPoints()
    print(
        f"LFW: {len(data.identities)} photos, {len(everyone)} identities; operating points: "
        f"match FPIR {points.match_fpir:g} (quality >= {points.min_match_quality}), "
        f"possible FPIR {points.possible_fpir:g}; {args.refs} reference photo(s) per person; "
        f"{args.non_enrolled} non-enrolled identities per run; {args.seeds} seeds x 2 folds"
    )
    header = (
        f"{'cond':7s} {'persons':>7s} {'refs':>5s} {'nm':>5s} {'mated':>5s} {'rank1':>6s} "
        f"| {'match FPIR (95% hi; by person)':>30s} {'FNIR':>6s} "
        f"| {'poss. FPIR (95% hi; by person)':>30s} "
        f"{'FNIR':>6s} | {'FNIR@1%':>7s} {'@0.1%':>6s} | {'raw .363 FPIR':>13s} {'FNIR':>6s}"
    )
    folds = {}
    for fold in (0, 1):
        calib = [p for p in everyone if identity_fold(p) == fold]
        cal = fit_calibration(data, set(calib), "sface-2021dec")
        folds[fold] = (calib, [p for p in everyone if identity_fold(p) != fold], cal)
        print(f"fold {fold}: FMR safety factor {cal.fmr_safety_factor} (cross-validated)")
    for condition in args.conditions:
        print()
        print(header)
        for size in args.sizes:
            rows = []
            for calib, test, cal in folds.values():
                for seed in range(args.seeds):
                    rng = np.random.default_rng(seed)
                    g = build_gallery(data, test, calib, size, args.non_enrolled, args.refs, rng)
                    rows.append(evaluate(data, g, cal, points, condition))
            # Pooled over folds and seeds: counts add, rates are averaged.
            nm = int(sum(r["non_mated"] for r in rows))
            mt = int(sum(r["mated"] for r in rows))

            def pooled(key: str, rows: list[dict[str, Any]] = rows) -> float:
                return float(np.mean([r[key] for r in rows]))

            k_match = round(sum(r["match_fpir"] * r["non_mated"] for r in rows))
            k_poss = round(sum(r["possible_fpir"] * r["non_mated"] for r in rows))
            boot = {
                name: cluster_bootstrap_upper([r[f"{name}_by_person"] for r in rows])
                for name in ("match", "possible")
            }
            print(
                f"{condition:7s} {size:7d} {int(rows[0]['references']):5d} {nm:5d} {mt:5d} "
                f"{pooled('rank1'):6.3f} | {k_match / nm:8.4f} "
                f"({clopper_pearson(k_match, nm)[1]:.4f}; {boot['match']:.4f})"
                f" {'':>2s} {pooled('match_fnir'):6.3f} | {k_poss / nm:8.4f} "
                f"({clopper_pearson(k_poss, nm)[1]:.4f}; {boot['possible']:.4f}) {'':>2s} "
                f"{pooled('possible_fnir'):6.3f} | "
                f"{pooled('oracle_fnir@0.01'):7.3f} {pooled('oracle_fnir@0.001'):6.3f} | "
                f"{pooled('raw_fpir'):13.3f} {pooled('raw_fnir'):6.3f}"
            )


if __name__ == "__main__":
    main()
