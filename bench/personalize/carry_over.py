"""Does a user's lasting head help their next sessions? Target testing over a user's history.

    python -m bench.personalize.carry_over --users 100 --sessions 3 --truth user embedding

Each simulated user keeps one notion of likeness across sessions (``user``: a hidden per-user
metric, the same for all of that user's sessions; ``embedding``: the embedding's own, where a
lasting head has nothing to learn and must do no harm) and runs ``--sessions`` searches for
different targets. FaIRCoP runs every session twice on the same targets, answers and first
round:
- carried: the session starts from the user's lasting head as the service stores it, and its
  answers are consolidated into that head at its end (consolidation.py; FOUND when the target
  was shown, the session's positives otherwise);
- fresh: every session starts from the identity head (a user who was reset each time).
Session 1 is the same in both arms (both start from the identity), so the comparison is over
sessions 2..S. Rocchio and the Bayesian policy (no lasting state) run the same sessions, for
reference. ``--oracle`` adds two arms that start every session from the user's hidden metric
itself (normalised): ``oracle``, with the answer model on the likeness scale of that head's
cosines (policies.head_space_scale), the most a lasting head could give; ``oracle_raw_scale``,
on the embedding's scale, which shows what a head far from the identity costs when its
cosines are read on the wrong scale.

How much a user's answers can teach a lasting head at all: a logistic model of the answer on
cos(x, target) alone (scikit-learn, fitted on every fresh session's answers of the run) says
how well the embedding predicts them; the answers' log loss under it, in bits, summed per
session, bounds (in expectation) what they can say that the embedding does not: the answers
are a function of the user's notion, the target and the faces shown, so what they tell about
the notion is their entropy given the rest, at most their cross-entropy under any model. The
hidden rank-r notion of ``user`` has r (d - r) degrees of freedom to learn.

Reported per truth: the summary of sessions 2..S per arm (95 % bootstrap intervals over
sessions; Wilson for the rates) and the paired difference carried - fresh in mean rounds with a
95 % bootstrap interval over users (a user's sessions share a head, so users are the unit),
and the lasting head's distance from the identity (||W - I||_F / sqrt(d)) after each session.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from sklearn.linear_model import LogisticRegression

from bench.common.gallery import data_available, load_real_gallery
from bench.personalize.policies import BayesPolicy, FaircopPolicy, RocchioPolicy, first_round
from bench.personalize.simulator import GroundTruth, SimulatedUser, hidden_metric
from bench.personalize.target_testing import run_session, summarise
from facesearch_server.personalizer.consolidation import ConsolidationParams
from facesearch_server.personalizer.head import Head
from facesearch_server.personalizer.round_planner import RoundParams

TRUTHS = ("user", "embedding")
REFERENCE = {"rocchio": RocchioPolicy, "bayes": BayesPolicy}


def _paired_ci(diff_by_user: np.ndarray, n: int = 2000) -> tuple[float, float]:
    """95 % bootstrap interval of the mean of per-user mean differences (users resampled)."""
    rng = np.random.default_rng(0)
    draws = rng.choice(diff_by_user, size=(n, len(diff_by_user)), replace=True).mean(1)
    lo, hi = np.quantile(draws, [0.025, 0.975])
    return float(lo), float(hi)


def session_answers(
    pol: FaircopPolicy, target: int, user: SimulatedUser
) -> tuple[np.ndarray, np.ndarray]:
    """(cos(x, target), the user's answer "similar") of a finished session's answered faces."""
    labelled = np.asarray(pol.labelled, np.int64)
    return pol.v[labelled] @ pol.v[target], user.similar[labelled]


def information_bound(sessions: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """(bits per session, answers per session against the model): the log loss, in bits, of
    each session's answers under a logistic model of "similar" on cos(x, target) fitted on all
    of them (module docstring), and how many went against its more likely answer."""
    # float64: a float32 probability of 1 - 1e-12 rounds to 1, and its log loss to infinity.
    sessions = [(c.astype(np.float64), s) for c, s in sessions]
    cos = np.concatenate([c for c, _ in sessions]).reshape(-1, 1)
    y = np.concatenate([s for _, s in sessions]).astype(int)
    if len(np.unique(y)) < 2:
        return 0.0, 0.0
    model = LogisticRegression(C=1e6).fit(cos, y)
    bits, against = [], []
    for c, s in sessions:
        if not len(c):
            bits.append(0.0)
            against.append(0)
            continue
        p = np.clip(model.predict_proba(c.reshape(-1, 1))[:, 1], 1e-12, 1 - 1e-12)
        bits.append(float(-np.where(s, np.log2(p), np.log2(1 - p)).sum()))
        against.append(int(((p > 0.5) != s).sum()))
    return float(np.mean(bits)), float(np.mean(against))


def run_truth(
    truth: str,
    vectors: np.ndarray,
    gt: GroundTruth,
    eligible: np.ndarray,
    args: argparse.Namespace,
    consolidation: ConsolidationParams,
) -> dict:
    p = RoundParams()
    oracles = ["oracle", "oracle_raw_scale"] if args.oracle else []
    arms = ["carried", "fresh", *oracles, *args.reference]
    answered: list[tuple[np.ndarray, np.ndarray]] = []
    later: dict[str, list[int]] = {a: [] for a in arms}
    by_user: dict[str, list[float]] = {"carried": [], "fresh": []}
    distance: list[list[float]] = [[] for _ in range(args.sessions)]
    d = vectors.shape[1]
    t0 = time.time()
    for u in range(args.seed_offset, args.seed_offset + args.users):
        rng = np.random.default_rng((u, 11))
        lasting = Head.identity("bench", d)
        metric = (
            hidden_metric(np.random.default_rng((u, 7)), d, gt.user_rank)
            if truth == "user"
            else None
        )
        user_rounds: dict[str, list[int]] = {"carried": [], "fresh": []}
        for s in range(args.sessions):
            target = int(rng.choice(eligible))
            # The user's own notion: the same hidden metric (rng (u, 7)) in every session.
            similar = gt.similar_mask(target, np.random.default_rng((u, 7)))
            first = first_round(vectors, args.k, np.random.default_rng((u, s, 1)), p)
            for arm in arms:
                user = SimulatedUser(
                    target, similar, args.flip, np.random.default_rng((u, s, 2)), None
                )
                prng = np.random.default_rng((u, s, 3))
                if arm in REFERENCE:
                    pol = REFERENCE[arm](vectors, prng, first)
                elif arm == "carried":
                    pol = FaircopPolicy(vectors, prng, first, head=lasting)
                elif arm in oracles:
                    w = np.eye(d, dtype=np.float32) if metric is None else metric
                    w = (w / np.linalg.norm(w, 2)).astype(np.float32)
                    pol = FaircopPolicy(
                        vectors, prng, first, head=Head("bench", w), head_scale=arm == "oracle"
                    )
                else:
                    pol = FaircopPolicy(vectors, prng, first)
                r = run_session(pol, user, args.k, args.max_rounds)
                if s > 0:
                    later[arm].append(r)
                    if arm in user_rounds:
                        user_rounds[arm].append(r)
                if arm == "fresh":
                    answered.append(session_answers(pol, target, user))
                if arm == "carried":
                    found = target if r <= args.max_rounds else None
                    lasting = pol.lasting_head(found, consolidation)
                    distance[s].append(
                        float(np.linalg.norm(lasting.weight - np.eye(d)) / np.sqrt(d))
                    )
        for arm in by_user:
            by_user[arm].append(float(np.mean(user_rounds[arm])) if user_rounds[arm] else 0.0)
        done = u - args.seed_offset + 1
        if done % 10 == 0:
            print(f"{truth}: {done} users, {time.time() - t0:.0f}s", file=sys.stderr)
    diff = np.array(by_user["carried"]) - np.array(by_user["fresh"])
    out: dict = {name: summarise(np.array(r), args.max_rounds) for name, r in later.items() if r}
    out["_paired"] = {
        "mean_difference": float(diff.mean()),
        "ci": list(_paired_ci(diff)),
        "users": len(diff),
    }
    out["_distance_after_session"] = [float(np.mean(x)) for x in distance]
    rank = gt.user_rank if truth == "user" else 0
    bits, against = information_bound(answered)
    out["_information"] = {
        "bits_per_session": bits,
        "labels_per_session": float(np.mean([len(c) for c, _ in answered])),
        "surprising_per_session": against,
        "degrees_of_freedom": rank * (d - rank),
    }
    out["_sessions_per_arm"] = len(later["carried"])
    return out


def table(results: dict) -> str:
    lines = [
        f"{results['users']} users x {results['sessions']} sessions, k={results['k']}, cap "
        f"{results['max_rounds']} rounds, flipped answers {results['flip']:.0%}; sessions "
        f"2..{results['sessions']} reported"
    ]
    for truth, rows in results["truths"].items():
        pr = rows["_paired"]
        dist = ", ".join(f"{x:.3f}" for x in rows["_distance_after_session"])
        lines += [
            "",
            f"truth={truth} ({rows['_sessions_per_arm']} later sessions per arm)",
            "| arm | median rounds [95% CI] | mean rounds [95% CI] | success@10 | success@20 |",
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
        lines.append(
            f"carried - fresh, mean rounds per user: {pr['mean_difference']:+.2f} "
            f"[{pr['ci'][0]:+.2f}, {pr['ci'][1]:+.2f}] (95% CI over {pr['users']} users); "
            f"lasting head ||W - I||_F / sqrt(d) after each session: {dist}"
        )
        info = rows["_information"]
        lines.append(
            f"what the answers can teach (fresh sessions): <= {info['bits_per_session']:.1f} "
            f"bits per session beyond what cos(x, target) predicts, from "
            f"{info['labels_per_session']:.0f} answers, {info['surprising_per_session']:.1f} "
            f"of them against it; the hidden notion has {info['degrees_of_freedom']} degrees "
            "of freedom"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--sessions", type=int, default=3)
    ap.add_argument("--truth", nargs="+", default=list(TRUTHS), choices=TRUTHS)
    ap.add_argument("--max-rounds", type=int, default=50)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--flip", type=float, default=0.0, help="answer flip probability")
    ap.add_argument(
        "--reference",
        nargs="*",
        default=list(REFERENCE),
        choices=list(REFERENCE),
        help="policies without a lasting head run on the same sessions",
    )
    ap.add_argument("--oracle", action="store_true", help="also start from the hidden metric")
    ap.add_argument("--seed-offset", type=int, default=0, help="first user (dev vs held-out)")
    ap.add_argument("--json", help="also write the figures here")
    dev = ap.add_argument_group("consolidation overrides (development runs)")
    dev.add_argument("--lasting-steps", type=int)
    dev.add_argument("--lasting-lr", type=float)
    dev.add_argument("--lasting-pull", type=float)
    dev.add_argument("--lasting-temperature", type=float)
    args = ap.parse_args()
    if not data_available():
        sys.exit("../shared/data is missing: the bench needs the real faces")
    cp = ConsolidationParams()
    overrides = {
        "steps": args.lasting_steps,
        "learning_rate": args.lasting_lr,
        "identity_pull": args.lasting_pull,
        "temperature": args.lasting_temperature,
    }
    from dataclasses import replace

    cp = replace(cp, **{k: v for k, v in overrides.items() if v is not None})
    g = load_real_gallery()
    v = np.ascontiguousarray(g.vectors, np.float32)
    eligible = np.flatnonzero(~g.degraded & ~g.synthetic)
    results: dict = {
        "users": args.users,
        "sessions": args.sessions,
        "k": args.k,
        "max_rounds": args.max_rounds,
        "flip": args.flip,
        "consolidation": cp.__dict__,
        "truths": {},
    }
    for truth in args.truth:
        gt = GroundTruth(v, g.identity_codes(), g.attributes, truth)
        results["truths"][truth] = run_truth(truth, v, gt, eligible, args, cp)
    print(table(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
