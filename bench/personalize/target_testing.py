"""Target testing: rounds until a simulated user's hidden target is shown, per policy.

    python -m bench.personalize.target_testing --targets 200 --seeds 3 --truth embedding user
    python -m bench.personalize.target_testing --mode services --targets 50 --seeds 1

Two modes: ``in-process`` (default, fast: the service's modules over an in-process exact
search) and ``services`` (FaIRCoP through the running personalizer, retriever and Redis over
gRPC, Rocchio over the retriever's Search, each beside its in-process run on the same targets:
services_mode.py).

Every policy faces the same targets, the same simulated answers model and the same diverse
first round (random excepted), per seed. A session ends when the target is shown or after
``--max-rounds`` displays; rounds are counted as displays (1 = target in the first display),
and a session that never shows it counts ``max_rounds + 1`` in the mean (so the mean is a lower
bound when some fail) and as a failure in success@N.
Gallery: the real SFace gallery (bench/common/gallery.py), optionally padded with synthetic
vectors (``--gallery-size``). Targets are clean (not degraded) real faces.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from dataclasses import replace

import numpy as np

from bench.common.gallery import MODEL_ID, data_available, load_real_gallery, pad_synthetic
from bench.personalize.policies import POLICIES, first_round
from bench.personalize.simulator import TRUTHS, GroundTruth, SimulatedUser
from facesearch_server.personalizer.round_planner import RANKINGS, RoundParams


def run_session(policy, user: SimulatedUser, k: int, max_rounds: int) -> int:
    for r in range(1, max_rounds + 1):
        shown = policy.show(k)
        if user.target in shown or not shown:
            return r if shown else max_rounds + 1
        policy.observe(shown, user.answer(shown))
    return max_rounds + 1


def _bootstrap(rounds: np.ndarray, stat, n: int = 1000) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of ``stat`` over sessions (fixed seed: reproducible)."""
    rng = np.random.default_rng(0)
    draws = stat(rng.choice(rounds, size=(n, len(rounds)), replace=True), axis=1)
    lo, hi = np.quantile(draws, [0.025, 0.975])
    return float(lo), float(hi)


def _wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a success rate."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def summarise(rounds: np.ndarray, max_rounds: int) -> dict[str, float | list[float]]:
    n = len(rounds)
    return {
        "median_rounds": float(np.median(rounds)),
        "median_ci": list(_bootstrap(rounds, np.median)),
        "mean_rounds": float(rounds.mean()),
        "mean_ci": list(_bootstrap(rounds, np.mean)),
        "success_at_10": float((rounds <= 10).mean()),
        "success_at_10_ci": list(_wilson(int((rounds <= 10).sum()), n)),
        "success_at_20": float((rounds <= 20).mean()),
        "success_at_20_ci": list(_wilson(int((rounds <= 20).sum()), n)),
        "failed": float((rounds > max_rounds).mean()),
    }


def faircop_params(args: argparse.Namespace) -> RoundParams:
    """The service's defaults, with the answer-model overrides given on the command line.

    The head's per-round training is bounded by steps only here, not by the service's wall-time
    budget: on a loaded bench machine the budget would cut steps at random and make the figures
    depend on the load (on an idle one the service takes every step: round_latency.py)."""
    p = RoundParams()
    p = replace(p, training=replace(p.training, time_budget_s=float("inf")))
    sc = p.scoring
    if args.likelihood_weight is not None:
        sc = replace(sc, likelihood_weight=args.likelihood_weight)
    if args.credibility_temperature is not None:
        sc = replace(sc, credibility_temperature=args.credibility_temperature)
    if args.wrong_share is not None:
        sc = replace(sc, answers=replace(sc.answers, wrong_share=args.wrong_share))
    if args.contradicting_rejections is not None:
        sc = replace(sc, contradicting_rejections=args.contradicting_rejections)
    if args.uncorroborated:
        sc = replace(sc, corroborated_training=False)
    if args.learning_rate is not None:
        p = replace(p, training=replace(p.training, learning_rate=args.learning_rate))
    if args.train_steps is not None:
        p = replace(p, training=replace(p.training, steps=args.train_steps))
    if args.positive_queries is not None:
        p = replace(p, positive_queries=args.positive_queries)
    if args.threshold is not None:
        sc = replace(sc, answers=replace(sc.answers, threshold=args.threshold))
    if args.ranking is not None:
        p = replace(p, ranking=args.ranking)
    post = p.posterior
    if args.posterior_floor is not None:
        post = replace(post, wrong_share=args.posterior_floor)
    if args.cluster_weight is not None:
        post = replace(post, cluster_weight=args.cluster_weight)
    if args.posterior_queries is not None:
        post = replace(post, positive_queries=args.posterior_queries)
    if args.train_temperature is not None:
        post = replace(post, train_temperature=args.train_temperature)
    return replace(p, scoring=sc, posterior=post)


