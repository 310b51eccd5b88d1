"""Caption matching on LFW photos with captions in their IPTC/XMP fields: text -> image
recall@1/5/10 through the real services, with and without the person's name in the query.

The archive is bench/idclip/context_archive's (the person-in-context bench's): the first 32 LFW
persons with 15 photos, 3 news scenes per person, each photo with a wire caption (name, one of
three wordings of the scene, place, date, agency) written into IPTC Caption-Abstract or XMP
dc:description and read back at indexing by facesearch.context_text. No photo is labelled:
only the captions are searched (MiniLM).

One query per photo, a paraphrase of its caption: the name, the scene in the fourth wording no
caption uses, the same place and the same date written another way ("Colin Powell answering
questions at a press conference in Madrid on March 12, 2003" for "Colin Powell takes questions
from reporters at a news briefing in Madrid, 12 March 2003. (AP Photo)"); no agency. The right
photos of a query are those whose caption says the same person, scene, place and date: by
construction the photo itself, and any other photo that shares all four (counted and printed;
they share one place in the ranking, see bench_captions.rank_of). The context-only query is the
same text without the name; its right photos are those sharing scene, place and date, whoever
is in them. Rank = place among distinct photos (several faces of one photo count once).
Intervals: bootstrap over queries and, since a person's 15 queries share a name, over persons.

    python -m bench.idclip.lfw_captions [--persons 32] [--contexts 3]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bench.idclip import context_archive
from bench.idclip.bench_captions import rank_of, recall_at, search_photos
from bench.idclip.context_archive import CONTEXTS, QUERY_WORDING, Photo, display_name
from bench.idclip.precision import grouped_intervals
from facesearch import FacesearchClient, flows
from harness.service_process import start_suite, stop_suite, suite_settings

COLLECTION = "lfw-captions"
KS = (1, 5, 10)
MODES = ("with name", "context only")


def paraphrase(photo: Photo, with_name: bool) -> str:
    """The query for ``photo``: its caption said another way (module docstring)."""
    f = photo.frame
    scene = CONTEXTS[photo.context][QUERY_WORDING]
    who = f"{display_name(photo.person)} " if with_name else ""
    return f"{who}{scene} in {f.place} on {f.month} {f.day}, {f.year}"


def said(photo: Photo, with_name: bool) -> tuple[object, ...]:
    """What the query for ``photo`` says: photos with equal keys answer it equally well."""
    f = photo.frame
    where_when = (photo.context, f.place, f.day, f.month, f.year)
    return (photo.person, *where_when) if with_name else where_when


def caption_queries(photos: Sequence[Photo], with_name: bool) -> list[tuple[str, frozenset[str]]]:
    """One (query text, right media ids) per photo, in the order of ``photos``."""
    right: dict[tuple[object, ...], set[str]] = {}
    for p in photos:
        right.setdefault(said(p, with_name), set()).add(p.media_id)
    return [(paraphrase(p, with_name), frozenset(right[said(p, with_name)])) for p in photos]


def chance_recall(photos: int, right: int, k: int) -> float:
    """Recall@k of a random ranking of ``photos`` photos of which ``right`` are right."""
    return 1 - math.comb(photos - right, k) / math.comb(photos, k)


def first_wrong(
    photos: Sequence[Photo],
    queries: Sequence[tuple[str, frozenset[str]]],
    top: Sequence[str | None],
) -> dict[str, int]:
    """What took first place from each photo's query (caption_queries' order), for the queries
    whose first photo is wrong (``top``: the first photo per query, None when nothing came
    back): another photo of the same person and scene, of another scene, another person's."""
    by_id = {p.media_id: p for p in photos}
    out: dict[str, int] = {}
    for asked, (_, right), first in zip(photos, queries, top, strict=True):
        if first in right:
            continue
        got = by_id.get(first) if first is not None else None
        if got is None:
            kind = "nothing"
        else:
            person = "same person" if got.person == asked.person else "another person"
            scene = "same scene" if got.context == asked.context else "another scene"
            kind = f"{person}, {scene}"
        out[kind] = out.get(kind, 0) + 1
    return out


def report(
    photos: Sequence[Photo],
    queries: dict[str, list[tuple[str, frozenset[str]]]],
    found: dict[str, np.ndarray],
    out: Callable[[str], object] = print,
) -> None:
    persons = np.array([p.person for p in photos])
    n = len(photos)
    for mode in MODES:
        tied = sum(len(right) > 1 for _, right in queries[mode])
        out(f"{mode}: {len(queries[mode])} queries, {tied} with more than one right photo")
    for k in KS:
        hits = {mode: (found[mode] <= k).astype(float) for mode in MODES}
        for mode in MODES:
            chance = np.mean([chance_recall(n, len(r), k) for _, r in queries[mode]])
            (lo, hi), (plo, phi) = grouped_intervals(hits[mode], persons)
            out(
                f"recall@{k:<2d} {mode:12s} {recall_at(found[mode], k):.3f} "
                f"[95% CI {lo:.3f}, {hi:.3f}; over persons {plo:.3f}, {phi:.3f}] "
                f"chance {chance:.3f}"
            )
        diff = hits["with name"] - hits["context only"]
        (lo, hi), (plo, phi) = grouped_intervals(diff, persons)
        out(
            f"recall@{k:<2d} name - none    {diff.mean():+.3f} "
            f"[{lo:+.3f}, {hi:+.3f}; over persons {plo:+.3f}, {phi:+.3f}] (paired)"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--persons", type=int, default=32, help="LFW persons (by name)")
    parser.add_argument("--photos-per-person", type=int, default=15)
    parser.add_argument("--contexts", type=int, default=3, help="scenes per person")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    lfw, chosen = context_archive.chosen_lfw(args.persons, args.photos_per_person)
    photos, _ = context_archive.plan(chosen, args.contexts, 0, seed=args.seed)
    queries = {mode: caption_queries(photos, mode == "with name") for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        archive = context_archive.write(photos, lfw, Path(tmp) / "archive")
        suite = start_suite(Path(tmp) / "suite")
        try:
            settings = suite_settings(suite, timeout_s=120)
            with FacesearchClient(settings) as fs:
                flows.ensure_collection(fs, COLLECTION)
                started = time.perf_counter()
                s = flows.index_folder(fs, archive, COLLECTION)
                print(
                    f"indexed {s.images} photos in {time.perf_counter() - started:.0f} s: "
                    f"{s.images_with_faces} with faces ({s.faces} faces), captions "
                    f"{s.caption_sources}, without caption {s.without_caption}, errors {s.errors}"
                )
                lists = {
                    mode: search_photos(fs, COLLECTION, [q for q, _ in queries[mode]])
                    for mode in MODES
                }
        finally:
            stop_suite(suite)
    found = {
        mode: np.array(
            [rank_of(p, r) for p, (_, r) in zip(lists[mode], queries[mode], strict=True)]
        )
        for mode in MODES
    }
    for mode in MODES:
        text, right = queries[mode][0]
        print(f"e.g. {mode}: {text!r} -> {sorted(right)}")
    report(photos, queries, found)
    for mode in MODES:
        top = [p[0] if p else None for p in lists[mode]]
        print(f"first place when wrong, {mode}: {first_wrong(photos, queries[mode], top)}")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
