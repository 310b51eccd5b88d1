"""Free text -> attribute evidence: "an older man with glasses and no beard" -> young absent,
male present, eyeglasses present, beard absent.

A small rule set finds the phrases and their negation; the text encoder (MiniLM) decides what
each phrase means, by its similarity to a few phrases per attribute and polarity, so close
variants of the listed phrases read right and unrelated words ("jacket", "press conference")
read as nothing:

1. The text is cut into clauses at punctuation and at joining words ("and", "with", "but",
   "who", "wearing", ...). "without" is not "with": it stays a negation.
2. A clause is negated from a negation word on ("no", "not", "without", "n't", "never"); a
   clause that starts with "or"/"nor" keeps the negation of the clause before it ("no beard or
   glasses").
3. Every run of one or two content words of a clause is compared with every attribute phrase;
   a run whose closest phrase reaches ``THRESHOLD`` reads as that attribute, with the phrase's
   polarity, flipped when the run is negated. An attribute read twice keeps the more
   confident reading.
4. A stated age ("in his 60s", "aged 45", "30 years old") reads as young below 35.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from facesearch_server.embedder.attributes.names import NAMES

Embed = Callable[[list[str]], Awaitable[np.ndarray]]

# Cosine a word run needs to its closest attribute phrase to count. Chosen on the phrase list
# below (tests/embedder/test_descriptions.py): unrelated words ("jacket", "conference", at most
# 0.47) stay below it; listed phrases and their inflections reach it.
THRESHOLD = 0.62
YOUNG_BELOW = 35

# attribute -> polarity -> phrases. Short phrases: runs are one or two words.
PHRASES: dict[str, dict[bool, tuple[str, ...]]] = {
    "male": {
        True: ("man", "male", "guy", "gentleman", "boy", "he", "his", "him"),
        False: ("woman", "female", "lady", "girl", "she", "her"),
    },
    "young": {
        True: ("young", "youthful", "teenager", "in his twenties", "young adult"),
        False: ("old", "older", "elderly", "middle-aged", "senior", "aged", "mature"),
    },
    "beard": {True: ("beard", "bearded", "full beard", "stubble"), False: ("clean-shaven",)},
    "mustache": {True: ("mustache", "moustache", "moustached"), False: ()},
    "goatee": {True: ("goatee",), False: ()},
    "eyeglasses": {True: ("glasses", "eyeglasses", "sunglasses", "spectacles"), False: ()},
    "bald": {True: ("bald", "bald head", "hairless head"), False: ()},
    "black_hair": {True: ("black hair", "dark hair", "black-haired"), False: ()},
    "blond_hair": {True: ("blond hair", "blonde", "blond", "fair hair"), False: ()},
    "brown_hair": {True: ("brown hair", "brunette", "brown-haired"), False: ()},
    "gray_hair": {True: ("gray hair", "grey hair", "white hair", "grey-haired"), False: ()},
    "hat": {True: ("hat", "cap", "wearing a hat", "beanie"), False: ()},
    "heavy_makeup": {True: ("heavy makeup", "makeup", "make-up"), False: ("no makeup",)},
    "smiling": {True: ("smiling", "smile", "grinning", "laughing"), False: ("serious", "frowning")},
}
assert set(PHRASES) == set(NAMES)

_JOINERS = (
    "and|but|with|who|which|that|has|have|having|is|are|was|were|wearing|wears|wear|"
    "plus|also|or|nor"
)
_SPLIT = re.compile(rf"([,;.!?]|\b(?:{_JOINERS})\b)")
_WORD = re.compile(r"[a-z][a-z'-]*|\d+s?")
_NEGATIONS = frozenset(
    {"no", "not", "without", "never", "non", "neither", "nor", "lacks", "lacking", "free"}
)
# Words that carry no attribute on their own (they may still be part of a two-word run).
_SKIP = frozenset(
    {
        "a",
        "an",
        "the",
        "very",
        "quite",
        "rather",
        "some",
        "slightly",
        "bit",
        "little",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "his",
        "her",
        "their",
        "its",
        "looks",
        "looking",
        "look",
        "appears",
        "seems",
        "person",
        "someone",
        "face",
        "photo",
        "picture",
        "image",
        "hair",
        "head",
        "eyes",
        "years",
        "year",
        "old-looking",
        "kind",
        "sort",
        "like",
        "wear",
    }
)
_AGE = re.compile(
    r"\b(?:aged?\s+(\d{1,2})|(\d{1,2})\s*(?:-\s*)?(?:years?|yrs?)(?:\s*-?\s*old)?|"
    r"(?:in\s+(?:his|her|their)\s+)?(\d)0s)\b"
)


@dataclass(frozen=True)
class Evidence:
    name: str
    present: bool
    confidence: float
    phrase: str


@dataclass(frozen=True)
class _Run:
    words: str
    negated: bool


def _is_negation(word: str) -> bool:
    return word in _NEGATIONS or word.endswith("n't")


def runs(text: str) -> list[_Run]:
    """The one- and two-word runs of content words of each clause, with their negation."""
    out: list[_Run] = []
    negated_before = dangling = False
    pieces = _SPLIT.split(text.lower())
    joiner = ""
    for piece in pieces:
        stripped = piece.strip()
        if _SPLIT.fullmatch(stripped or " "):
            joiner = stripped
            continue
        words = _WORD.findall(stripped)
        if not words:
            continue
        # "no beard or glasses": the clause after "or"/"nor" inherits the negation, and so
        # does one after a negation that had nothing to negate yet ("doesn't | wear glasses").
        negated = (joiner in {"or", "nor"} and negated_before) or dangling
        negated_before = negated
        dangling = False
        content: list[tuple[str, bool]] = []
        for word in words:
            if _is_negation(word):
                negated = negated_before = dangling = True
                continue
            content.append((word, negated))
            if word not in _SKIP:
                dangling = False
        for i, (word, neg) in enumerate(content):
            if word not in _SKIP:
                out.append(_Run(word, neg))
            if i + 1 < len(content):
                nxt, neg2 = content[i + 1]
                if word not in _SKIP or nxt not in _SKIP:
                    out.append(_Run(f"{word} {nxt}", neg or neg2))
        joiner = ""
    return out


def stated_age(text: str) -> Evidence | None:
    match = _AGE.search(text.lower())
    if match is None:
        return None
    age_s, years_s, decade_s = match.groups()
    age = int(age_s or years_s) if (age_s or years_s) else int(decade_s) * 10
    if not 10 <= age <= 99:
        return None
    return Evidence("young", age < YOUNG_BELOW, 1.0, match.group(0).strip())


class DescriptionReader:
    """Reads attribute evidence from descriptions with a text encoder (``embed``: texts ->
    unit vectors). The attribute phrases are encoded once, on first use."""

    def __init__(self, embed: Embed, threshold: float = THRESHOLD) -> None:
        self.embed = embed
        self.threshold = threshold
        self._phrases: list[tuple[str, bool, str]] = [
            (name, polarity, phrase)
            for name, by_polarity in PHRASES.items()
            for polarity, phrases in by_polarity.items()
            for phrase in phrases
        ]
        self._matrix: np.ndarray | None = None
        self._lock = asyncio.Lock()

    async def _phrase_matrix(self) -> np.ndarray:
        async with self._lock:
            if self._matrix is None:
                self._matrix = await self.embed([p for _, _, p in self._phrases])
        return self._matrix

    async def read_many(self, texts: list[str]) -> list[list[Evidence]]:
        matrix = await self._phrase_matrix()
        per_text = [runs(t) for t in texts]
        flat = sorted({r.words for rs in per_text for r in rs})
        sims: dict[str, np.ndarray] = {}
        if flat:
            vectors = await self.embed(flat)
            sims = dict(zip(flat, vectors @ matrix.T, strict=True))
        return [self._evidence(text, rs, sims) for text, rs in zip(texts, per_text, strict=True)]

    def _evidence(self, text: str, rs: list[_Run], sims: dict[str, np.ndarray]) -> list[Evidence]:
        best: dict[str, Evidence] = {}
        order: list[str] = []
        age = stated_age(text)
        if age is not None:
            best[age.name] = age
            order.append(age.name)
        for run in rs:
            row = sims[run.words]
            j = int(np.argmax(row))
            confidence = float(row[j])
            if confidence < self.threshold:
                continue
            name, polarity, _ = self._phrases[j]
            found = Evidence(name, polarity != run.negated, round(confidence, 4), run.words)
            if name not in best:
                order.append(name)
            if name not in best or confidence > best[name].confidence:
                best[name] = found
        return [best[n] for n in order]


def query_vector(evidence: list[Evidence]) -> np.ndarray:
    """Weights over a stored attribute vector [log p, log (1-p)]: 1/m per reading (names.py)."""
    n = len(NAMES)
    q = np.zeros(2 * n, dtype=np.float32)
    for e in evidence:
        i = NAMES.index(e.name)
        q[i if e.present else n + i] += 1.0 / len(evidence)
    return q
