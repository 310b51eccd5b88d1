"""The context text an archive already carries, read at indexing (Id-CLIP's "context").

News photos carry their caption inside the file: IPTC (Caption-Abstract, Headline, Keywords),
XMP (dc:description, photoshop:Headline, dc:subject) and EXIF ImageDescription, read here
through Pillow's own readers (IptcImagePlugin.getiptcinfo, Image.getxmp, Image.getexif).
Archives also keep sidecar files beside a photo: ``<photo>.txt`` (its first line),
``<photo>.json`` (SIDECAR_JSON_KEYS) and subtitles or transcripts (``.srt``, ``.vtt``, parsed
with webvtt-py into timecoded cues, which the video ingestion will cut per face track with
``Transcript.text_between``; a photo gets the whole transcript as its caption). A sidecar is
named ``photo.jpg.txt`` or ``photo.txt`` (likewise .json, .srt, .vtt).

One caption per photo is kept, from the first source that has one, in CAPTION_ORDER: a
sidecar first (what an operator wrote for this archive overrides what the file carries), then
the file's own fields, the transcript last. When no source has a description, the headline or
else the keywords stand in. Which source it came from is stored beside it (``caption_source``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import webvtt
from PIL import Image, IptcImagePlugin

# Source names, as stored in the metadata field ``caption_source``.
TXT, JSON, IPTC, XMP, EXIF, SRT, WEBVTT = "txt", "json", "iptc", "xmp", "exif", "srt", "webvtt"
CAPTION_ORDER = (TXT, JSON, IPTC, XMP, EXIF, SRT, WEBVTT)

# Bounds on what is stored (the retriever holds 16 KiB of metadata per face, 4 KiB a string):
# IPTC's own limits for a caption (2,000 bytes), a headline (256) and a keyword (64).
MAX_CAPTION_BYTES = 2000
MAX_HEADLINE_BYTES = 256
MAX_KEYWORD_BYTES = 64
MAX_KEYWORDS = 32

# IPTC-IIM record 2 datasets (IPTC IIM 4.2, section 6).
_IPTC_CAPTION, _IPTC_HEADLINE, _IPTC_KEYWORDS = (2, 120), (2, 105), (2, 25)
_IPTC_CHARSET = (1, 90)  # "ESC % G" declares UTF-8
_EXIF_IMAGE_DESCRIPTION = 0x010E

# Keys read from a sidecar .json (the first present of each group).
SIDECAR_JSON_KEYS = {
    "caption": ("caption", "description"),
    "headline": ("headline", "title"),
    "keywords": ("keywords", "tags"),
}


@dataclass(frozen=True)
class Cue:
    """One timed caption of a subtitle or transcript file, in seconds from the start."""

    start_s: float
    end_s: float
    text: str
    speaker: str | None = None


@dataclass(frozen=True)
class Transcript:
    """The cues of one subtitle/transcript file (``source`` SRT or WEBVTT), in file order."""

    source: str
    path: Path
    cues: tuple[Cue, ...]

    def text_between(self, start_s: float, end_s: float) -> str:
        """The words spoken while [start_s, end_s] is on screen (a face track's span): every
        cue that overlaps it, in order."""
        return " ".join(c.text for c in self.cues if c.start_s < end_s and c.end_s > start_s)

    @property
    def text(self) -> str:
        return " ".join(c.text for c in self.cues)


@dataclass(frozen=True)
class SourceText:
    """What one source says about a photo."""

    source: str
    description: str | None = None
    headline: str | None = None
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContextText:
    """A photo's context: the caption kept, where it came from, the headline and keywords
    (from every source), the transcript when there is one, and what could not be read."""

    caption: str | None = None
    caption_source: str | None = None
    headline: str | None = None
    keywords: tuple[str, ...] = ()
    transcript: Transcript | None = None
    sources: tuple[SourceText, ...] = ()
    problems: tuple[str, ...] = field(default=())

    def metadata(self) -> dict[str, str | list[str]]:
        """The metadata fields stored with each face of the photo (none when it has none)."""
        out: dict[str, str | list[str]] = {}
        if self.caption:
            out["caption"] = self.caption
            out["caption_source"] = self.caption_source or ""
        if self.headline:
            out["headline"] = self.headline
        if self.keywords:
            out["keywords"] = list(self.keywords)
        return out


def context_of(path: Path) -> ContextText:
    """Everything ``path`` and its sidecars say, reduced to one caption (CAPTION_ORDER)."""
    found: list[SourceText] = []
    problems: list[str] = []
    found.extend(_sidecar_txt(path))
    found.extend(_sidecar_json(path, problems))
    found.extend(embedded_text(path, problems))
    transcript = subtitles_for(path, problems)
    if transcript is not None and transcript.text:
        found.append(SourceText(transcript.source, description=transcript.text))
    found.sort(key=lambda s: CAPTION_ORDER.index(s.source))
    caption, source = _first(found, "description")
    headline, headline_source = _first(found, "headline")
    keywords = _bounded_keywords(k for s in found for k in s.keywords)
    if caption is None and headline is not None:
        caption, source = headline, headline_source
    if caption is None and keywords:
        caption = ", ".join(keywords)
        source = next(s.source for s in found if s.keywords)
    return ContextText(
        caption=_bounded(caption, MAX_CAPTION_BYTES),
        caption_source=source,
        headline=_bounded(headline, MAX_HEADLINE_BYTES),
        keywords=keywords,
        transcript=transcript,
        sources=tuple(found),
        problems=tuple(problems),
    )


def _first(found: list[SourceText], attr: str) -> tuple[str | None, str | None]:
    for s in found:
        value = getattr(s, attr)
        if value:
            return value, s.source
    return None, None


# ---------------------------------------------------------------- inside the image file


def embedded_text(path: Path, problems: list[str] | None = None) -> list[SourceText]:
    """The IPTC, XMP and EXIF text inside the image file (only the header is read)."""
    out: list[SourceText] = []
    try:
        with Image.open(path) as im:
            out.extend(s for s in (_iptc(im), _xmp(im), _exif(im)) if s is not None)
    except Exception as exc:
        # Metadata is best effort: a file Pillow cannot read is still sent to the embedder,
        # which reports it if it is not an image at all.
        if problems is not None:
            problems.append(f"{path.name}: embedded metadata not read ({type(exc).__name__})")
    return out


def _iptc(im: Image.Image) -> SourceText | None:
    info = IptcImagePlugin.getiptcinfo(im)  # type: ignore[arg-type]
    if not info:
        return None
    charset = info.get(_IPTC_CHARSET)
    utf8 = isinstance(charset, bytes) and b"%G" in charset

    def text(key: tuple[int, int]) -> list[str]:
        raw = info.get(key)
        values = raw if isinstance(raw, list) else [raw] if raw else []
        return [t for v in values if (t := _decode(v, utf8))]

    caption, headline = text(_IPTC_CAPTION), text(_IPTC_HEADLINE)
    return _source(
        IPTC,
        caption[0] if caption else None,
        headline[0] if headline else None,
        text(_IPTC_KEYWORDS),
    )


def _decode(raw: bytes, utf8: bool) -> str:
    # IPTC text without the UTF-8 declaration is most often UTF-8 anyway, else Latin-1.
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        if utf8:
            return raw.decode("utf-8", errors="replace").strip()
        return raw.decode("latin-1").strip()


def _xmp(im: Image.Image) -> SourceText | None:
    xmp = im.getxmp()
    if not xmp:
        return None
    # getxmp names elements and attributes by their local name: dc:description is
    # "description", photoshop:Headline "Headline", dc:subject "subject".
    descriptions = list(_values(list(_find(xmp, "description"))))
    headlines = list(_values(list(_find(xmp, "Headline"))))
    return _source(
        XMP,
        descriptions[0] if descriptions else None,
        headlines[0] if headlines else None,
        list(_values(list(_find(xmp, "subject")))),
    )


def _find(node: Any, key: str) -> Iterator[Any]:
    """Every value stored under ``key`` anywhere in getxmp's nested dicts and lists."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            else:
                yield from _find(v, key)
    elif isinstance(node, list):
        for v in node:
            yield from _find(v, key)


def _values(node: Any) -> Iterator[str]:
    """The text of an XMP property: a plain value, a language alternative (rdf:Alt, the
    x-default entry first) or a list (rdf:Bag / rdf:Seq)."""
    if isinstance(node, str):
        if node.strip():
            yield node.strip()
    elif isinstance(node, list):
        for v in node:
            yield from _values(v)
    elif isinstance(node, dict):
        if "li" in node:
            items = node["li"] if isinstance(node["li"], list) else [node["li"]]
            items = sorted(items, key=lambda i: not (isinstance(i, dict) and _default_lang(i)))
            yield from _values(items)
        elif "text" in node:
            yield from _values(node["text"])
        else:
            for kind in ("Alt", "Bag", "Seq"):
                if kind in node:
                    yield from _values(node[kind])


def _default_lang(item: dict[str, Any]) -> bool:
    return item.get("lang") == "x-default"


def _exif(im: Image.Image) -> SourceText | None:
    value = im.getexif().get(_EXIF_IMAGE_DESCRIPTION)
    if isinstance(value, bytes):
        value = _decode(value, False)
    # Cameras write blank or placeholder descriptions ("OLYMPUS DIGITAL CAMERA"); a blank
    # one is dropped here, a placeholder is kept (it cannot be told from a short caption).
    return _source(EXIF, value.strip() if isinstance(value, str) else None, None, [])


def _source(
    name: str, description: str | None, headline: str | None, keywords: Iterable[str]
) -> SourceText | None:
    words = tuple(k for k in keywords if k)
    if not (description or headline or words):
        return None
    return SourceText(name, description or None, headline or None, words)


# ---------------------------------------------------------------- sidecars


def sidecars(path: Path, suffix: str) -> list[Path]:
    """``photo.jpg<suffix>`` then ``photo<suffix>``, those that exist."""
    names = (path.with_name(path.name + suffix), path.with_suffix(suffix))
    return [p for p in dict.fromkeys(names) if p.is_file()]


def _sidecar_txt(path: Path) -> list[SourceText]:
    for sidecar in sidecars(path, ".txt"):
        lines = sidecar.read_text(errors="replace").strip().splitlines()
        if lines and lines[0].strip():
            return [SourceText(TXT, description=lines[0].strip())]
    return []


def _sidecar_json(path: Path, problems: list[str]) -> list[SourceText]:
    for sidecar in sidecars(path, ".json"):
        try:
            doc = json.loads(sidecar.read_text(errors="replace"))
        except json.JSONDecodeError as exc:
            problems.append(f"{sidecar.name}: not JSON ({exc.msg}, line {exc.lineno})")
            continue
        if not isinstance(doc, dict):
            problems.append(f"{sidecar.name}: not a JSON object")
            continue
        got = {
            name: next((doc[k] for k in keys if doc.get(k)), None)
            for name, keys in SIDECAR_JSON_KEYS.items()
        }
        words = got["keywords"]
        if isinstance(words, str):
            words = [w.strip() for w in words.split(",")]
        keywords = [str(w).strip() for w in words] if isinstance(words, list) else []
        text = {n: v.strip() if isinstance(v, str) else None for n, v in got.items()}
        found = _source(JSON, text["caption"], text["headline"], keywords)
        return [found] if found else []
    return []


def read_subtitles(path: Path) -> Transcript:
    """The cues of an SRT or WebVTT file (by its suffix), text without markup; raises
    ValueError saying what is wrong with a file that is neither."""
    suffix = path.suffix.lower()
    if suffix not in (".srt", ".vtt"):
        raise ValueError(f"{path.name}: subtitles are .srt or .vtt files")
    try:
        captions = webvtt.from_srt(str(path)) if suffix == ".srt" else webvtt.read(str(path))
    except (webvtt.errors.MalformedFileError, webvtt.errors.MalformedCaptionError) as exc:
        raise ValueError(f"{path.name}: not a valid {suffix[1:].upper()} file ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path.name}: not UTF-8 text") from exc
    cues = tuple(
        Cue(_seconds(c.start_time), _seconds(c.end_time), " ".join(c.text.split()), c.voice)
        for c in captions
        if c.text.strip()
    )
    return Transcript(SRT if suffix == ".srt" else WEBVTT, path, cues)


def _seconds(t: Any) -> float:
    return t.hours * 3600 + t.minutes * 60 + t.seconds + t.milliseconds / 1000


def subtitles_for(path: Path, problems: list[str] | None = None) -> Transcript | None:
    """The subtitle/transcript sidecar of a photo or video (SRT first, then WebVTT)."""
    for suffix in (".srt", ".vtt"):
        for sidecar in sidecars(path, suffix):
            try:
                return read_subtitles(sidecar)
            except ValueError as exc:
                if problems is not None:
                    problems.append(str(exc))
    return None


# ---------------------------------------------------------------- bounds


def _bounded(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    raw = text.encode()
    # Cut on a character boundary.
    return raw[:limit].decode(errors="ignore").strip() if len(raw) > limit else text


def _bounded_keywords(words: Iterable[str]) -> tuple[str, ...]:
    out: dict[str, None] = {}
    for w in words:
        w = _bounded(w.strip(), MAX_KEYWORD_BYTES) or ""
        if w and w.casefold() not in {o.casefold() for o in out}:
            out[w] = None
        if len(out) == MAX_KEYWORDS:
            break
    return tuple(out)
