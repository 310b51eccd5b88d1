"""Target testing through the running services: the personalizer, the retriever and Redis, all
over gRPC (``target_testing.py --mode services``).

The gallery goes into a retriever process (a flat inner-product collection, ids = gallery row
numbers); a personalizer process serves the sessions, with its state and the users' lasting
heads in Redis (REDIS_URL, default redis://127.0.0.1:6379/0, keys under a fresh prefix,
deleted after). Per target, on the same simulated answers as the in-process bench:
- ``faircop``: StartSession / SubmitFeedback / EndSession on the personalizer, a new user per
  target (identity head, as in-process). The session's first round is the service's own
  diverse round (its exploration draws its own random directions);
- ``rocchio``: the Rocchio update over the retriever's Search (k unseen faces for the query,
  the shown ones excluded), from the first round the FaIRCoP session showed for that target,
  so both face the same first display as in-process.
Beside each, in the same run and on the same targets, the in-process policy (the fast mode):
the figures of both modes, and per policy the mean paired difference (services - in-process)
with a 95 % bootstrap interval over targets: the modes agree when it holds 0.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from bench.personalize.policies import FaircopPolicy, RocchioPolicy, first_round
from bench.personalize.simulator import GroundTruth, SimulatedUser
from bench.personalize.target_testing import run_session
from facesearch_contract.v1 import common_pb2
from facesearch_contract.v1 import personalizer_pb2 as ppb
from facesearch_contract.v1 import personalizer_service_pb2_grpc as ppb_grpc
from facesearch_contract.v1 import retriever_pb2 as rpb
from facesearch_contract.v1 import retriever_service_pb2_grpc as rpb_grpc
from facesearch_server.personalizer.round_planner import RoundParams
from harness.service_process import ServiceProcess, start_service

COLLECTION = "bench-target-testing"
POLICIES = ("faircop", "rocchio")
# Answer codes (simulator.py) as the contract's labels.
LABELS = {
    1: ppb.FEEDBACK_LABEL_SIMILAR,
    -1: ppb.FEEDBACK_LABEL_DISSIMILAR,
    2: ppb.FEEDBACK_LABEL_NOT_PERSON_BUT_SIMILAR,
    -2: ppb.FEEDBACK_LABEL_NOT_PERSON_NOTHING_LIKE,
}


@dataclass
class Stack:
    retriever: rpb_grpc.RetrieverStub
    personalizer: ppb_grpc.PersonalizerStub
    model_id: str
    field: str = "face"


@contextmanager
def running_stack(vectors: np.ndarray, model_id: str, redis_url: str) -> Iterator[Stack]:
    """A retriever holding ``vectors`` (ids "0".."n-1") and a personalizer on ``redis_url``
    under a key prefix of its own; every key under it is deleted at the end."""
    import redis

    prefix = f"fsbench:{uuid.uuid4().hex[:8]}:"
    tmp = Path(tempfile.mkdtemp(prefix="fs-target-testing-"))
    procs: list[ServiceProcess] = []
    try:
        retriever = start_service("retriever", {"FACESEARCH_RETRIEVER_DATA_DIR": str(tmp)})
        procs.append(retriever)
        r = rpb_grpc.RetrieverStub(retriever.channel())
        r.CreateCollection(
            rpb.CreateCollectionRequest(
                name=COLLECTION,
                vector_fields=[
                    rpb.VectorFieldSpec(
                        name="face",
                        dimension=vectors.shape[1],
                        model_id=model_id,
                        metric=rpb.METRIC_INNER_PRODUCT,
                    )
                ],
            ),
            timeout=60,
        )
        for lo in range(0, len(vectors), 1024):
            pts = []
            for i in range(lo, min(len(vectors), lo + 1024)):
                p = rpb.Point(id=str(i))
                p.vectors["face"].values.extend(vectors[i].tolist())
                p.model_ids["face"] = model_id
                pts.append(p)
            r.Upsert(
                rpb.UpsertRequest(collection=COLLECTION, points=pts, durable=False), timeout=120
            )
        pers = start_service(
            "personalizer",
            {
                "FACESEARCH_PERSONALIZER_RETRIEVER_ADDRESS": retriever.address,
                "FACESEARCH_PERSONALIZER_REDIS_URL": redis_url,
                "FACESEARCH_PERSONALIZER_REDIS_PREFIX": prefix,
            },
        )
        procs.append(pers)
        yield Stack(r, ppb_grpc.PersonalizerStub(pers.channel()), model_id)
    finally:
        for p in procs:
            p.stop()
        rc = redis.Redis.from_url(redis_url)
        keys = list(rc.scan_iter(f"{prefix}*", count=1000))
        if keys:
            rc.delete(*keys)
        rc.close()


def _user(target: int, similar: np.ndarray, flip: float, rng_key: tuple, rich) -> SimulatedUser:
    """The target's simulated user, answering the same for every policy (same rng key)."""
    return SimulatedUser(target, similar, flip, np.random.default_rng(rng_key), rich)


@dataclass
class ServiceRun:
    """Rounds to the target, and the seconds of each answered round (SubmitFeedback)."""

    rounds: int
    round_s: list[float] = field(default_factory=list)
    first: list[int] = field(default_factory=list)