# Per-process state of the parallel runner (set by _init_worker; the gallery is loaded once per
# worker from bench/.cache, not pickled per task).
_W: dict = {}


def _init_worker(args: argparse.Namespace) -> None:
    g = load_real_gallery()
    if args.gallery_size:
        g = pad_synthetic(g, args.gallery_size, seed=1234)
    _W.update(
        args=args,
        vectors=np.ascontiguousarray(g.vectors, np.float32),
        codes=g.identity_codes(),
        attributes=g.attributes,
        fp=faircop_params(args),
    )


def _run_target(job: tuple[str, float, int, int, int]) -> tuple[str, float, dict[str, int]]:
    """Every policy on one target (one simulated session each): (truth, flip, rounds/policy)."""
    truth, flip, seed, ti, target = job
    args, vectors = _W["args"], _W["vectors"]
    gt = GroundTruth(vectors, _W["codes"], _W["attributes"], truth, args.similar_fraction)
    similar = gt.similar_mask(target, np.random.default_rng((seed, ti, 7)))
    first = first_round(vectors, args.k, np.random.default_rng((seed, ti, 1)), RoundParams())
    rich = gt.rich_masks(target)
    out: dict[str, int] = {}
    for name in args.policies:
        user = SimulatedUser(target, similar, flip, np.random.default_rng((seed, ti, 2)), rich)
        rng = np.random.default_rng((seed, ti, 3))
        if name in ("faircop", "faircop-clusters"):  # the same params, each its ranking
            # --threshold fixes tau as the service's likeness_threshold does: no gallery scale.
            pol = POLICIES[name](vectors, rng, first, _W["fp"], scale=args.threshold is None)
        else:
            pol = POLICIES[name](vectors, rng, first)
        out[name] = run_session(pol, user, args.k, args.max_rounds)
    return truth, flip, out


def parse_condition(spec: str) -> tuple[str, float]:
    """``truth`` or ``truth:flip`` (e.g. ``embedding:0.1``) -> (truth, flip)."""
    truth, _, flip = spec.partition(":")
    if truth not in TRUTHS:
        raise ValueError(f"unknown truth {truth!r} in {spec!r}; use one of {TRUTHS}")
    return truth, float(flip) if flip else 0.0


def condition_name(truth: str, flip: float) -> str:
    return f"{truth}, {flip:.0%} flipped" if flip else truth


def evaluate(args: argparse.Namespace) -> dict:
    """Every (truth, flip) condition; targets run in ``--workers`` processes. The sessions and
    their answers depend only on (seed, target index), so the figures do not depend on the
    number of workers."""
    g = load_real_gallery()
    if args.gallery_size:
        g = pad_synthetic(g, args.gallery_size, seed=1234)
    vectors = np.ascontiguousarray(g.vectors, np.float32)
    codes = g.identity_codes()
    flips = args.flips if args.flips is not None else [args.flip]
    results: dict = {
        "flip": flips[0] if len(flips) == 1 else None,
        "gallery": len(g),
        "k": args.k,
        "max_rounds": args.max_rounds,
        "truths": {},
    }
    conditions = [(truth, flip) for truth in args.truth for flip in flips]
    if args.conditions:
        results["flip"] = None
        conditions = [parse_condition(c) for c in args.conditions]
    jobs: list[tuple[str, float, int, int, int]] = []
    for truth, flip in conditions:
        gt = GroundTruth(vectors, codes, g.attributes, truth, args.similar_fraction)
        eligible = np.intersect1d(gt.eligible_targets(), np.flatnonzero(~g.degraded & ~g.synthetic))
        for seed in range(args.seed_offset, args.seed_offset + args.seeds):
            rng = np.random.default_rng(seed)
            targets = rng.choice(eligible, size=min(args.targets, len(eligible)), replace=False)
            jobs += [(truth, flip, seed, ti, int(t)) for ti, t in enumerate(targets)]
    # Seed-major order over the conditions: a run cut short (or read from its checkpoint,
    # --json) holds whole seeds of every condition rather than all of some conditions.
    jobs.sort(key=lambda j: (j[2], j[3], j[0], j[1]))
    per: dict[str, dict[str, list[int]]] = {}
    t0 = time.time()
    if args.workers > 1:
        ctx = multiprocessing.get_context("fork")
        pool = ctx.Pool(args.workers, initializer=_init_worker, initargs=(args,))
        done = pool.imap(_run_target, jobs, chunksize=4)
    else:
        _init_worker(args)
        pool, done = None, map(_run_target, jobs)
    for j, (truth, flip, rounds) in enumerate(done, 1):
        rows = per.setdefault(condition_name(truth, flip), {n: [] for n in args.policies})
        for name, r in rounds.items():
            rows[name].append(r)
        if j % 100 == 0 or j == len(jobs):
            print(f"{j}/{len(jobs)} targets, {time.time() - t0:.0f}s", file=sys.stderr)
            _fill(results, per, args)
            if args.json:  # checkpoint: a long run's figures so far
                _write_json(args.json, results)
    if pool is not None:
        pool.close()
        pool.join()
    return _fill(results, per, args)


