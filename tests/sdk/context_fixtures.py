"""Real photos carrying context text, written the way archives carry it: IPTC, XMP and EXIF
inside the file (written with exiv2 through pyexiv2, independent of the Pillow readers under
test), sidecar .txt/.json, and SRT/WebVTT transcripts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyexiv2
import pytest

from harness.shared_data import shared_data_dir


def lfw_photos(person: str, count: int, skip: int = 0) -> list[Path]:
    """``count`` LFW photos of ``person`` from ../shared/data (a clone without it skips; CI,
    where skipping fails, must have it)."""
    data = shared_data_dir()
    if data is None:
        pytest.skip("needs ../shared/data (the LFW photos); absent in this clone")
    photos = sorted((data / "lfw" / "lfw" / person).glob("*.jpg"))[skip : skip + count]
    assert len(photos) == count, f"expected {count} photos of {person} in {data}"
    return photos


def copy_to(photo: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(photo, folder / photo.name))


def write_iptc(
    path: Path, caption: str | None = None, headline: str | None = None, keywords: list[str] = ()
) -> None:
    fields: dict[str, object] = {}
    if caption is not None:
        fields["Iptc.Application2.Caption"] = caption
    if headline is not None:
        fields["Iptc.Application2.Headline"] = headline
    if keywords:
        fields["Iptc.Application2.Keywords"] = list(keywords)
    with pyexiv2.Image(str(path)) as image:
        image.modify_iptc(fields)


def write_xmp(
    path: Path,
    description: dict[str, str] | None = None,
    headline: str | None = None,
    subject: list[str] = (),
) -> None:
    """``description``: language -> text (rdf:Alt), e.g. {"x-default": "...", "de": "..."}."""
    fields: dict[str, object] = {}
    if description:
        fields["Xmp.dc.description"] = {f'lang="{k}"': v for k, v in description.items()}
    if headline is not None:
        fields["Xmp.photoshop.Headline"] = headline
    if subject:
        fields["Xmp.dc.subject"] = list(subject)
    with pyexiv2.Image(str(path)) as image:
        image.modify_xmp(fields)


def write_exif(path: Path, description: str) -> None:
    with pyexiv2.Image(str(path)) as image:
        image.modify_exif({"Exif.Image.ImageDescription": description})


def write_json(path: Path, doc: object) -> Path:
    sidecar = path.with_suffix(".json")
    sidecar.write_text(json.dumps(doc))
    return sidecar


def write_srt(path: Path, cues: list[tuple[str, str, str]]) -> Path:
    """``cues``: (start, end, text) with SRT times "HH:MM:SS,mmm"."""
    body = "\n".join(f"{i}\n{s} --> {e}\n{t}\n" for i, (s, e, t) in enumerate(cues, 1))
    sidecar = path.with_suffix(".srt")
    sidecar.write_text(body)
    return sidecar


def write_vtt(path: Path, cues: list[tuple[str, str, str]]) -> Path:
    """``cues``: (start, end, text) with WebVTT times "HH:MM:SS.mmm"."""
    body = "WEBVTT\n\n" + "\n".join(f"{s} --> {e}\n{t}\n" for s, e, t in cues)
    sidecar = path.with_suffix(".vtt")
    sidecar.write_text(body)
    return sidecar
