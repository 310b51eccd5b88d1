"""Descriptions of a face written from its CelebA labels, in the style of MM-CelebA-HQ
captions (../shared/data/mm_celeba_hq_captions: "This man has black hair and a goatee. He is
young and smiling."): what a witness or an archivist would write, with the attributes a
description names and a few it does not (wavy hair, big nose), which the reader must skip."""

from __future__ import annotations

import numpy as np

# CelebA column -> words, for the features listed after "has" / "wears" / "is".
_HAS = {
    "Black_Hair": "black hair",
    "Blond_Hair": "blond hair",
    "Brown_Hair": "brown hair",
    "Gray_Hair": "gray hair",
    "Mustache": "a mustache",
    "Goatee": "a goatee",
    "Wavy_Hair": "wavy hair",
    "Big_Nose": "a big nose",
    "Bangs": "bangs",
    "Heavy_Makeup": "heavy makeup",
}
_WEARS = {"Eyeglasses": "eyeglasses", "Wearing_Hat": "a hat"}


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def describe(labels: dict[str, int], rng: np.random.Generator) -> str:
    """One description of a face from its 40 CelebA labels (+1/-1)."""
    male = labels["Male"] > 0
    noun = rng.choice(["man", "gentleman", "guy"]) if male else rng.choice(["woman", "lady"])
    pron = "He" if male else "She"
    has = [w for c, w in _HAS.items() if labels[c] > 0]
    if labels["Bald"] > 0:
        has.append("a bald head")
    if male:
        has.append("a beard" if labels["No_Beard"] < 0 else "no beard")
    rng.shuffle(has)
    sentences = [f"This {noun} has {_join(has)}." if has else f"This is a {noun}."]
    wears = [w for c, w in _WEARS.items() if labels[c] > 0]
    if wears:
        sentences.append(f"{pron} wears {_join(wears)}.")
    state = ["young" if labels["Young"] > 0 else rng.choice(["older", "middle-aged"])]
    if labels["Smiling"] > 0:
        state.append("smiling")
    sentences.append(f"{pron} is {_join(state)}.")
    order = list(range(len(sentences)))
    rng.shuffle(order)
    return " ".join(sentences[i] for i in order)