def _fill(results: dict, per: dict[str, dict[str, list[int]]], args) -> dict:
    for cond, rows in per.items():
        results["truths"][cond] = {
            name: summarise(np.array(r), args.max_rounds) for name, r in rows.items()
        }
        results["truths"][cond]["_sessions_per_policy"] = len(rows[args.policies[0]])
        results["truths"][cond]["_rounds"] = rows
    return results


def _write_json(path: str, results: dict) -> None:
    with open(path, "w") as fh:
        json.dump(results, fh, indent=2)


def table(results: dict) -> str:
    flip = results["flip"]
    lines = [
        f"gallery {results['gallery']} faces, k={results['k']}, max rounds "
        f"{results['max_rounds']}, flipped answers "
        + ("per condition" if flip is None else f"{flip:.0%}"),
    ]
    for truth, rows in results["truths"].items():
        lines += [
            "",
            f"truth={truth} ({rows['_sessions_per_policy']} sessions per policy)",
            "| policy | median rounds [95% CI] | mean rounds [95% CI] | success@10 | success@20 |",
            "|---|---|---|---|---|",
        ]
        for name, s in rows.items():
            if name.startswith("_"):
                continue
            m, mm = s["median_ci"], s["mean_ci"]
            s10, s20 = s["success_at_10_ci"], s["success_at_20_ci"]
            lines.append(
                f"| {name} | {s['median_rounds']:.1f} [{m[0]:.1f}, {m[1]:.1f}] | "
                f"{s['mean_rounds']:.1f} [{mm[0]:.1f}, {mm[1]:.1f}] | "
                f"{s['success_at_10']:.1%} [{s10[0]:.0%}, {s10[1]:.0%}] | "
                f"{s['success_at_20']:.1%} [{s20[0]:.0%}, {s20[1]:.0%}] |"
            )
    return "\n".join(lines)


def evaluate_services(args: argparse.Namespace) -> dict:
    """--mode services: FaIRCoP and Rocchio through the services and in-process, per truth."""
    from bench.common.timing import summarize
    from bench.personalize import services_mode

    g = load_real_gallery()
    vectors = np.ascontiguousarray(g.vectors, np.float32)
    results: dict = {
        "mode": "services",
        "flip": args.flip,
        "gallery": len(g),
        "k": args.k,
        "max_rounds": args.max_rounds,
        "truths": {},
    }
    for truth in args.truth:
        gt = GroundTruth(vectors, g.identity_codes(), g.attributes, truth, args.similar_fraction)
        eligible = np.intersect1d(gt.eligible_targets(), np.flatnonzero(~g.degraded & ~g.synthetic))
        seeds = list(range(args.seed_offset, args.seed_offset + args.seeds))
        out = services_mode.evaluate(
            vectors,
            gt,
            eligible,
            targets=args.targets,
            seeds=seeds,
            k=args.k,
            max_rounds=args.max_rounds,
            flip=args.flip,
            model_id=MODEL_ID,
        )
        results["truths"][truth] = services_summary(out, args.max_rounds, summarize)
    return results


