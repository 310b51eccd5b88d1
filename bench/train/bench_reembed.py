"""Re-embedding throughput beside plain indexing of the same folder, one run, same services.

A folder of LFW photos (../shared/data) is indexed into a collection (``index_folder``, as
`facesearch index` does), then re-embedded with a second face model (``reembed_collection``,
as `facesearch reembed ... --no-swap` does). The second model is SFace registered again as a
fine-tuned model (same network, so the encoder costs the same and the comparison is of the two
flows); ``--model-dir``/``--model`` name a real fine-tuned one instead.

    python -m bench.train.bench_reembed --images 300

Prints images/s of each; for the re-embedding both the embedding phase (read, detect, embed,
store) and the whole run (plus the two collection scans, persons and the final check pass).
Beside them, the embedder alone (EmbedImagesStream, nothing stored) with each model, so a gap
between the flows can be told from a gap between the models.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from facesearch import ClientSettings, FacesearchClient, flows
from harness.service_process import REPO_ROOT, start_service
from harness.shared_data import shared_data_dir

COPY = "sface-bench-copy"


def model_dir_with_copy(base: Path) -> Path:
    """The shipped models plus SFace registered again as the fine-tuned model COPY."""
    models = base / "models"
    models.mkdir()
    for f in (REPO_ROOT / "models").iterdir():
        (models / f.name).symlink_to(f)
    (models / f"{COPY}.onnx").symlink_to(REPO_ROOT / "models" / "sface-2021dec.onnx")
    card = json.loads((REPO_ROOT / "models" / "sface-2021dec.card.json").read_text())
    card.update(model_id=COPY, trained_from="sface-2021dec")
    card["calibration"] = dict(card["calibration"], model_id=COPY)
    (models / f"{COPY}.card.json").write_text(json.dumps(card))
    return models


def photo_folder(base: Path, n: int) -> Path:
    data = shared_data_dir()
    if data is None:
        raise SystemExit("needs ../shared/data (LFW photos)")
    folder = base / "photos"
    for photo in sorted((data / "lfw" / "lfw").glob("*/*.jpg"))[:n]:
        (folder / photo.parent.name).mkdir(parents=True, exist_ok=True)
        (folder / photo.parent.name / photo.name).symlink_to(photo)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300, help="LFW photos (default 300)")
    parser.add_argument("--model-dir", type=Path, help="an embedder model dir with --model")
    parser.add_argument("--model", default=COPY, help="the face model to re-embed with")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-reembed-"))
    models = args.model_dir or model_dir_with_copy(base)
    folder = photo_folder(base, args.images)
    embedder = start_service("embedder", {"FACESEARCH_EMBEDDER_MODEL_DIR": str(models)})
    retriever = start_service("retriever", {"FACESEARCH_RETRIEVER_DATA_DIR": str(base / "data")})
    try:
        settings = ClientSettings(
            embedder_address=embedder.address,
            retriever_address=retriever.address,
            timeout_s=600,
        )
        with FacesearchClient(settings) as fs:
            warm = sorted(folder.rglob("*.jpg"))[:8]
            for model in ("", args.model):  # both encoders loaded and warm before timing
                list(flows.embed_images(fs, [(str(p), p) for p in warm], model_id=model))
            photos = [(str(p), p) for p in sorted(folder.rglob("*.jpg"))]
            bare = {}
            for model in ("", args.model):
                started = time.perf_counter()
                list(flows.embed_images(fs, photos, model_id=model))
                bare[model or "sface-2021dec"] = time.perf_counter() - started
            flows.ensure_collection(fs, "bench")
            indexed = flows.index_folder(fs, folder, "bench")
            started = time.perf_counter()
            summary = flows.reembed_collection(fs, "bench", args.model, swap=False)
            whole = time.perf_counter() - started
    finally:
        embedder.stop()
        retriever.stop()
    print(f"{indexed.images} images, {indexed.faces} faces; model {args.model}")
    print("| step | images | seconds | images/s |")
    print("|---|---:|---:|---:|")
    for model, seconds in bare.items():
        n = len(photos)
        print(f"| embedder alone, {model} | {n} | {seconds:.1f} | {n / seconds:.2f} |")
    print(
        f"| index (embed + store) | {indexed.images} | {indexed.seconds:.1f} "
        f"| {indexed.images_per_second:.2f} |"
    )
    print(
        f"| reembed, embedding phase | {summary.reembedded} | {summary.embed_seconds:.1f} "
        f"| {summary.images_per_second:.2f} |"
    )
    print(
        f"| reembed, whole run | {summary.reembedded} | {whole:.1f} "
        f"| {summary.reembedded / whole:.2f} |"
    )
    print(
        f"carried {summary.carried} of {summary.faces} faces, {summary.lost_faces} lost; "
        f"{summary.passes} passes"
    )


if __name__ == "__main__":
    main()
