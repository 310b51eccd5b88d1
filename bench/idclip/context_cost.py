"""What reading the context text costs at indexing: images/s of ``index_folder`` on the same
captioned LFW photos with context reading off and on, through the real services.

Three ways, interleaved round by round, each round into a fresh collection:

- off: ``captions=False`` (`facesearch index --no-captions`): no file's metadata is read.
- read: ``captions=True`` into a collection without a text field: IPTC/XMP/EXIF and sidecars
  read (facesearch.context_text) and stored as metadata, nothing embedded.
- read + embed: ``captions=True`` with the default caption field: also one EmbedText (MiniLM)
  per batch of captions, as `facesearch index` does by default.

Beside them, the bare reader: ``context_of`` per image on the same files (captions in IPTC or
XMP) and on the original LFW files (no metadata), several passes.

    python -m bench.idclip.context_cost [--count 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench.idclip import context_archive
from facesearch.async_client import AsyncFacesearchClient
from facesearch.context_text import context_of
from facesearch.core import ensure_collection, index_folder
from harness.service_process import start_suite, stop_suite, suite_settings
from harness.shared_data import shared_data_dir

WAYS = {"off": (False, True), "read": (True, False), "read + embed": (True, True)}
WARM_UP = 16  # photos indexed once per way before timing: models loaded, channels open


def captioned_copies(lfw: Path, count: int, out: Path) -> tuple[list[Path], list[Path]]:
    """The first ``count`` LFW photos (by path) and copies of them with a wire caption in IPTC
    or XMP (bench/idclip/context_archive)."""
    originals = sorted(lfw.rglob("*.jpg"))[:count]
    by_person: dict[str, list[str]] = defaultdict(list)
    for p in originals:
        by_person[p.parent.name].append(p.name)
    photos, _ = context_archive.plan(by_person, contexts_per_person=1, labelled_per_person=0)
    context_archive.write(photos, lfw, out)
    return originals, sorted(out.rglob("*.jpg"))


def reader_ms(paths: list[Path], passes: int) -> list[float]:
    """Milliseconds per image of ``context_of`` over ``paths``, one figure per pass."""
    out = []
    for _ in range(passes):
        started = time.perf_counter()
        for p in paths:
            context_of(p)
        out.append((time.perf_counter() - started) * 1000 / len(paths))
    return out


async def index_rates(
    client: AsyncFacesearchClient, folder: Path, files: list[Path], rounds: int
) -> dict[str, list[float]]:
    """images/s of each way indexing ``files`` (under ``folder``), one figure per round (ways
    interleaved within a round)."""
    rates: dict[str, list[float]] = {way: [] for way in WAYS}
    for r in range(-1, rounds):  # round -1 is the warm-up
        for way, (captions, text_field) in WAYS.items():
            name = f"cost-{way.replace(' + ', '-')}-{r + 1}"
            await ensure_collection(client, name, with_text_field=text_field)
            chosen = files[:WARM_UP] if r < 0 else files
            summary = await index_folder(client, folder, name, captions=captions, files=chosen)
            if summary.errors:
                raise SystemExit(f"{way}: {summary.errors[:3]}")
            if captions and sum(summary.caption_sources.values()) != summary.images_with_faces:
                raise SystemExit(f"{way}: captions not read: {summary.caption_sources}")
            if r >= 0:
                rates[way].append(summary.images / summary.seconds)
    return rates


async def main_async(args: argparse.Namespace) -> None:
    data = shared_data_dir()
    if data is None:
        raise SystemExit("needs ../shared/data/lfw")
    lfw = data / "lfw" / "lfw"
    with tempfile.TemporaryDirectory() as tmp:
        originals, copies = captioned_copies(lfw, args.count, Path(tmp) / "archive")
        reader_ms(copies[:WARM_UP], 1)
        bare = {
            "captioned": reader_ms(copies, args.passes),
            "no metadata": reader_ms(originals, args.passes),
        }
        suite = start_suite(Path(tmp) / "suite")
        try:
            settings = suite_settings(suite, timeout_s=120)
            async with AsyncFacesearchClient(settings) as client:
                rates = await index_rates(client, Path(tmp) / "archive", copies, args.rounds)
        finally:
            stop_suite(suite)
    print(f"{len(copies)} LFW photos, {args.rounds} rounds (after a warm-up of {WARM_UP}):")
    for way, values in rates.items():
        cells = ", ".join(f"{v:.1f}" for v in values)
        print(
            f"  index, context {way:13s} median {statistics.median(values):5.1f} images/s "
            f"(rounds: {cells})"
        )
    # Rounds are interleaved, so a load change on the shared machine hits all ways of a round
    # alike: the per-round ratio to "off" is steadier than the rates.
    for way in ("read", "read + embed"):
        ratios = [on / off for on, off in zip(rates[way], rates["off"], strict=True)]
        cells = ", ".join(f"{v:.2f}" for v in ratios)
        print(f"  {way:13s} / off: median {statistics.median(ratios):.2f} (rounds: {cells})")
    for kind, values in bare.items():
        cells = ", ".join(f"{v:.2f}" for v in values)
        print(
            f"  context_of, {kind:11s} median {statistics.median(values):.2f} ms/image "
            f"(passes: {cells})"
        )
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=256, help="LFW photos (first by path)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=5, help="passes of the bare reader")
    asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
