"""A news-photo archive whose "person X in context Y" answers are known: LFW photos with a
caption written into their IPTC or XMP fields (exiv2 through pyexiv2, as the SDK's test fixtures
write them; facesearch.context_text reads them back with Pillow).

LFW has no captions, so the contexts are written here: CONTEXTS holds scenes a news archive
shows, each in four wordings. A photo's caption is one of wordings 1-3 of its scene; the query
for a scene is wording 0, which no caption uses, so a query matches its answers by meaning, not
by identical words (MiniLM paraphrase similarity). A caption is framed as a wire caption is
(LFW's photos are Yahoo News wire photos): the person's name, the scene, a place, a date and the
agency, e.g. "Colin Powell takes questions from reporters at a news briefing in Madrid,
12 March 2003. (AP Photo)". The name is on all of a person's photos and the rest of the frame
is drawn at random, so only the scene tells the right photos apart, and the frame dilutes the
scene's share of the caption's vector as it does in real captions. The query names no one: the
person comes from the face (``--person``), as in Id-CLIP's task.

Each person gets ``contexts_per_person`` scenes drawn from CONTEXTS (persons share scenes, so
another person in the same scene is the likely wrong answer) and their photos split evenly
among them. The first ``labelled_per_person`` photos of a person (spread over their scenes) go
under ``labelled/<person>/`` (indexed with the folder as the label, as an operator labels a few
references), the rest under ``unlabelled/<person>/`` (indexed without labels): an archive
where most faces of a person are not labelled, as most archives are.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyexiv2

from harness.shared_data import shared_data_dir

# Scene -> four wordings; wording 0 is the query, 1-3 are captions.
CONTEXTS: dict[str, tuple[str, str, str, str]] = {
    "podium": (
        "giving a speech at a podium",
        "speaks from the lectern during an address to delegates",
        "delivers remarks at a podium in front of microphones",
        "addresses the audience from behind a lectern",
    ),
    "handshake": (
        "shaking hands with a foreign leader",
        "greets the visiting head of state with a handshake",
        "shakes hands with a visiting minister before talks",
        "clasps hands with a foreign counterpart for the cameras",
    ),
    "press": (
        "answering questions at a press conference",
        "takes questions from reporters at a news briefing",
        "talks to journalists during a press briefing",
        "responds to a reporter's question at a news conference",
    ),
    "tennis": (
        "playing tennis in a match",
        "returns a serve during a tennis match on centre court",
        "hits a forehand in the second set of the tennis final",
        "serves during a tennis tournament match",
    ),
    "premiere": (
        "arriving at a film premiere on the red carpet",
        "poses for photographers on the red carpet at the movie premiere",
        "walks the red carpet at the opening night of a film",
        "arrives for the premiere of a new movie",
    ),
    "airport": (
        "arriving at the airport",
        "steps off the plane on arrival at the airport",
        "is welcomed on the tarmac after landing",
        "descends the aircraft stairs at the airport",
    ),
    "parliament": (
        "during a debate in parliament",
        "listens during a parliamentary session",
        "speaks in the chamber during a debate of the assembly",
        "sits in parliament as lawmakers vote on the budget",
    ),
    "award": (
        "receiving an award at a ceremony",
        "holds up the trophy after winning the award",
        "accepts a prize on stage at the awards ceremony",
        "is honoured with a medal at a gala ceremony",
    ),
    "troops": (
        "visiting soldiers at a military base",
        "meets troops during a visit to an army base",
        "reviews soldiers on parade at the barracks",
        "talks with servicemen at a military camp",
    ),
    "summit": (
        "at an international summit meeting",
        "attends the opening session of the summit of world leaders",
        "arrives for the summit talks with other heads of government",
        "poses for the family photo at the leaders' summit",
    ),
    "interview": (
        "giving a television interview",
        "speaks during an interview in a television studio",
        "is interviewed on a TV talk show",
        "answers questions on a television programme",
    ),
    "campaign": (
        "campaigning at an election rally",
        "waves to supporters at a campaign rally",
        "speaks to cheering supporters at an election event",
        "greets voters while campaigning for the election",
    ),
}
QUERY_WORDING = 0
PLACES = ("Washington", "London", "Madrid", "Brussels", "Paris", "Moscow", "Tokyo", "Berlin")
AGENCIES = ("(AP Photo)", "(REUTERS)", "(AFP Photo)", "(EPA)")
MONTHS = ("January", "March", "May", "June", "September", "November")


@dataclass(frozen=True)
class Frame:
    """What a wire caption says beside the person and the scene: where, when, which agency."""

    place: str
    day: int
    month: str
    year: int
    agency: str


@dataclass(frozen=True)
class Photo:
    """One photo of the archive: its media id (``labelled|unlabelled/person/file``), scene,
    caption and the caption's frame."""

    media_id: str
    person: str
    context: str
    caption: str
    source: str  # "iptc" or "xmp": the field written
    frame: Frame


