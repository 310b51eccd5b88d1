"""Markdown tables of a bench_coreface results file (``python -m bench.train.coreface_report
bench/.cache/coreface/results.json`` reprints them without rerunning)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROWS = [  # (variant, training views, trained conv layers or 0, label)
    ("arcface", "clean", 0, "ArcFace only, clean views"),
    ("coreface", "clean", 0, "ArcFace + CoReFace, clean views"),
    ("arcface", "archival", 0, "ArcFace only, archival views"),
    ("coreface", "archival", 0, "ArcFace + CoReFace, archival views"),
    ("arcface", "clean", -1, "ArcFace only, clean views, last {n} convs"),
    ("coreface", "clean", -1, "ArcFace + CoReFace, clean views, last {n} convs"),
]


def _runs(results: dict[str, Any], variant: str, domain: str, convs: int) -> list[dict[str, Any]]:
    return [
        r
        for r in results["runs"]
        if r["variant"] == variant
        and r["domain"] == domain
        and ((r["train_convs"] == 0) if convs == 0 else (r["train_convs"] > 0))
    ]


def _test_sets(results: dict[str, Any]) -> list[str]:
    return [k for k in results["shipped"] if k != "val"]


def _cell(values: Sequence[float], digits: int = 3) -> str:
    v = np.array(values)
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return (
        f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f} "
        f"({v.min():.{digits}f}-{v.max():.{digits}f})"
    )


def _table(results: dict[str, Any], metric: str, shipped_ci: bool = True) -> list[str]:
    sets = _test_sets(results)
    convs = results["config"]["conv_layers"]
    lines = [
        "| model | seeds | " + " | ".join(sets) + " |",
        "|---|---:|" + "---:|" * len(sets),
    ]
    shipped = results["shipped"]
    if metric == "mean_tar":
        cells = [f"{shipped[s]['mean_tar']:.4f}" for s in sets]
    elif metric == "tar" and shipped_ci:
        cells = [
            f"{shipped[s]['tar']:.3f} ({shipped[s]['tar_ci'][0]:.3f}-{shipped[s]['tar_ci'][1]:.3f})"
            for s in sets
        ]
    else:
        cells = [f"{shipped[s]['accuracy']:.3f} ± {shipped[s]['accuracy_std']:.3f}" for s in sets]
    lines.append("| SFace as shipped | - | " + " | ".join(cells) + " |")
    for variant, domain, conv, label in ROWS:
        runs = _runs(results, variant, domain, conv)
        if not runs:
            continue
        digits = 4 if metric == "mean_tar" else 3
        cells = [_cell([r["metrics"][s][metric] for r in runs], digits) for s in sets]
        name = label.format(n=convs)
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
    return lines


def _targets(results: dict[str, Any], metric: str, label: str) -> list[str]:
    """The issue's two targets, judged on paired figures (every model on the same pairs)
    against the spread between seeds."""
    out = []
    for test, domain in (("lfw-held-out", "clean"), ("lfw-held-out-archival", "archival")):
        a = {r["seed"]: r["metrics"][test][metric] for r in _runs(results, "arcface", domain, 0)}
        c = {r["seed"]: r["metrics"][test][metric] for r in _runs(results, "coreface", domain, 0)}
        if not a or not c:
            continue
        spread = max(max(a.values()) - min(a.values()), max(c.values()) - min(c.values()))
        diff = float(np.mean(list(c.values())) - np.mean(list(a.values())))
        paired = [c[s] - a[s] for s in sorted(set(a) & set(c))]
        out.append(
            f"- {label}, {test}, {domain} views: CoReFace - ArcFace = {diff:+.4f} (per seed "
            + ", ".join(f"{d:+.4f}" for d in paired)
            + f"); seed spread (largest max-min of either) {spread:.4f}: "
            + ("**met**" if diff > spread else "**not met**")
        )
    shipped = results["shipped"].get("lfw-held-out-archival")
    if shipped:
        for variant in ("arcface", "coreface"):
            runs = _runs(results, variant, "archival", 0)
            if not runs:
                continue
            values = [r["metrics"]["lfw-held-out-archival"][metric] for r in runs]
            gain = float(np.mean(values)) - shipped[metric]
            spread = max(values) - min(values)
            beats = min(values) > shipped[metric] and gain > spread
            out.append(
                f"- {label}, lfw-held-out-archival, {variant} on archival views vs shipped: "
                f"{np.mean(values):.4f} vs {shipped[metric]:.4f} = {gain:+.4f} (per seed "
                + ", ".join(f"{t - shipped[metric]:+.4f}" for t in values)
                + f"); seed spread {spread:.4f}: "
                + ("**met**" if beats else "**not met**")
                + " (every seed above shipped and the mean gain above the spread)"
            )
    return out


def report(results: dict[str, Any]) -> str:
    far = results["config"]["far"]
    shipped = results["shipped"]
    lines = ["Test sets (pairs: all genuine and impostor pairs of the set):", ""]
    lines += [
        "| set | faces | people | no face found | genuine pairs | impostor pairs | acc. folds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    source = {"lfw-held-out": "lfw-held_out", "lfw-held-out-archival": "lfw-held_out"}
    for s in ["val", *_test_sets(results)]:
        m = shipped[s]
        missed = results["sets"][source.get(s, s if s != "val" else "lfw-val")]["missed"]
        lines.append(
            f"| {s} | {m['images']} | {m['identities']} | {missed} | {m['genuine_pairs']:,} "
            f"| {m['impostor_pairs']:,} | {m['folds']} |"
        )
    lines += [
        "",
        f"TAR at FAR {far:g} (shipped: 95 % interval over people; trained: mean ± sd "
        "over seeds (min-max)):",
        "",
    ]
    lines += _table(results, "tar")
    lines += [
        "",
        "Verification accuracy (balanced; threshold from the other folds of people; "
        "shipped: ± sd over folds; trained: mean ± sd over seeds (min-max)):",
        "",
    ]
    lines += _table(results, "accuracy")
    lines += [
        "",
        "Mean TAR over FAR <= 1e-2 (a finer, secondary measure: TAR at 1e-3 on 637 genuine "
        "pairs moves in steps of 0.0016):",
        "",
    ]
    lines += _table(results, "mean_tar", shipped_ci=False)
    lines += ["", "Grid on the val people (seed 0, clean views; the chosen point in bold):", ""]
    lines += [
        "| variant | lr | steps | val mean TAR, FAR <= 1e-2 | val TAR@1e-2 | val accuracy |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    v = shipped["val"]
    lines.append(
        f"| shipped | - | 0 | {v['mean_tar']:.4f} | {v['tar']:.3f} | {v['accuracy']:.3f} |"
    )
    for g in results["grid"]:
        chosen = results["chosen"][g["variant"]]
        bold = "**" if (g["lr"], g["steps"]) == (chosen["lr"], chosen["steps"]) else ""
        v = g["metrics"]["val"]
        lines.append(
            f"| {g['variant']} | {g['lr']:g} | {bold}{g['steps']}{bold} | {v['mean_tar']:.4f} "
            f"| {v['tar']:.3f} | {v['accuracy']:.3f} |"
        )
    lines += ["", "Targets (paired: every model is measured on the same pairs):", ""]
    lines += _targets(results, "tar", f"TAR@{far:g}")
    lines += _targets(results, "mean_tar", "mean TAR to 1e-2")
    t = results["timings"]
    head = [r["seconds_per_step"] for r in results["runs"] if r["train_convs"] == 0]
    conv = [r["seconds_per_step"] for r in results["runs"] if r["train_convs"] > 0]
    per_epoch = results["steps_per_epoch"]
    lines += ["", "Time on this machine:", ""]
    lines.append(
        f"- head only, cached: {np.mean(head):.2f} s/step (batch {results['config']['batch_size']}"
        f"), {per_epoch:.1f} steps per epoch of {results['fit_images']} faces = "
        f"{np.mean(head) * per_epoch:.0f} s/epoch"
    )
    if conv:
        lines.append(
            f"- last {results['config']['conv_layers']} convs + head, cached: "
            f"{np.mean(conv):.2f} s/step = {np.mean(conv) * per_epoch:.0f} s/epoch"
        )
    if t.get("front_image_views"):
        lines.append(
            f"- caching the frozen front (this run): {t['front_s']:.0f} s for "
            f"{t['front_image_views']:.0f} image views = "
            f"{t['front_s'] / t['front_image_views']:.3f} s each"
        )
    lines.append(f"- alignment {t['align_s']:.0f} s; whole run {t['total_s'] / 60:.1f} min")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    path = (
        Path(args[0])
        if args
        else Path(__file__).resolve().parents[1] / ".cache/coreface/results.json"
    )
    print(report(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
