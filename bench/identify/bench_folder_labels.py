"""Bystander labelling over the LFW folders: folder-name labels vs labels from evidence.

Each LFW folder holds photos of one person, who is the face nearest the centre of every frame
(LFW's own construction); any other face is a bystander. "Before" labels every face of every
photo with the folder's name (what ``index --person-from-dir`` did); "after" labels only what
``facesearch.person_evidence.label_folder`` singles out, with the 1:1 threshold at FMR 1e-4 of
the pair's poorer quality band from the model card. Figures: faces labelled, mislabelled
(labelled but not the centre face), and left unlabelled by outcome.

    python -m bench.identify.bench_folder_labels       # embeds every face of LFW once (~15 min)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from facesearch.person_evidence import Outcome, label_folder
from facesearch_server.embedder import model_cards
from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.calibration.dataset import read_manifest
from facesearch_server.embedder.pipeline import DetectionSettings, FacePipeline
from harness.shared_data import shared_data_dir

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "calibration" / "lfw_all_faces.npz"


def embed_all_faces(folder: Path, cache: Path) -> dict[str, np.ndarray]:
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        return {k: z[k] for k in z.files}
    pipe = FacePipeline.local()
    paths, identities = read_manifest(folder)
    rows: dict[str, list] = {k: [] for k in ("photo", "identity", "emb", "q", "central")}  # type: ignore[type-arg]
    started = time.monotonic()
    for n, (path, who) in enumerate(zip(paths, identities, strict=True)):
        bgr = cv2.imread(str(path))
        faces = pipe.prepare_pixels(bgr, DetectionSettings()).faces
        if not faces:
            continue
        h, w = bgr.shape[:2]
        off = [
            (f.box[0] + f.box[2] / 2 - w / 2) ** 2 + (f.box[1] + f.box[3] / 2 - h / 2) ** 2
            for f in faces
        ]
        vectors = pipe.embed_crops_sync([f.aligned for f in faces])
        for i, (f, v) in enumerate(zip(faces, vectors, strict=True)):
            rows["photo"].append(str(path.relative_to(folder)))
            rows["identity"].append(who)
            rows["emb"].append(v)
            rows["q"].append(f.quality.score)
            rows["central"].append(i == int(np.argmin(off)))
        if (n + 1) % 500 == 0:
            print(f"  {n + 1}/{len(paths)} photos ({(n + 1) / (time.monotonic() - started):.1f}/s)")
    out = {
        "photo": np.array(rows["photo"]),
        "identity": np.array(rows["identity"]),
        "emb": np.stack(rows["emb"]).astype(np.float32),
        "q": np.array(rows["q"], np.float32),
        "central": np.array(rows["central"]),
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, **out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--fmr", type=float, default=1e-4, help="1:1 FMR of the join threshold")
    args = parser.parse_args()
    lfw = (shared_data_dir() or Path("../shared/data")) / "lfw"
    data = embed_all_faces(lfw, args.cache)
    cal = model_cards.calibration_of(model_cards.shipped_card(mf.SFACE))
    if cal is None:
        raise SystemExit("the SFace model card has no calibration: run the calibration first")

    def threshold(qa: float, qb: float) -> float:
        return cal.threshold(args.fmr, min(qa, qb), 1)

    before_labelled = len(data["photo"])
    before_wrong = int((~data["central"]).sum())
    labelled = wrong = 0
    outcomes = dict.fromkeys(Outcome, 0)
    folders = sorted(set(map(str, data["identity"])))
    for who in folders:
        rows = np.flatnonzero(data["identity"] == who)
        photos = sorted(set(map(str, data["photo"][rows])))
        groups = [rows[data["photo"][rows] == p] for p in photos]
        result = label_folder(
            [data["emb"][g] for g in groups], [data["q"][g] for g in groups], threshold
        )
        for g, photo_outcomes in zip(groups, result.outcomes, strict=True):
            for row, outcome in zip(g, photo_outcomes, strict=True):
                outcomes[outcome] += 1
                if outcome is Outcome.LABELLED:
                    labelled += 1
                    wrong += int(not data["central"][row])
    multi = sum(
        1
        for who in folders
        for p in set(data["photo"][data["identity"] == who])
        if (data["photo"] == p).sum() > 1
    )
    print(
        f"LFW: {len(folders)} folders, {len(set(map(str, data['photo'])))} photos with a face, "
        f"{before_labelled} faces ({before_labelled - len(set(map(str, data['photo'])))} beyond "
        f"one per photo; {multi} photos with several faces); join threshold: 1:1 FMR {args.fmr:g}"
    )
    print(f"{'':28s} {'labelled':>9s} {'mislabelled':>12s} {'share wrong':>12s}")
    print(
        f"{'before: folder name on all':28s} {before_labelled:9d} {before_wrong:12d} "
        f"{before_wrong / before_labelled:12.4f}"
    )
    print(f"{'after: evidence':28s} {labelled:9d} {wrong:12d} {wrong / max(labelled, 1):12.4f}")
    print(
        "after, faces left unlabelled: "
        + ", ".join(f"{o.value} {n}" for o, n in outcomes.items() if o is not Outcome.LABELLED)
    )
    central_total = int(data["central"].sum())
    print(
        f"central (the person's) faces labelled: {labelled - wrong} of {central_total} "
        f"({(labelled - wrong) / central_total:.3f})"
    )


if __name__ == "__main__":
    main()
