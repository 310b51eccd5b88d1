"""``facesearch backfill COLLECTION --field attributes``: give the faces a collection stores the
vectors of a field they lack, from the photos they were indexed from
(facesearch.core.backfilling); the field is added first when the collection has none.

Killed or stopped, the same command resumes (what was filled stays filled; the journal skips
the photos an earlier run was done with). Exit code 0 when every face lacking the field was
filled, 1 when any was not (the summary lists them and why) or a call failed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

from facesearch import flows, messages
from facesearch.client import FacesearchClient
from facesearch.core.vector_fields import FILLERS
from facesearch.progress_bar import ProgressBar

# The faces and photos a summary lists before it only counts the rest.
SHOW = 50


def add_parsers(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
) -> dict[str, Any]:
    p = sub.add_parser(
        "backfill",
        parents=[common],
        help="fill a vector field (attributes) of the faces stored before it existed",
    )
    p.add_argument("collection", metavar="COLLECTION")
    p.add_argument(
        "--field",
        default=messages.ATTRIBUTE_FIELD,
        choices=sorted(FILLERS),
        help=f"the vector field to fill (default {messages.ATTRIBUTE_FIELD}); added when missing",
    )
    p.add_argument(
        "--media-root",
        type=Path,
        metavar="DIR",
        help="the folder the collection was indexed from (media ids are paths relative to it); "
        "default: the roots the collection recorded at indexing",
    )
    p.add_argument("--batch-size", type=int, default=32, help="photos embedded per step")
    p.add_argument(
        "--retry-for",
        type=float,
        default=60.0,
        metavar="S",
        help="keep retrying a service that is unavailable or overloaded for S seconds (default 60)",
    )
    p.add_argument(
        "--journal",
        type=Path,
        metavar="FILE",
        help="where the run records the photos it is done with, so running it again resumes "
        "(default: one file per retriever, collection and field under ~/.cache/facesearch)",
    )
    p.add_argument(
        "--no-resume", action="store_true", help="try every photo again, ignoring the journal"
    )
    p.add_argument("--no-progress", action="store_true")
    return {"backfill": cmd_backfill}


def cmd_backfill(args: argparse.Namespace, client: FacesearchClient, out: TextIO) -> int:
    journal = args.journal or flows.backfill_journal_path(
        client.settings.retriever_address, args.collection, args.field
    )
    if args.no_resume:
        journal.unlink(missing_ok=True)
    bar = ProgressBar(not args.no_progress, unit="photo", desc=f"back-filling {args.field}")

    def progress(p: flows.BackfillProgress) -> None:
        bar.show(p.done, p.total, filled=p.filled, unmatched=p.unmatched)

    stopped = None
    try:
        summary = flows.backfill(
            client,
            args.collection,
            field=args.field,
            media_root=args.media_root,
            batch_size=args.batch_size,
            progress=progress,
            journal=journal,
            retry_for_s=args.retry_for,
        )
    except flows.BackfillIncomplete as exc:
        stopped, summary = exc, exc.summary
    finally:
        bar.close()
    print_summary(summary, journal, out)
    if stopped is not None:
        print(
            f"back-fill stopped after retrying for {args.retry_for:g}s: {stopped.reason}\n"
            "run the same command again to go on (faces filled stay filled)",
            file=out,
        )
        return 1
    return 1 if summary.unmatched or summary.errors else 0


def print_summary(s: flows.BackfillSummary, journal: Path, out: TextIO) -> None:
    if s.field_added:
        print(f"added vector field {s.field} ({s.model}) to the collection", file=out)
    print(
        f"{s.field}: {s.points} faces, {s.already} had it, {s.lacking} lacked it; "
        f"{s.filled} filled from {s.media} photos in {s.seconds:.1f}s, {len(s.unmatched)} not "
        f"detected again, {s.error_faces} in photos not read, {s.changed} changed meanwhile"
        + (f", {s.retries} transient failure(s) retried" if s.retries else ""),
        file=out,
    )
    if s.skipped:
        print(
            f"resumed: {s.skipped} photo(s) an earlier run was done with were not embedded "
            f"again (journal {journal}; --no-resume tries them again)",
            file=out,
        )
    if s.unmatched:
        print(f"faces not filled ({len(s.unmatched)}):", file=out)
    for point_id, why in s.unmatched[:SHOW]:
        print(f"  {point_id}: {why}", file=out)
    if len(s.unmatched) > SHOW:
        print(f"  ... and {len(s.unmatched) - SHOW} more", file=out)
    if s.errors:
        print(f"photos not read ({len(s.errors)}):", file=out)
    for media_id, why in s.errors[:SHOW]:
        print(f"  {media_id or '(no media id)'}: {why}", file=out)
    if len(s.errors) > SHOW:
        print(f"  ... and {len(s.errors) - SHOW} more", file=out)
