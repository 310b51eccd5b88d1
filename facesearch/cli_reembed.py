"""``facesearch reembed COLLECTION --model NEW``: rebuild a collection with another face model
from its stored media and roll it out by moving its aliases (facesearch.core.reembed).

A long run prints its progress (a bar on a terminal; with --no-progress or when stderr is not a
terminal, e.g. under nohup, a line every --progress-every seconds) and resumes where it
stopped when run again. Exit code 0 when every face and person was carried and the aliases
moved, 1 when anything was not (the summary lists it) or a call failed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from facesearch import flows, index_resume
from facesearch.client import FacesearchClient
from facesearch.progress_bar import ProgressBar

# The lost images a summary lists before it only counts the rest.
SHOW_LOST = 50


def add_parsers(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
) -> dict[str, Any]:
    p = sub.add_parser(
        "reembed",
        parents=[common],
        help="rebuild a collection with another face model and move its aliases to it",
    )
    p.add_argument("collection", metavar="COLLECTION", help="an alias (it moves) or a name")
    p.add_argument("--model", required=True, help="face model id (facesearch status lists them)")
    p.add_argument("--into", metavar="NAME", help="the new collection (default COLLECTION-MODEL)")
    p.add_argument(
        "--alias",
        metavar="NAME",
        help="when COLLECTION is a name no alias points at: point NAME at it now, move NAME to "
        "the new collection when done",
    )
    p.add_argument(
        "--media-root",
        action="append",
        type=Path,
        metavar="DIR",
        help="where the media are (default: the roots the collection recorded at indexing); "
        "repeatable",
    )
    p.add_argument("--no-swap", action="store_true", help="build the new collection only")
    p.add_argument("--batch-size", type=int, default=64, help="faces per upsert")
    p.add_argument("--in-flight", type=int, default=4, help="upserts awaiting their ack")
    p.add_argument("--retry-for", type=float, default=60.0, metavar="S", help="as for index")
    p.add_argument(
        "--journal",
        type=Path,
        metavar="FILE",
        help="what lets a stopped run resume (default: under ~/.cache/facesearch/reembed)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--progress-every",
        type=float,
        default=30.0,
        metavar="S",
        help="without a bar: a progress line every S seconds (default 30)",
    )
    return {"reembed": cmd_reembed}


class _Progress:
    """A bar on a terminal, else a line now and then (a background run's log)."""

    def __init__(self, bar: bool, every_s: float) -> None:
        self.every_s, self.last = every_s, 0.0
        self.phase = ""
        self.bar = ProgressBar(bar and sys.stderr.isatty(), unit="img", desc="re-embedding")

    def __call__(self, p: flows.ReembedProgress) -> None:
        if self.bar.active and p.phase == "embedding":
            self.bar.show(p.done, p.total, faces=p.faces, lost=p.lost)
            return
        now = time.monotonic()
        if p.phase != self.phase or now - self.last >= self.every_s or p.done == p.total:
            self.phase, self.last = p.phase, now
            of = f"/{p.total}" if p.total else ""
            print(
                f"reembed: {p.phase} {p.done}{of}; {p.faces} faces stored, {p.lost} lost",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        self.bar.close()


def cmd_reembed(args: argparse.Namespace, client: FacesearchClient, out: TextIO) -> int:
    progress = _Progress(not args.no_progress, args.progress_every)
    stopped = None
    try:
        summary = flows.reembed_collection(
            client,
            args.collection,
            args.model,
            into=args.into,
            alias=args.alias,
            media_roots=args.media_root,
            journal=args.journal,
            swap=not args.no_swap,
            batch_size=args.batch_size,
            max_in_flight=args.in_flight,
            progress=progress,
            retry_for_s=args.retry_for,
        )
    except index_resume.IndexIncomplete as exc:
        stopped, summary = exc, exc.summary
    finally:
        progress.close()
    print_summary(summary, out)
    if stopped is not None:
        print(
            f"stopped after retrying for {args.retry_for:g}s: {stopped.reason}\n"
            "run the same command again to go on (what is stored is not sent again)",
            file=out,
        )
        return 1
    return 0 if summary.complete else 1


def print_summary(s: flows.ReembedSummary, out: TextIO) -> None:
    verb = "created" if s.created else "resumed into"
    print(
        f"{verb} collection {s.target} ({s.model}) from {s.source}; journal {s.journal}", file=out
    )
    if s.resumed:
        print(f"resumed: {s.resumed} of {s.media} images were already done", file=out)
    print(
        f"re-embedded {s.reembedded} images in {s.embed_seconds:.1f}s "
        f"({s.images_per_second:.1f} img/s); {s.carried} of {s.faces} faces carried, "
        f"{s.lost_faces} lost, {len(s.without_media)} without a media id; "
        f"{s.passes} pass(es), {s.retries} transient failure(s) retried",
        file=out,
    )
    if s.updated or s.deleted:
        print(
            f"changes to {s.source} during the run carried: {s.updated} face(s) updated, "
            f"{s.deleted} deleted",
            file=out,
        )
    if s.caught_up:
        print(
            f"written to {s.source} between the last pass and the alias move, carried after "
            f"it: {s.caught_up} change(s)",
            file=out,
        )
    if s.new_faces:
        print(
            f"{s.new_faces} face(s) detected now that {s.source} did not hold were not added "
            "(index the folder into the new collection to add them)",
            file=out,
        )
    if s.persons or s.persons_not_carried:
        print(f"persons: {s.persons} carried, {len(s.persons_not_carried)} not carried", file=out)
    for pid, reason in s.persons_not_carried[:SHOW_LOST]:
        print(f"  person {pid}: {reason}", file=out)
    for note in s.notes:
        print(f"note: {note}", file=out)
    if s.lost:
        print(f"faces not carried ({s.lost_faces} in {len(s.lost)} image(s)):", file=out)
    for lost in s.lost[:SHOW_LOST]:
        print(f"  {lost.media_id}: {len(lost.face_ids)} face(s), {lost.why}", file=out)
    if len(s.lost) > SHOW_LOST:
        print(f"  ... and {len(s.lost) - SHOW_LOST} more image(s)", file=out)
    if s.without_media:
        shown = ", ".join(s.without_media[:5])
        print(
            f"faces without a media id, not re-embedded ({len(s.without_media)}): {shown}",
            file=out,
        )
    for media, reason in s.refused[:SHOW_LOST]:
        print(f"  refused by the retriever: {media}: {reason}", file=out)
    if s.aliases:
        moved = ", ".join(s.aliases)
        print(f"alias {moved} now point(s) at {s.target}", file=out)
    elif s.not_moved:
        print(f"aliases not moved: {s.not_moved}; run the same command again", file=out)
    else:
        print(f"no alias moved (--no-swap): {s.target} is ready beside {s.source}", file=out)
    print(
        f"the old collection {s.source} is kept: drop it when done with "
        f"`facesearch collections drop {s.source} --yes`",
        file=out,
    )