def faircop_session(
    stack: Stack, user_id: str, user: SimulatedUser, k: int, max_rounds: int
) -> ServiceRun:
    """One FaIRCoP session on the personalizer: rounds until the target is shown."""
    p = stack.personalizer
    st = p.StartSession(
        ppb.StartSessionRequest(user_id=user_id, collection=COLLECTION, k=k), timeout=60
    ).state
    run = ServiceRun(max_rounds + 1, first=[int(c.id) for c in st.candidates])
    try:
        for r in range(1, max_rounds + 1):
            shown = [int(c.id) for c in st.candidates]
            if user.target in shown or not shown:
                run.rounds = r if shown else max_rounds + 1
                return run
            if r == max_rounds:
                return run
            fb = [
                ppb.Feedback(id=str(i), label=LABELS[a])
                for i, a in zip(shown, user.answer(shown), strict=True)
            ]
            t0 = time.perf_counter()
            st = p.SubmitFeedback(
                ppb.SubmitFeedbackRequest(session_id=st.session_id, feedback=fb), timeout=60
            ).state
            run.round_s.append(time.perf_counter() - t0)
        return run
    finally:
        p.EndSession(ppb.EndSessionRequest(session_id=st.session_id), timeout=60)


class RetrieverRocchio(RocchioPolicy):
    """Rocchio's update, its display from the retriever's Search over gRPC."""

    def __init__(self, stack: Stack, vectors: np.ndarray, first: list[int]) -> None:
        super().__init__(vectors, np.random.default_rng(0), first)
        self.stack = stack
        self.shown: list[int] = []

    def show(self, k: int) -> list[int]:
        ids = super().show(k)
        self.shown += ids
        return ids

    def _show(self, k: int) -> list[int]:
        n = float(np.linalg.norm(self.q))
        if n == 0:
            return []
        query = rpb.Query(
            terms=[
                rpb.QueryTerm(
                    field=self.stack.field,
                    vector=common_pb2.Vector(values=(self.q / n).tolist()),
                    model_id=self.stack.model_id,
                )
            ],
            k=k,
            exclude_ids=[str(i) for i in self.shown],
        )
        reply = self.stack.retriever.Search(
            rpb.SearchRequest(collection=COLLECTION, queries=[query]), timeout=60
        )
        return [int(h.id) for h in reply.results[0].hits]


def paired_ci(diff: np.ndarray, n: int = 2000) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the mean of paired differences."""
    rng = np.random.default_rng(0)
    draws = rng.choice(diff, size=(n, len(diff)), replace=True).mean(1)
    lo, hi = np.quantile(draws, [0.025, 0.975])
    return float(lo), float(hi)


def evaluate(
    vectors: np.ndarray,
    gt: GroundTruth,
    eligible: np.ndarray,
    *,
    targets: int,
    seeds: list[int],
    k: int,
    max_rounds: int,
    flip: float,
    model_id: str,
    redis_url: str | None = None,
    log=sys.stderr,
) -> dict:
    """Rounds per target for FaIRCoP and Rocchio through the services and in-process."""
    redis_url = redis_url or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    p = RoundParams()
    modes = ("services", "in-process")
    rounds = {mode: {name: [] for name in POLICIES} for mode in modes}
    # Per mode and policy: seconds spent in its sessions and feedback rounds answered there.
    spent = {mode: dict.fromkeys(POLICIES, 0.0) for mode in modes}
    answered = {mode: dict.fromkeys(POLICIES, 0) for mode in modes}
    round_s: list[float] = []

    def record(mode: str, name: str, r: int, t0: float) -> None:
        rounds[mode][name].append(r)
        spent[mode][name] += time.perf_counter() - t0
        answered[mode][name] += min(r, max_rounds) - 1  # displays after the first

    with running_stack(vectors, model_id, redis_url) as stack:
        for seed in seeds:
            rng = np.random.default_rng(seed)
            chosen = rng.choice(eligible, size=min(targets, len(eligible)), replace=False)
            for ti, target in enumerate(chosen):
                target = int(target)
                similar = gt.similar_mask(target, np.random.default_rng((seed, ti, 7)))
                user = partial(_user, target, similar, flip, (seed, ti, 2), gt.rich_masks(target))
                t0 = time.perf_counter()
                run = faircop_session(stack, f"bench-{seed}-{ti}", user(), k, max_rounds)
                record("services", "faircop", run.rounds, t0)
                round_s += run.round_s
                t0 = time.perf_counter()
                roc = RetrieverRocchio(stack, vectors, run.first)
                record("services", "rocchio", run_session(roc, user(), k, max_rounds), t0)
                first = first_round(vectors, k, np.random.default_rng((seed, ti, 1)), p)
                for name, cls in (("faircop", FaircopPolicy), ("rocchio", RocchioPolicy)):
                    t0 = time.perf_counter()
                    pol = cls(vectors, np.random.default_rng((seed, ti, 3)), first)
                    record("in-process", name, run_session(pol, user(), k, max_rounds), t0)
                if (ti + 1) % 10 == 0:
                    print(f"services mode: seed {seed}, {ti + 1} targets", file=log)
    return {
        "rounds": rounds,
        "round_s": round_s,
        "rounds_per_s": {
            mode: {n: answered[mode][n] / max(spent[mode][n], 1e-9) for n in POLICIES}
            for mode in modes
        },
    }
