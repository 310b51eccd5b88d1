"""Face verification on LFW pairs (pairs.txt), clean and degraded, as a table.

``python -m bench.embedder.verification --pairs 300`` (the figures in services/embedder/README.md);
``--manifest-folder ../shared/data/celeba_wild`` for random pairs of another folder's identities.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from facesearch_server.embedder.pipeline import FacePipeline
from harness.face_verification import (
    SFACE_THRESHOLD,
    format_table,
    lfw_pairs,
    manifest_pairs,
    verify_all,
)
from harness.shared_data import shared_data_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", default=str((shared_data_dir() or Path("../shared/data")) / "lfw"))
    parser.add_argument("--pairs", type=int, default=150, help="matched and mismatched pairs each")
    parser.add_argument(
        "--manifest-folder",
        help="instead of LFW pairs.txt: random pairs from this folder's manifest.csv identities",
    )
    args = parser.parse_args()
    pipe = FacePipeline.local()
    if args.manifest_folder:
        pairs = manifest_pairs(Path(args.manifest_folder), args.pairs)
        print(f"{len(pairs)} pairs from {args.manifest_folder}, threshold {SFACE_THRESHOLD}")
    else:
        pairs = lfw_pairs(Path(args.lfw), args.pairs)
        print(f"{len(pairs)} LFW pairs, threshold {SFACE_THRESHOLD}")
    print(format_table(verify_all(pipe, pairs)))


if __name__ == "__main__":
    main()
