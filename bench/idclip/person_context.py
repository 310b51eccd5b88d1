"""Person-in-context precision@10: the restricted path against the soft fusion it replaced.

An archive of LFW photos with captions in their IPTC/XMP fields (bench/idclip/context_archive)
is indexed through the real services: a few photos per person with their folder as the label
(labelled faces, persons enrolled, as `facesearch index --person-from-dir`), the rest without
labels. Each query is "person X in context Y" (one per person and scene); its answers are all of
X's photos captioned with Y, labelled or not. Every path fetches DEPTH faces; precision@10
counts the answers among the first 10 distinct photos, R-precision among the first as many as
there are answers; also shown: the share of other persons' photos in the first 10. Intervals:
bootstrap over queries (paired for differences).

- restricted: ``search_person_in_context`` today: only X's labelled faces, ranked by the context.
- restricted + unlabelled: the same with ``include_unlabelled`` (`--unlabelled`): also the
  unlabelled faces that identify as X at the match operating point.
- soft fusion: the query before the restriction (core/search.py at commit fb86ad7), rebuilt from
  today's primitives: X's person term (weight 1) plus the caption term (weight 1) fused by
  weighted sum over every face of the collection.

The person term scores a face by its best cosine with any of X's labelled faces, so each of
X's labelled faces scores 1 on it: where all of X's photos are labelled, soft fusion ranks them
by the caption exactly as the restriction does (``--labelled 15`` shows it); they part where
faces are unlabelled.

    python -m bench.idclip.person_context [--persons 32] [--contexts 3] [--labelled 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.idclip import context_archive
from bench.idclip.precision import bootstrap_ci, ceiling_at, distinct, precision_at
from facesearch import messages
from facesearch.async_client import AsyncFacesearchClient
from facesearch.core import (
    collection_fields,
    ensure_collection,
    index_folder,
    search_person_in_context,
)
from facesearch.core.context_terms import CAPTIONS, context_terms
from harness.service_process import start_suite, stop_suite, suite_settings

COLLECTION = "person-in-context"
DEPTH = 40  # faces fetched per query: 10 distinct photos even with bystanders among them
K = 10
LABELS = {
    "restricted": "restricted to X",
    "unlabelled": "restricted + unlabelled",
    "soft": "soft fusion (before)",
}


async def soft_fusion(
    client: AsyncFacesearchClient, collection: str, person: str, context: str, k: int
) -> list[messages.Hit]:
    """The person-in-context query before the restriction: the person's face term and the
    context's caption term, weight 1 each, weighted sum over all faces (no filter)."""
    fields = await collection_fields(client, collection)
    terms = await context_terms(client, fields, collection, context)
    if [t.name for t in terms] != [CAPTIONS]:
        raise SystemExit(f"expected a caption term only (the old fusion's), got {terms}")
    query = [messages.person_term(fields.face, person, weight=1.0), *(t.term() for t in terms)]
    request = messages.search_request(collection, query, k=k)
    return messages.hits((await client.retriever.Search(request)).results[0])


def photos_of(hits: list[messages.Hit]) -> list[str]:
    return distinct(str(h.metadata["media_id"]) for h in hits)


async def measure(
    client: AsyncFacesearchClient, queries: list[context_archive.Query]
) -> dict[str, np.ndarray]:
    """Per query and path: precision@10, R-precision (precision at the number of answers) and
    the share of other persons' photos in the top 10."""
    rows: dict[str, list[float]] = {}
    for q in queries:
        paths = {
            "restricted": list(
                await search_person_in_context(client, COLLECTION, q.person, q.text, k=DEPTH)
            ),
            "unlabelled": list(
                await search_person_in_context(
                    client, COLLECTION, q.person, q.text, k=DEPTH, include_unlabelled=True
                )
            ),
            "soft": await soft_fusion(client, COLLECTION, q.person, q.text, DEPTH),
        }
        for path, hits in paths.items():
            ranked = photos_of(hits)
            others = sum(m.split("/")[1] != q.person for m in ranked[:K]) / K
            for metric, value in (
                ("p@10", precision_at(ranked, q.relevant, K)),
                ("r-precision", precision_at(ranked, q.relevant, len(q.relevant))),
                ("others@10", others),
            ):
                rows.setdefault(f"{path} {metric}", []).append(value)
    return {name: np.array(values) for name, values in rows.items()}


def report(values: dict[str, np.ndarray], queries: list[context_archive.Query]) -> None:
    n = len(queries)
    ceiling = float(np.mean([ceiling_at(q.relevant, K) for q in queries]))
    print(
        f"{n} queries; best attainable precision@10 {ceiling:.3f} (answers per query: "
        f"{sorted({len(q.relevant) for q in queries})})"
    )
    for metric in ("p@10", "r-precision", "others@10"):
        for path, label in LABELS.items():
            v = values[f"{path} {metric}"]
            lo, hi = bootstrap_ci(v)
            print(f"{metric:12s} {label:26s} {v.mean():.3f} [95% CI {lo:.3f}, {hi:.3f}]")
        for path in ("restricted", "unlabelled"):
            diff = values[f"{path} {metric}"] - values[f"soft {metric}"]
            lo, hi = bootstrap_ci(diff)
            label = f"{path} - soft (paired)"
            print(f"{metric:12s} {label:26s} {diff.mean():+.3f} [{lo:+.3f}, {hi:+.3f}]")


async def main_async(args: argparse.Namespace) -> None:
    lfw, chosen = context_archive.chosen_lfw(args.persons, args.photos_per_person)
    photos, queries = context_archive.plan(chosen, args.contexts, args.labelled, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        archive = context_archive.write(photos, lfw, Path(tmp) / "archive")
        suite = start_suite(Path(tmp) / "suite")
        try:
            settings = suite_settings(suite, timeout_s=120)
            async with AsyncFacesearchClient(settings) as client:
                await ensure_collection(client, COLLECTION)
                started = time.perf_counter()
                summaries = [
                    await index_folder(
                        client,
                        archive / folder,
                        COLLECTION,
                        media_root=archive,
                        person_from_dir=folder == "labelled",
                    )
                    for folder in ("labelled", "unlabelled")
                    if (archive / folder).is_dir()
                ]
                for s in summaries:
                    print(
                        f"indexed {s.images} photos: {s.faces} faces, captions "
                        f"{s.caption_sources}, labels {s.person_labels}, {s.persons_enrolled} "
                        f"persons enrolled, errors {s.errors}"
                    )
                print(f"{len(chosen)} persons indexed in {time.perf_counter() - started:.0f} s")
                values = await measure(client, queries)
        finally:
            stop_suite(suite)
    report(values, queries)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--persons", type=int, default=32, help="LFW persons (by name)")
    parser.add_argument("--photos-per-person", type=int, default=15)
    parser.add_argument("--contexts", type=int, default=3, help="scenes per person")
    parser.add_argument("--labelled", type=int, default=5, help="labelled photos per person")
    parser.add_argument("--seed", type=int, default=0)
    asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
