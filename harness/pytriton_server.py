"""A real Triton Inference Server (PyTriton's bundled tritonserver, CPU) hosting the encoder
ONNX files under the production names and tensors.

PyTriton's server has only the Python backend, so each model is a Python callable running the
same ONNX file through onnxruntime; the onnxruntime backend used in production (config from
services/embedder/triton_repository.py) cannot run here. Names, tensor names, dtypes, shapes
and the batching limit are taken from the same table (model_files), so the embedder's Triton
client sees what it would see in production.

``python -m harness.pytriton_server --grpc-port 8001 --http-port 8000 --metrics-port 8002``
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import sysconfig
from pathlib import Path

import numpy as np


def _fix_library_path() -> None:
    # Triton's Python backend stub loads libpython; with a pyenv interpreter the system one is
    # found first and fails ('_thread.RLock' object has no attribute '_recursion_count').
    libdir = sysconfig.get_config_var("LIBDIR") or str(Path(sys.base_prefix) / "lib")
    current = os.environ.get("LD_LIBRARY_PATH", "")
    if libdir not in current.split(os.pathsep):
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, current) if p)


def serve(
    grpc_port: int, http_port: int, metrics_port: int, model_dir: Path, max_batch: int
) -> None:
    _fix_library_path()
    import onnxruntime as ort
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    from facesearch_server.embedder import image_text
    from facesearch_server.embedder import model_files as mf
    from facesearch_server.embedder.model_export import export_all

    export_all(model_dir, only_missing=True)
    config = TritonConfig(
        grpc_address="127.0.0.1",
        grpc_port=grpc_port,
        http_address="127.0.0.1",
        http_port=http_port,
        metrics_address="127.0.0.1",
        metrics_port=metrics_port,
        exit_on_error=True,
        log_verbose=0,
    )
    with Triton(config=config) as triton:
        # The shipped encoders plus any fine-tuned face encoder in the model dir, as the
        # repository generator's --trained-dir writes them.
        # And both towers of each image-text model there (clip_import), as the generator's
        # --image-text-dir writes them.
        towers = {m: spec for m, (spec, _) in image_text.served_towers(model_dir).items()}
        for spec in {**mf.served_encoders(model_dir), **towers}.values():
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            session = ort.InferenceSession(
                str(mf.encoder_path(spec, model_dir)), opts, providers=["CPUExecutionProvider"]
            )
            names = [t.name for t in spec.inputs]
            out_name = spec.output.name

            def infer(session=session, names=names, out_name=out_name, **inputs: np.ndarray):  # type: ignore[no-untyped-def]
                feeds = {n: inputs[n] for n in names}
                return {out_name: session.run([out_name], feeds)[0]}

            triton.bind(
                model_name=spec.model_id,
                infer_func=batch(infer),
                inputs=[
                    Tensor(name=t.name, dtype=np.dtype(t.dtype), shape=t.dims) for t in spec.inputs
                ],
                outputs=[
                    Tensor(name=out_name, dtype=np.dtype(spec.output.dtype), shape=spec.output.dims)
                ],
                config=ModelConfig(
                    max_batch_size=max_batch,
                    batcher=DynamicBatcher(max_queue_delay_microseconds=2000),
                ),
                strict=True,
            )
        print("pytriton serving", flush=True)
        triton.serve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--model-dir", default="models")
    parser.add_argument("--max-batch", type=int, default=64)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    serve(args.grpc_port, args.http_port, args.metrics_port, Path(args.model_dir), args.max_batch)


if __name__ == "__main__":
    main()
