"""One feedback round through the real services: SubmitFeedback on a personalizer process that
asks a retriever process (flat index) over gRPC and keeps state in Redis.

    python -m bench.personalize.service_round --size 10000 --rounds 100

Beside it, the same rounds' in-process figure is printed by round_latency.py (the bare
library); the difference is gRPC, the retriever's search over the wire, and the Redis writes.
Needs Redis (REDIS_URL, default redis://127.0.0.1:6379/0; keys under a unique prefix, deleted).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from bench.common.gallery import MODEL_ID, data_available, load_real_gallery, pad_synthetic
from facesearch_contract.v1 import personalizer_pb2 as ppb
from facesearch_contract.v1 import personalizer_service_pb2_grpc as ppb_grpc
from facesearch_contract.v1 import retriever_pb2 as rpb
from facesearch_contract.v1 import retriever_service_pb2_grpc as rpb_grpc
from harness.service_process import start_service


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--session-rounds", type=int, default=10)
    args = ap.parse_args()
    if not data_available():
        sys.exit("../shared/data is missing: the bench needs the real faces")
    g = load_real_gallery()
    g = pad_synthetic(g, args.size, seed=99) if args.size > len(g) else g
    v = g.vectors[: args.size]
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
        times: list[float] = []
        while len(times) < args.rounds:
            target = int(rng.integers(len(v)))
            tau = float(np.quantile(v[: min(len(v), 50_000)] @ v[target], 0.98))
            st = s.StartSession(
                ppb.StartSessionRequest(user_id=f"bench{len(times)}", collection="bench"),
                timeout=30,
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
                times.append(time.perf_counter() - t0)
            s.EndSession(ppb.EndSessionRequest(session_id=st.session_id), timeout=10)
        ms = np.array(times[5:] or times) * 1000  # the first rounds warm torch up
        print("| gallery | path | round p50 ms | round p99 ms |")
        print("|---|---|---|---|")
        print(
            f"| {len(v):,} | service (personalizer -> retriever gRPC, Redis) | "
            f"{np.percentile(ms, 50):.1f} | {np.percentile(ms, 99):.1f} |"
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
