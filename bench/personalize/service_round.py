"""One feedback round through the real services beside the bare in-process round, one run.

    python -m bench.personalize.service_round --size 10000 --rounds 200

- service: SubmitFeedback on a personalizer process that asks a retriever process (flat index)
  over gRPC and keeps session state in Redis;
- bare: the same round in-process (``round_latency.time_rounds``: the personalizer's own head,
  scoring and round-planner modules) over a FAISS ``IndexFlatIP`` of the same vectors, the
  exact index the retriever's flat collection searches.

The difference is gRPC, the retriever's search and rescoring over the wire, and the Redis
writes. Both sides get untimed warm-up first (a whole session on the service); p99 is printed
only from >= 100 rounds, else the max and n. Needs Redis (REDIS_URL, default
redis://127.0.0.1:6379/0; keys under a unique prefix, deleted).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import faiss
import numpy as np

from bench.common.gallery import MODEL_ID, data_available, load_real_gallery, pad_synthetic
from bench.common.timing import summarize
from bench.personalize.round_latency import time_rounds, warm_up_round
from facesearch_contract.v1 import personalizer_pb2 as ppb
from facesearch_contract.v1 import personalizer_service_pb2_grpc as ppb_grpc
from facesearch_contract.v1 import retriever_pb2 as rpb
from facesearch_contract.v1 import retriever_service_pb2_grpc as rpb_grpc
from harness.service_process import start_service


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=200, help="timed rounds per side")
    ap.add_argument("--session-rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="FAISS OpenMP threads (bare side)")
    args = ap.parse_args()
    if not data_available():
        sys.exit("../shared/data is missing: the bench needs the real faces")
    g = load_real_gallery()
    g = pad_synthetic(g, args.size, seed=99) if args.size > len(g) else g
    v = np.ascontiguousarray(g.vectors[: args.size], np.float32)
    faiss.omp_set_num_threads(args.threads)
    index = faiss.IndexFlatIP(v.shape[1])
    index.add(v)
    warm_up_round(v, index)
    bare = summarize(time_rounds(v, index, args.rounds, args.session_rounds).round)
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"fsbench:{uuid.uuid4().hex[:8]}:"
    tmp = Path(tempfile.mkdtemp(prefix="fs-bench-"))
    retriever = start_service("retriever", {"FACESEARCH_RETRIEVER_DATA_DIR": str(tmp)})
    procs = [retriever]
    try:
        r = rpb_grpc.RetrieverStub(retriever.channel())
        r.CreateCollection(
            rpb.CreateCollectionRequest(
                name="bench",
                vector_fields=[
                    rpb.VectorFieldSpec(name="face", dimension=v.shape[1], model_id=MODEL_ID)
                ],
            ),
            timeout=60,
        )
        for lo in range(0, len(v), 1024):
            pts = []
            for i in range(lo, min(len(v), lo + 1024)):
                p = rpb.Point(id=str(i))
                p.vectors["face"].values.extend(v[i].tolist())
                p.model_ids["face"] = MODEL_ID
                pts.append(p)
            r.Upsert(rpb.UpsertRequest(collection="bench", points=pts, durable=False), timeout=120)
        pers = start_service(
            "personalizer",
            {
                "FACESEARCH_PERSONALIZER_RETRIEVER_ADDRESS": retriever.address,
                "FACESEARCH_PERSONALIZER_REDIS_URL": redis_url,
                "FACESEARCH_PERSONALIZER_REDIS_PREFIX": prefix,
            },
        )
        procs.append(pers)
        s = ppb_grpc.PersonalizerStub(pers.channel())
        rng = np.random.default_rng(0)

        def session(user: str, timed: list[float] | None) -> None:
            target = int(rng.integers(len(v)))
            tau = float(np.quantile(v[: min(len(v), 50_000)] @ v[target], 0.98))
            st = s.StartSession(
                ppb.StartSessionRequest(user_id=user, collection="bench"), timeout=30
            ).state
            for j in range(args.session_rounds):
                fb = []
                for n, c in enumerate(st.candidates):
                    similar = float(v[int(c.id)] @ v[target]) >= tau or (j == 0 and n == 0)
                    label = ppb.FEEDBACK_LABEL_SIMILAR if similar else ppb.FEEDBACK_LABEL_DISSIMILAR
                    fb.append(ppb.Feedback(id=c.id, label=label))
                t0 = time.perf_counter()
                st = s.SubmitFeedback(
                    ppb.SubmitFeedbackRequest(session_id=st.session_id, feedback=fb), timeout=30
                ).state
                if timed is not None:
                    timed.append(time.perf_counter() - t0)
            s.EndSession(ppb.EndSessionRequest(session_id=st.session_id), timeout=10)

        # Warm-up: a whole untimed session (torch's first backward pass, channels, Redis).
        session("bench-warm-up", None)
        times: list[float] = []
        while len(times) < args.rounds:
            session(f"bench{len(times)}", times)
        served = summarize(times)
        print(f"# gallery {len(v):,} vectors, flat; one feedback round, same run")
        print("| gallery | path | rounds (n) | round p50 ms | round p99 ms |")
        print("|---|---|---:|---:|---:|")
        for label, r in (
            ("bare: same modules in-process, FAISS IndexFlatIP", bare),
            ("service: personalizer -> retriever gRPC, Redis", served),
        ):
            print(
                f"| {len(v):,} | {label} | {r.n} | {r.p50_ms:.1f} | {r.tail_cell()} |",
                flush=True,
            )
        print(
            f"# service / bare: p50 {served.p50_ms / bare.p50_ms:.2f}x, "
            f"{served.tail_label} {served.tail_ms / bare.tail_ms:.2f}x"
        )
    finally:
        for p in procs:
            p.stop()
        import redis

        rc = redis.Redis.from_url(redis_url)
        keys = list(rc.scan_iter(f"{prefix}*", count=1000))
        if keys:
            rc.delete(*keys)


if __name__ == "__main__":
    main()
