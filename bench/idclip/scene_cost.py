"""What a scene vector costs at indexing: the embedder's images/s on the same photos without and
with the image-text model's image tower (decode, detect, align, embed faces; plus, with it,
Pillow's resize to the tower's input and the tower), in-process on onnxruntime (CPU).

``python -m bench.idclip.scene_cost --model-dir DIR --model-id ID --photos ../shared/data/lfw/lfw``

DIR holds the imported image-text model (clip_import); the shipped encoders are linked in from
./models when missing. The model's weights do not matter for its cost (a random-weight
checkpoint of the architecture, bench/idclip/random_clip.py, costs the same as a trained one).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

from facesearch_server.embedder import model_cards
from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.backends.local import LocalRuntime
from facesearch_server.embedder.image_text import SceneEncoder, prepare_with_scene
from facesearch_server.embedder.pipeline import DetectionSettings, FacePipeline, ImageEmbedding


def link_shipped(model_dir: Path, shipped: Path) -> None:
    for spec in mf.ENCODERS.values():
        for name in (spec.file_name, f"{spec.model_id}{model_cards.CARD_SUFFIX}"):
            if (shipped / name).exists() and not (model_dir / name).exists():
                (model_dir / name).symlink_to((shipped / name).resolve())


async def rate(
    faces: FacePipeline, scene: SceneEncoder | None, photos: list[bytes], batch: int
) -> tuple[float, int]:
    """Images per second over ``photos`` (batches of ``batch``), and the faces found."""
    settings = DetectionSettings()
    found = 0
    start = time.perf_counter()
    for i in range(0, len(photos), batch):
        prepared: list[ImageEmbedding] = []
        for data in photos[i : i + batch]:
            if scene is None:
                prepared.append(faces.prepare_image(data, settings))
            else:
                prepared.append(prepare_with_scene(faces, scene, data, settings, "image", None))
        await faces.encode(prepared)
        if scene is not None:
            await scene.encode(prepared)
        found += sum(len(p.faces) for p in prepared)
    return len(photos) / (time.perf_counter() - start), found


async def main_async(args: argparse.Namespace) -> None:
    link_shipped(args.model_dir, Path(mf.DEFAULT_MODEL_DIR))
    runtime = LocalRuntime(args.model_dir, intra_op_threads=args.threads, export_missing=False)
    scene = SceneEncoder.configured(runtime, args.model_dir, args.model_id, weights=True)
    runtime.load()
    faces = FacePipeline(runtime)
    paths = sorted(args.photos.rglob("*.jpg"))[: args.count]
    photos = [p.read_bytes() for p in paths]
    await rate(faces, scene, photos[: args.batch], args.batch)  # warm-up: first runs allocate
    rows = []
    for label, with_scene in (("faces only", None), ("faces + scene", scene)) * args.rounds:
        per_s, found = await rate(faces, with_scene, photos, args.batch)
        rows.append((label, per_s, found))
        print(f"{label:14s} {per_s:6.1f} images/s ({len(photos)} photos, {found} faces)")
    card = scene.card
    best = {label: max(r[1] for r in rows if r[0] == label) for label, _, _ in rows}
    print(
        f"{args.model_id}: {card.raw['source']['arch']}, {card.image_size}px, "
        f"{card.dimension}-d; best of {args.rounds}: {best['faces only']:.1f} -> "
        f"{best['faces + scene']:.1f} images/s ({best['faces + scene'] / best['faces only']:.0%}); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--model-id", required=True)
    parser.add_argument("--photos", type=Path, required=True, help="a folder of .jpg photos")
    parser.add_argument("--count", type=int, default=96)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads, 0 = all")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