def services_summary(out: dict, max_rounds: int, summarize) -> dict:
    """Figures of both modes, their paired differences and the services' round times."""
    from bench.personalize.services_mode import paired_ci

    rows: dict = {}
    for mode, per_policy in out["rounds"].items():
        for name, r in per_policy.items():
            rows[f"{name} ({mode})"] = summarise(np.array(r), max_rounds)
    agreement = {}
    for name in out["rounds"]["services"]:
        diff = np.array(out["rounds"]["services"][name]) - np.array(
            out["rounds"]["in-process"][name]
        )
        agreement[name] = {"mean_difference": float(diff.mean()), "ci": list(paired_ci(diff))}
    rows["_agreement"] = agreement
    rows["_rounds_per_s"] = out["rounds_per_s"]
    t = summarize(out["round_s"]) if out["round_s"] else None
    rows["_submit_feedback_ms"] = (
        {"n": t.n, "p50": t.p50_ms, "tail": t.tail_cell()} if t is not None else None
    )
    rows["_sessions_per_policy"] = len(next(iter(out["rounds"]["services"].values())))
    return rows


def services_table(results: dict) -> str:
    lines = [table(results)]
    for truth, rows in results["truths"].items():
        lines.append("")
        lines.append(f"truth={truth}: services - in-process, mean rounds per target [95% CI]:")
        for name, a in rows["_agreement"].items():
            lo, hi = a["ci"]
            verdict = "agree" if lo <= 0 <= hi else "DIFFER"
            lines.append(f"  {name}: {a['mean_difference']:+.2f} [{lo:+.2f}, {hi:+.2f}] {verdict}")
        rps = rows["_rounds_per_s"]
        lines.append(
            "  feedback rounds/s (answered rounds / wall time of the sessions, one client): "
            + ", ".join(f"{n} {m}: {v:.1f}" for m, per in rps.items() for n, v in per.items())
        )
        t = rows["_submit_feedback_ms"]
        if t:
            lines.append(
                f"  FaIRCoP SubmitFeedback through the services: p50 {t['p50']:.1f} ms, "
                f"p99 {t['tail']} ms (n {t['n']})"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--mode",
        choices=("in-process", "services"),
        default="in-process",
        help="services: FaIRCoP and Rocchio through the running services, beside in-process",
    )
    ap.add_argument("--targets", type=int, default=200, help="targets per seed")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--k", type=int, default=8, help="faces per round")
    ap.add_argument("--max-rounds", type=int, default=50)
    ap.add_argument("--truth", nargs="+", default=["embedding", "user"], choices=TRUTHS)
    ap.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    ap.add_argument("--similar-fraction", type=float, default=0.02)
    ap.add_argument("--flip", type=float, default=0.0, help="answer flip probability")
    ap.add_argument(
        "--flips", type=float, nargs="+", help="several flip probabilities, each a condition"
    )
    ap.add_argument(
        "--conditions",
        nargs="+",
        help="(in-process) conditions as truth or truth:flip, e.g. embedding embedding:0.1 "
        "user identity; replaces --truth and --flip(s)",
    )
    ap.add_argument("--workers", type=int, default=1, help="processes (in-process mode)")
    ap.add_argument("--gallery-size", type=int, default=0, help="pad with synthetic vectors")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--seed-offset", type=int, default=0, help="first seed (dev vs held-out)")
    dev = ap.add_argument_group("faircop answer-model overrides (development runs)")
    dev.add_argument("--likelihood-weight", type=float, help="gamma")
    dev.add_argument("--credibility-temperature", type=float)
    dev.add_argument("--wrong-share", type=float, help="eps of the answer model")
    dev.add_argument(
        "--threshold",
        type=float,
        help="tau of the answer model, fixed (default: the gallery's 98th-percentile pair score)",
    )
    dev.add_argument("--positive-queries", type=int, help="per-positive retriever queries")
    dev.add_argument("--train-steps", type=int, help="Adam steps per round (0 = no head)")
    dev.add_argument("--uncorroborated", action="store_true", help="train on every positive")
    dev.add_argument("--contradicting-rejections", type=int, help="0 = no contradiction rule")
    dev.add_argument("--learning-rate", type=float, help="Adam learning rate of the head")
    dev.add_argument("--ranking", choices=RANKINGS, help="clusters or posterior (scored faces)")
    dev.add_argument("--posterior-floor", type=float, help="eps of the target posterior")
    dev.add_argument("--cluster-weight", type=float, help="cluster score added to the posterior")
    dev.add_argument("--posterior-queries", type=int, help="per-positive posterior queries")
    dev.add_argument(
        "--train-temperature", type=float, help="head's loss weights from the posterior (0 = off)"
    )
    args = ap.parse_args()
    if not data_available():
        sys.exit("../shared/data is missing: the target-testing bench needs the real faces")
    if args.mode == "services":
        results = evaluate_services(args)
        print(services_table(results))
    else:
        results = evaluate(args)
        print(table(results))
    if args.json:
        _write_json(args.json, results)


if __name__ == "__main__":
    main()
