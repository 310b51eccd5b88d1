"""Does a user's stored head help their next session? Target testing with the ``user`` ground
truth (a hidden per-user metric, fixed for the user across sessions): each simulated user runs
``--sessions`` searches for different targets, once with the head carried from session to
session (what the personalizer stores in Redis) and once starting every session from the
identity head. Reported: rounds of sessions 2.. in both arms, on the same targets.

    python -m bench.personalize.carry_over --users 50 --sessions 4
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from bench.common.gallery import data_available, load_real_gallery
from bench.personalize.policies import FaircopPolicy, first_round
from bench.personalize.simulator import GroundTruth, SimulatedUser
from bench.personalize.target_testing import run_session
from facesearch_server.personalizer.head import Head
from facesearch_server.personalizer.round_planner import RoundParams


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--max-rounds", type=int, default=50)
    ap.add_argument("--k", type=int, default=8)
    args = ap.parse_args()
    if not data_available():
        sys.exit("../shared/data is missing: the bench needs the real faces")
    g = load_real_gallery()
    v = np.ascontiguousarray(g.vectors, np.float32)
    gt = GroundTruth(v, g.identity_codes(), g.attributes, "user")
    eligible = np.flatnonzero(~g.degraded)
    p = RoundParams()
    rounds: dict[str, list[int]] = {"carried": [], "fresh": []}
    for u in range(args.users):
        rng = np.random.default_rng((u, 11))
        carried = Head.identity("bench", v.shape[1])
        for s in range(args.sessions):
            target = int(rng.choice(eligible))
            similar = gt.similar_mask(target, np.random.default_rng((u, 7)))  # the user's metric
            first = first_round(v, args.k, np.random.default_rng((u, s, 1)), p)
            for arm in ("carried", "fresh"):
                head = carried if arm == "carried" else Head.identity("bench", v.shape[1])
                pol = FaircopPolicy(v, np.random.default_rng((u, s, 3)), first, head=head)
                user = SimulatedUser(target, similar, 0.0, np.random.default_rng((u, s, 2)))
                r = run_session(pol, user, args.k, args.max_rounds)
                if s > 0:
                    rounds[arm].append(r)
                if arm == "carried":
                    carried = pol.head
    print(f"{args.users} users x {args.sessions - 1} later sessions (user ground truth)")
    print("| head at session start | median rounds | mean rounds | success@10 | success@20 |")
    print("|---|---|---|---|---|")
    for arm, r in rounds.items():
        a = np.array(r)
        print(
            f"| {arm} | {np.median(a):.1f} | {a.mean():.1f} | {(a <= 10).mean():.1%} | "
            f"{(a <= 20).mean():.1%} |"
        )


if __name__ == "__main__":
    main()
