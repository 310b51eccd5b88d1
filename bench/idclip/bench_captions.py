"""Caption matching on MM-CelebA-HQ through the real services: text -> image recall@1/5/10.

The 101 images of ../shared/data/mm_celeba_hq_captions are indexed with one caption each
(caption_1), written either as a sidecar .txt (the path before facesearch.context_text) or as
XMP dc:description inside a copy of the image (read by facesearch.context_text); every other
caption of an image (caption_2..10, 909 queries) is a query whose answer is that image. An image
counts as found at rank r when it is the r-th distinct photo among the hits. Also: what reading
the context text costs per image (context_of, IPTC+XMP+EXIF+sidecars).

    python -m bench.idclip.bench_captions [--source txt|xmp|both]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
import time
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import pyexiv2

from bench.idclip.precision import distinct, grouped_intervals
from facesearch import FacesearchClient, flows, messages
from facesearch.context_text import context_of
from facesearch_contract.v1 import embedder_pb2, retriever_pb2
from harness.service_process import start_suite, stop_suite, suite_settings
from harness.shared_data import shared_data_dir

BATCH = 64
DEPTH = 40  # hits fetched per query; enough for 10 distinct photos


def archive(folder: Path, source: str) -> tuple[Path, list[tuple[str, frozenset[str]]]]:
    """Copies of the images with caption_1 as ``source``; the (query, answer media id) pairs."""
    data = shared_data_dir()
    if data is None:
        raise SystemExit("needs ../shared/data/mm_celeba_hq_captions")
    root = data / "mm_celeba_hq_captions"
    queries = []
    with (root / "manifest.csv").open() as f:
        for row in csv.DictReader(f):
            image = Path(
                shutil.copy(root / row["relative_path"], folder / Path(row["relative_path"]).name)
            )
            if source == "txt":
                image.with_suffix(".txt").write_text(row["caption_1"] + "\n")
            else:
                with pyexiv2.Image(str(image)) as im:
                    im.modify_xmp({"Xmp.dc.description": {'lang="x-default"': row["caption_1"]}})
            queries += [
                (row[f"caption_{i}"], frozenset({image.name}))
                for i in range(2, 11)
                if row[f"caption_{i}"]
            ]
    return folder, queries


def search_photos(fs: FacesearchClient, collection: str, texts: Sequence[str]) -> list[list[str]]:
    """For each text, the distinct photos (media ids) of its DEPTH best faces, best first: the
    text embedded by the collection's text model, searched against the stored captions."""
    fields = flows.collection_fields(fs, collection)
    name, model = fields.text_field()
    out = []
    for i in range(0, len(texts), BATCH):
        reply = fs.embedder.EmbedText(
            messages.embed_text_request(
                list(texts[i : i + BATCH]), model_id=model, role=embedder_pb2.TEXT_ROLE_QUERY
            )
        )
        request = retriever_pb2.SearchRequest(collection=collection)
        for vector in reply.embeddings:
            request.queries.append(
                retriever_pb2.Query(
                    terms=[messages.text_term(name, vector, reply.model_id or model)], k=DEPTH
                )
            )
        for result in fs.retriever.Search(request).results:
            out.append(distinct(str(h.metadata["media_id"]) for h in messages.hits(result)))
    return out


def rank_of(photos: Sequence[str], right: Collection[str], depth: int = DEPTH) -> int:
    """1-based rank of the first right photo among distinct ``photos``: 1 + the wrong photos
    before it (photos equally right by construction share one place); ``depth + 1`` when none
    is there."""
    wrong = 0
    for photo in distinct(photos):
        if photo in right:
            return wrong + 1
        wrong += 1
    return depth + 1


def recall_at(ranks: np.ndarray, k: int) -> float:
    """Share of queries whose answer is within the first ``k`` distinct photos."""
    return float(np.mean(ranks <= k))


def ranks(
    fs: FacesearchClient, collection: str, queries: Sequence[tuple[str, Collection[str]]]
) -> np.ndarray:
    """Rank of each (text, right photos) query's answer (rank_of); DEPTH + 1 when not found."""
    found = search_photos(fs, collection, [q for q, _ in queries])
    return np.array([rank_of(p, right) for p, (_, right) in zip(found, queries, strict=True)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("txt", "xmp", "both"), default="both")
    args = parser.parse_args(argv)
    sources = ("txt", "xmp") if args.source == "both" else (args.source,)
    with tempfile.TemporaryDirectory() as tmp:
        suite = start_suite(Path(tmp) / "suite")
        try:
            settings = suite_settings(suite, timeout_s=120)
            with FacesearchClient(settings) as fs:
                for source in sources:
                    folder = Path(tmp) / source
                    folder.mkdir()
                    folder, queries = archive(folder, source)
                    images = sorted(folder.glob("*.jpg"))
                    started = time.perf_counter()
                    kept = [context_of(p).caption_source for p in images]
                    per_image_ms = (time.perf_counter() - started) * 1000 / len(images)
                    collection = f"mmceleba-{source}"
                    flows.ensure_collection(fs, collection)
                    summary = flows.index_folder(fs, folder, collection)
                    r = ranks(fs, collection, queries)
                    print(
                        f"{source}: {len(images)} images ({summary.images_with_faces} with faces, "
                        f"captions {summary.caption_sources}, {kept.count(source)} read as "
                        f"{source}), {len(r)} queries: top-1 {recall_at(r, 1):.3f}, "
                        f"top-5 {recall_at(r, 5):.3f}, top-10 {recall_at(r, 10):.3f}; "
                        f"context_of {per_image_ms:.2f} ms/image"
                    )
                    # The 9 queries of an image share its answer: the interval over images is
                    # the honest one when one image's queries fail together.
                    answers = np.array([next(iter(right)) for _, right in queries])
                    for k in (1, 5, 10):
                        hit = (r <= k).astype(float)
                        (lo, hi), (glo, ghi) = grouped_intervals(hit, answers)
                        print(
                            f"  top-{k} {hit.mean():.3f}: 95 % CI over queries [{lo:.3f}, "
                            f"{hi:.3f}], over images [{glo:.3f}, {ghi:.3f}]"
                        )
        finally:
            stop_suite(suite)


if __name__ == "__main__":
    main()