@dataclass(frozen=True)
class Query:
    """Person X in context Y, and the media ids that answer it (X's photos showing Y)."""

    person: str
    context: str
    text: str
    relevant: frozenset[str]


def plan(
    photos_of: dict[str, Sequence[str]],
    contexts_per_person: int,
    labelled_per_person: int,
    seed: int = 0,
) -> tuple[list[Photo], list[Query]]:
    """Scenes and captions for ``photos_of`` (person -> file names, LFW layout) and the
    queries with their answers: one per (person, scene). Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    names = sorted(CONTEXTS)
    if not 1 <= contexts_per_person <= len(names):
        raise ValueError(f"contexts_per_person must be 1..{len(names)}")
    photos: list[Photo] = []
    queries: list[Query] = []
    for person in sorted(photos_of):
        files = sorted(photos_of[person])
        if len(files) < contexts_per_person:
            raise ValueError(f"{person} has {len(files)} photos, fewer than the scenes asked")
        scenes = [names[i] for i in rng.choice(len(names), contexts_per_person, replace=False)]
        order = rng.permutation(len(files))
        answers: dict[str, set[str]] = {s: set() for s in scenes}
        for slot, i in enumerate(order):
            scene = scenes[slot % contexts_per_person]
            wording = 1 + (slot // contexts_per_person) % 3
            folder = "labelled" if slot < labelled_per_person else "unlabelled"
            media_id = f"{folder}/{person}/{files[i]}"
            source = "iptc" if slot % 2 == 0 else "xmp"
            frame = draw_frame(rng)
            caption = wire_caption(person, CONTEXTS[scene][wording], frame)
            photos.append(Photo(media_id, person, scene, caption, source, frame))
            answers[scene].add(media_id)
        queries += [
            Query(person, s, CONTEXTS[s][QUERY_WORDING], frozenset(answers[s])) for s in scenes
        ]
    return photos, queries


def draw_frame(rng: np.random.Generator) -> Frame:
    """A random place, date and agency."""
    place = PLACES[rng.integers(len(PLACES))]
    day, month = int(rng.integers(1, 29)), MONTHS[rng.integers(len(MONTHS))]
    year = int(rng.integers(2000, 2005))
    agency = AGENCIES[rng.integers(len(AGENCIES))]
    return Frame(place, day, month, year, agency)


def display_name(person: str) -> str:
    """The person as a caption writes them: LFW's folder name with spaces."""
    return person.replace("_", " ")


def wire_caption(person: str, scene: str, frame: Frame) -> str:
    """``scene`` framed as a wire caption: who, where, when, which agency."""
    f = frame
    return f"{display_name(person)} {scene} in {f.place}, {f.day} {f.month} {f.year}. {f.agency}"


def write(photos: Sequence[Photo], source_root: Path, out: Path) -> Path:
    """Copies of the photos of ``source_root`` (LFW layout) under ``out`` at their media ids,
    each with its caption written into the IPTC Caption-Abstract or XMP dc:description."""
    for photo in photos:
        target = out / photo.media_id
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source_root / photo.person / Path(photo.media_id).name, target)
        with pyexiv2.Image(str(target)) as image:
            if photo.source == "iptc":
                image.modify_iptc({"Iptc.Application2.Caption": photo.caption})
            else:
                image.modify_xmp({"Xmp.dc.description": {'lang="x-default"': photo.caption}})
    return out


def lfw_persons(lfw: Path, persons: int, min_photos: int) -> dict[str, list[str]]:
    """The first ``persons`` LFW persons (by name) with at least ``min_photos`` photos."""
    out: dict[str, list[str]] = {}
    for folder in sorted(p for p in lfw.iterdir() if p.is_dir()):
        files = sorted(p.name for p in folder.glob("*.jpg"))
        if len(files) >= min_photos:
            out[folder.name] = files
        if len(out) == persons:
            break
    return out


def chosen_lfw(persons: int, photos_per_person: int) -> tuple[Path, dict[str, list[str]]]:
    """The LFW folder of ../shared/data and the first ``photos_per_person`` photos of each of
    the first ``persons`` persons with that many (lfw_persons); exits when the data is absent."""
    data = shared_data_dir()
    if data is None:
        raise SystemExit("needs ../shared/data/lfw")
    lfw = data / "lfw" / "lfw"
    found = lfw_persons(lfw, persons, photos_per_person)
    return lfw, {p: files[:photos_per_person] for p, files in found.items()}
