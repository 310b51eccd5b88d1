"""Target testing: rounds until a simulated user's hidden target is shown, per policy.

    python -m bench.personalize.target_testing --targets 200 --seeds 3 --truth embedding user

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
import sys
import time

import numpy as np

from bench.common.gallery import data_available, load_real_gallery, pad_synthetic
from bench.personalize.policies import POLICIES, first_round
from bench.personalize.simulator import TRUTHS, GroundTruth, SimulatedUser
from facesearch_server.personalizer.round_planner import RoundParams


def run_session(policy, user: SimulatedUser, k: int, max_rounds: int) -> int:
    for r in range(1, max_rounds + 1):
        shown = policy.show(k)
        if user.target in shown or not shown:
            return r if shown else max_rounds + 1
        policy.observe(shown, user.answer(shown))
    return max_rounds + 1


def summarise(rounds: np.ndarray, max_rounds: int) -> dict[str, float]:
    return {
        "median_rounds": float(np.median(rounds)),
        "mean_rounds": float(rounds.mean()),
        "success_at_10": float((rounds <= 10).mean()),
        "success_at_20": float((rounds <= 20).mean()),
        "failed": float((rounds > max_rounds).mean()),
    }


def evaluate(args: argparse.Namespace) -> dict:
    g = load_real_gallery()
    if args.gallery_size:
        g = pad_synthetic(g, args.gallery_size, seed=1234)
    vectors = np.ascontiguousarray(g.vectors, np.float32)
    codes = g.identity_codes()
    p = RoundParams()
    results: dict = {"gallery": len(g), "k": args.k, "max_rounds": args.max_rounds, "truths": {}}
    for truth in args.truth:
        gt = GroundTruth(vectors, codes, g.attributes, truth, args.similar_fraction)
        eligible = np.intersect1d(gt.eligible_targets(), np.flatnonzero(~g.degraded & ~g.synthetic))
        per_policy: dict[str, list[int]] = {name: [] for name in args.policies}
        t0 = time.time()
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            targets = rng.choice(eligible, size=min(args.targets, len(eligible)), replace=False)
            for ti, target in enumerate(targets):
                similar = gt.similar_mask(int(target), np.random.default_rng((seed, ti, 7)))
                first = first_round(vectors, args.k, np.random.default_rng((seed, ti, 1)), p)
                for name in args.policies:
                    user = SimulatedUser(
                        int(target), similar, args.flip, np.random.default_rng((seed, ti, 2))
                    )
                    pol = POLICIES[name](vectors, np.random.default_rng((seed, ti, 3)), first)
                    per_policy[name].append(run_session(pol, user, args.k, args.max_rounds))
            print(f"{truth}: seed {seed} done, {time.time() - t0:.0f}s", file=sys.stderr)
        results["truths"][truth] = {
            name: summarise(np.array(r), args.max_rounds) for name, r in per_policy.items()
        }
        results["truths"][truth]["_sessions_per_policy"] = len(per_policy[args.policies[0]])
    return results


def table(results: dict) -> str:
    lines = [
        f"gallery {results['gallery']} faces, k={results['k']}, max rounds {results['max_rounds']}",
    ]
    for truth, rows in results["truths"].items():
        lines += [
            "",
            f"truth={truth} ({rows['_sessions_per_policy']} sessions per policy)",
            "| policy | median rounds | mean rounds | success@10 | success@20 |",
            "|---|---|---|---|---|",
        ]
        for name, s in rows.items():
            if name.startswith("_"):
                continue
            lines.append(
                f"| {name} | {s['median_rounds']:.1f} | {s['mean_rounds']:.1f} | "
                f"{s['success_at_10']:.1%} | {s['success_at_20']:.1%} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--targets", type=int, default=200, help="targets per seed")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--k", type=int, default=8, help="faces per round")
    ap.add_argument("--max-rounds", type=int, default=50)
    ap.add_argument("--truth", nargs="+", default=["embedding", "user"], choices=TRUTHS)
    ap.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    ap.add_argument("--similar-fraction", type=float, default=0.02)
    ap.add_argument("--flip", type=float, default=0.0, help="answer flip probability")
    ap.add_argument("--gallery-size", type=int, default=0, help="pad with synthetic vectors")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    if not data_available():
        sys.exit("../shared/data is missing: the target-testing bench needs the real faces")
    results = evaluate(args)
    print(table(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
