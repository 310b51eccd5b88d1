"""Calibrate a face model for open-set identification and write its model card.

    python -m facesearch_server.embedder.calibration --data ../shared/data/lfw \\
        --cache bench/.cache/calibration/lfw.npz

Embeds the labelled folder under every degradation (once; ``--cache`` keeps the result),
fits the calibration on fold 0 of the identities (a hash of each name: fold 1 stays held out
for bench/identify) and writes it into the model's card
(services/embedder/model_cards/<model_id>.json), which ships with the model.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from facesearch_server.embedder import model_cards
from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.calibration.dataset import EmbeddedSet, embed_folder
from facesearch_server.embedder.calibration.fit import fit_calibration, identity_fold
from facesearch_server.embedder.pipeline import FacePipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with manifest.csv")
    parser.add_argument("--cache", type=Path, help="embeddings .npz (made when missing)")
    parser.add_argument("--model", default=mf.SFACE)
    parser.add_argument("--fold", type=int, default=0, help="identities calibrated on (0/1)")
    parser.add_argument("--out", type=Path, help="card to update (default: the shipped one)")
    args = parser.parse_args()
    if args.cache and args.cache.exists():
        data = EmbeddedSet.load(args.cache)
    else:
        print(f"embedding {args.data} under every degradation ...", file=sys.stderr)
        data = embed_folder(FacePipeline.local(), args.data)
        if args.cache:
            data.save(args.cache)
    identities = {str(p) for p in data.identities if identity_fold(str(p)) == args.fold}
    calibration = fit_calibration(data, identities, args.model)
    source = {
        **calibration.source,
        "data": args.data.name,
        "images": len(data.identities),
        "split": f"identities with sha1(name) % 2 == {args.fold}; the other fold is held out",
        "measured": dt.date.today().isoformat(),
        "command": "python -m facesearch_server.embedder.calibration " + " ".join(sys.argv[1:]),
    }
    card_path = args.out or model_cards.card_path(args.model)
    card = model_cards.load_card(card_path) if card_path.exists() else {"model_id": args.model}
    card["calibration"] = {**calibration.to_dict(), "source": source}
    card_path.write_text(json.dumps(card, indent=1) + "\n")
    for band in calibration.bands:
        t = [band.impostor.score_at_fmr(f) for f in (1e-3, 1e-4, 1e-6)]
        print(
            f"quality [{band.low}, {band.high}): {band.probes} probes, "
            f"{band.impostor.pairs:,} impostor pairs; score at FMR 1e-3/1e-4/1e-6: "
            f"{t[0]:.3f}/{t[1]:.3f}/{t[2]:.3f}; genuine median {band.genuine_percentiles[49]:.3f}"
        )
    print(f"wrote {card_path}")


if __name__ == "__main__":
    main()
