"""Write an open_clip checkpoint of a real architecture with random weights, to measure what an
image-text model costs (time per image, file sizes) before an operator brings real weights.
Its vectors mean nothing; its cost is the architecture's.

``python -m bench.idclip.random_clip --arch ViT-B-32 --out bench/.cache/idclip/vit-b-32-random.pt``
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--arch", default="ViT-B-32", help="an open_clip architecture")
    parser.add_argument("--out", type=Path, required=True, help="the .pt file to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch

    from facesearch_server.embedder.open_clip_env import import_open_clip

    open_clip = import_open_clip()
    logging.disable(logging.WARNING)  # "no pretrained weights loaded": that is the point
    torch.manual_seed(args.seed)
    model = open_clip.create_model(args.arch, pretrained=None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.0f} MB, random weights)")


if __name__ == "__main__":
    main()
