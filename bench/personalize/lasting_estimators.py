"""Can a user's sessions teach a lasting head their notion of likeness? Estimators on recorded
sessions, scored against the hidden notion itself.

    python -m bench.personalize.lasting_estimators --users 30 --sessions 4 --rank 16 4 2

For each rank, ``--users`` simulated users (dev users 1000+, not carry_over's held-out 0..)
hold a hidden metric A = I + 3 U U^T of that rank (simulator.hidden_metric) and run
``--sessions`` fresh FaIRCoP sessions (identity head, the service's defaults), as carry_over's
fresh arm does. After each session, every estimator below sees the answers of all the user's
sessions so far and is scored by:
- overlap: ||U^T V||_F^2 / r, V the estimator's top-r directions (chance: r / d);
- recovery: of the hidden notion's closest 2 % of 150 probe faces, the share that the head's
  closest 2 % holds (the identity head's figure is the embedding's own).

Estimators:
- ``score``: the gradient at the identity of the logistic pair model's log-likelihood, summed
  over sessions: each answered face x of a session with anchor a (the target when found, else
  the positives' mean) adds (y - s) sym(a x^T), s the embedding's answer model at cos(a, x),
  y the answer. Its positive part, scaled to 3 at its top, gives the head (I + S)^(1/2).
- ``kissme``: inverse covariance of the positives' differences from the anchor minus that of
  the negatives', both shrunk to their pool (50 pseudo-counts), as the head's square.

Also printed: the bits a session's answers hold beyond the embedding's answer model (as
carry_over reports them) and the notion's degrees of freedom r (d - r).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from bench.common.gallery import data_available, load_real_gallery
from bench.personalize import simulator
from bench.personalize.policies import FaircopPolicy, first_round
from bench.personalize.target_testing import run_session
from facesearch_server.personalizer.round_planner import RoundParams

PROBES = 150
FIRST_USER = 1000  # dev users: carry_over's held-out figures use 0..


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _closest(z: np.ndarray, probes: np.ndarray, share: float = 0.02) -> np.ndarray:
    s = z[probes] @ z.T
    s[np.arange(len(probes)), probes] = -np.inf
    return s >= np.quantile(s, 1 - share, axis=1, keepdims=True)


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    w, q = np.linalg.eigh((m + m.T) / 2)
    return (q * np.sqrt(np.maximum(w, 1e-9))) @ q.T


def _anchor(v: np.ndarray, session: dict) -> np.ndarray | None:
    if session["found"]:
        return v[session["target"]]
    pos = v[session["labelled"][session["codes"] > 0]]
    return _unit(pos.mean(0, keepdims=True))[0] if len(pos) else None


class Score:
    name = "score"

    def __init__(self, d: int) -> None:
        self.g = np.zeros((d, d))

    def add(self, v: np.ndarray, s: dict, tau: float, slope: float) -> None:
        a = _anchor(v, s)
        if a is None:
            return
        x = v[s["labelled"]].astype(np.float64)
        y = (s["codes"] > 0).astype(np.float64)
        p = 1.0 / (1.0 + np.exp(-np.clip((x @ a - tau) / slope, -60, 60)))
        ax = np.outer(a, ((y - p)[:, None] * x).sum(0))
        self.g += (ax + ax.T) / 2

    def matrix(self) -> np.ndarray:
        return self.g

    def head(self) -> np.ndarray:
        w, q = np.linalg.eigh(self.g)
        w = np.maximum(w, 0.0)
        if w.max() <= 0:
            return np.eye(len(w))
        return _psd_sqrt(np.eye(len(w)) + 3.0 * (q * (w / w.max())) @ q.T)


class Kissme:
    name = "kissme"

    def __init__(self, d: int, pseudo: float = 50.0) -> None:
        self.sp, self.sn = np.zeros((d, d)), np.zeros((d, d))
        self.np_, self.nn = 0, 0
        self.pseudo = pseudo

    def add(self, v: np.ndarray, s: dict, tau: float, slope: float) -> None:
        a = _anchor(v, s)
        if a is None:
            return
        x = v[s["labelled"]].astype(np.float64) - a
        pos, neg = x[s["codes"] > 0], x[s["codes"] < 0]
        self.sp += pos.T @ pos
        self.sn += neg.T @ neg
        self.np_ += len(pos)
        self.nn += len(neg)

    def matrix(self) -> np.ndarray:
        d = len(self.sp)
        if not self.np_ or not self.nn:
            return np.zeros((d, d))
        pool = (self.sp + self.sn) / (self.np_ + self.nn)
        k = self.pseudo
        cp = (self.sp + k * pool) / (self.np_ + k)
        cn = (self.sn + k * pool) / (self.nn + k)
        return np.linalg.inv(cp) - np.linalg.inv(cn)

    def head(self) -> np.ndarray:
        m = self.matrix()
        if not m.any():
            return np.eye(len(m))
        w, q = np.linalg.eigh((m + m.T) / 2)
        w = np.maximum(w, 1e-3 * w.max())
        return _psd_sqrt((q * (w / w.mean())) @ q.T)


def run_rank(rank: int, g, args: argparse.Namespace) -> dict[str, list[float]]:
    v = np.ascontiguousarray(g.vectors, np.float32)
    d = v.shape[1]
    eligible = np.flatnonzero(~g.degraded & ~g.synthetic)
    probes = np.random.default_rng(5).choice(len(v), PROBES, replace=False)
    p = RoundParams()
    identity: list[float] = []
    scores = {e: np.zeros((args.users, args.sessions, 2)) for e in ("score", "kissme")}
    t0 = time.time()
    for u in range(FIRST_USER, FIRST_USER + args.users):
        metric = simulator.hidden_metric(np.random.default_rng((u, 7)), d, rank)
        gt = simulator.GroundTruth(v, g.identity_codes(), g.attributes, "user", user_rank=rank)
        u_basis = np.linalg.eigh(metric.astype(np.float64))[1][:, -rank:]
        truth = _closest(_unit(v @ metric.T), probes)
        identity.append(float((_closest(v, probes) & truth).sum() / truth.sum()))
        ests = [Score(d), Kissme(d)]
        rng = np.random.default_rng((u, 11))
        for s in range(args.sessions):
            target = int(rng.choice(eligible))
            # The user's notion: the same metric (seed (u, 7)) in every session.
            similar = gt.similar_mask(target, np.random.default_rng((u, 7)))
            first = first_round(v, args.k, np.random.default_rng((u, s, 1)), p)
            user = simulator.SimulatedUser(target, similar, 0.0, np.random.default_rng((u, s, 2)))
            pol = FaircopPolicy(v, np.random.default_rng((u, s, 3)), first)
            r = run_session(pol, user, args.k, args.max_rounds)
            a = pol.p.scoring.answers
            session = {
                "target": target,
                "found": r <= args.max_rounds,
                "labelled": np.asarray(pol.labelled, np.int64),
                "codes": np.asarray(pol.codes, np.int64),
            }
            for e in ests:
                e.add(v, session, a.threshold, a.slope)
                q = np.linalg.eigh(e.matrix())[1]
                overlap = float(((u_basis.T @ q[:, -rank:]) ** 2).sum() / rank)
                head = e.head()
                rec = float((_closest(_unit(v @ head.T), probes) & truth).sum() / truth.sum())
                scores[e.name][u - FIRST_USER, s] = (overlap, rec)
        print(f"rank {rank}: {u - FIRST_USER + 1} users, {time.time() - t0:.0f}s", file=sys.stderr)
    out: dict[str, list[float]] = {"identity recovery": [float(np.mean(identity))] * args.sessions}
    for name, arr in scores.items():
        mean = arr.mean(0)
        out[f"{name} overlap"] = [float(x) for x in mean[:, 0]]
        out[f"{name} recovery"] = [float(x) for x in mean[:, 1]]
    out["chance overlap"] = [rank / d] * args.sessions
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--users", type=int, default=30)
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--rank", type=int, nargs="+", default=[16, 4, 2])
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--max-rounds", type=int, default=50)
    args = ap.parse_args()
    if not data_available():
        sys.exit("../shared/data is missing: the bench needs the real faces")
    g = load_real_gallery()
    for rank in args.rank:
        out = run_rank(rank, g, args)
        print(f"\nrank {rank} ({args.users} users; after sessions 1..{args.sessions})")
        print("| figure | " + " | ".join(f"s{i + 1}" for i in range(args.sessions)) + " |")
        print("|---|" + "---|" * args.sessions)
        for name, vals in out.items():
            print(f"| {name} | " + " | ".join(f"{x:.3f}" for x in vals) + " |")


if __name__ == "__main__":
    main()
