"""Context text read from real photos (LFW, ../shared/data) carrying it the way archives do:
each source read and named, the order between them, transcripts with their timecodes, and
files that cannot be read reported, never fatal. No services."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from facesearch import cli, flows
from facesearch.context_text import (
    MAX_CAPTION_BYTES,
    context_of,
    read_subtitles,
    subtitles_for,
)
from facesearch.core.indexing import caption_of

from .context_fixtures import (
    copy_to,
    lfw_photos,
    write_exif,
    write_iptc,
    write_json,
    write_srt,
    write_vtt,
    write_xmp,
)


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    return copy_to(lfw_photos("Andre_Agassi", 1)[0], tmp_path)


def test_iptc_caption_headline_and_keywords(photo: Path) -> None:
    write_iptc(
        photo,
        caption="Andre Agassi serves at Wimbledon — Centre Court, Zürich-born umpire watching",
        headline="Agassi through to the final",
        keywords=["tennis", "Wimbledon", "tennis"],
    )
    got = context_of(photo)
    assert got.caption == (
        "Andre Agassi serves at Wimbledon — Centre Court, Zürich-born umpire watching"
    )
    assert got.caption_source == "iptc"
    assert got.headline == "Agassi through to the final"
    assert got.keywords == ("tennis", "Wimbledon")  # repeats dropped
    assert got.metadata() == {
        "caption": got.caption,
        "caption_source": "iptc",
        "headline": "Agassi through to the final",
        "keywords": ["tennis", "Wimbledon"],
    }


def test_xmp_description_default_language_headline_and_subject(photo: Path) -> None:
    write_xmp(
        photo,
        description={"de": "Agassi beim Aufschlag", "x-default": "Agassi serving on grass"},
        headline="Final day",
        subject=["tennis", "grass court"],
    )
    got = context_of(photo)
    assert (got.caption, got.caption_source) == ("Agassi serving on grass", "xmp")
    assert got.headline == "Final day"
    assert got.keywords == ("tennis", "grass court")


def test_exif_image_description(photo: Path) -> None:
    write_exif(photo, "Agassi signing autographs for fans")
    got = context_of(photo)
    assert (got.caption, got.caption_source) == ("Agassi signing autographs for fans", "exif")
    assert got.headline is None and got.keywords == ()


def test_sidecar_txt_and_json(tmp_path: Path) -> None:
    first, second = (copy_to(p, tmp_path) for p in lfw_photos("Andre_Agassi", 2))
    first.with_suffix(".txt").write_text("a tennis player at the net\nsecond line ignored\n")
    write_json(
        second,
        {
            "description": "press conference after the match",
            "title": "Agassi speaks",
            "tags": "tennis, press",
        },
    )
    assert (context_of(first).caption, context_of(first).caption_source) == (
        "a tennis player at the net",
        "txt",
    )
    got = context_of(second)
    assert (got.caption, got.caption_source) == ("press conference after the match", "json")
    assert got.headline == "Agassi speaks" and got.keywords == ("tennis", "press")
    assert caption_of(second) == "press conference after the match"


def test_a_sidecar_overrides_the_file_and_iptc_beats_xmp_and_exif(photo: Path) -> None:
    write_exif(photo, "exif text")
    write_xmp(photo, description={"x-default": "xmp text"})
    assert context_of(photo).caption_source == "xmp"
    write_iptc(photo, caption="iptc text", keywords=["tennis"])
    got = context_of(photo)
    assert (got.caption, got.caption_source) == ("iptc text", "iptc")
    assert [s.source for s in got.sources] == ["iptc", "xmp", "exif"]
    photo.with_suffix(".txt").write_text("the operator's caption\n")
    assert context_of(photo).caption_source == "txt"
    assert context_of(photo).keywords == ("tennis",)  # keywords still gathered from the file


def test_a_headline_or_keywords_stand_in_for_a_missing_description(photo: Path) -> None:
    write_iptc(photo, keywords=["tennis", "final"])
    assert (context_of(photo).caption, context_of(photo).caption_source) == (
        "tennis, final",
        "iptc",
    )
    write_xmp(photo, headline="Agassi wins")
    assert (context_of(photo).caption, context_of(photo).caption_source) == (
        "Agassi wins",
        "xmp",
    )


def test_srt_transcript_keeps_timecodes(photo: Path) -> None:
    sidecar = write_srt(
        photo,
        [
            ("00:00:01,500", "00:00:04,000", "Welcome back to <i>Centre Court</i>."),
            ("00:00:04,250", "00:01:02,125", "Agassi serves\nfor the match."),
        ],
    )
    transcript = read_subtitles(sidecar)
    assert transcript.source == "srt"
    assert [(c.start_s, c.end_s, c.text) for c in transcript.cues] == [
        (1.5, 4.0, "Welcome back to Centre Court."),
        (4.25, 62.125, "Agassi serves for the match."),
    ]
    # A face track on screen from 3 s to 5 s hears both cues; from 10 s only the second.
    assert transcript.text_between(3.0, 5.0) == (
        "Welcome back to Centre Court. Agassi serves for the match."
    )
    assert transcript.text_between(10.0, 11.0) == "Agassi serves for the match."
    assert transcript.text_between(0.0, 1.0) == ""
    got = context_of(photo)
    assert got.caption_source == "srt" and got.transcript == transcript
    assert got.caption == "Welcome back to Centre Court. Agassi serves for the match."


def test_webvtt_transcript_keeps_timecodes_and_speakers(photo: Path) -> None:
    write_vtt(
        photo,
        [
            ("00:00:00.000", "00:00:02.500", "<v Reporter>Agassi at the press conference"),
            ("00:00:02.500", "00:00:05.000", "talking about the final"),
        ],
    )
    transcript = subtitles_for(photo)
    assert transcript is not None and transcript.source == "webvtt"
    assert [(c.start_s, c.end_s, c.speaker) for c in transcript.cues] == [
        (0.0, 2.5, "Reporter"),
        (2.5, 5.0, None),
    ]
    assert context_of(photo).caption_source == "webvtt"


def test_a_photo_with_no_context_has_no_caption(photo: Path) -> None:
    got = context_of(photo)
    assert got.caption is None and got.caption_source is None and got.metadata() == {}
    assert got.problems == ()
    assert caption_of(photo) is None


def test_unreadable_context_is_reported_not_fatal(tmp_path: Path, photo: Path) -> None:
    photo.with_suffix(".json").write_text("{not json")
    photo.with_suffix(".srt").write_text("no cues here\n")
    got = context_of(photo)
    assert got.caption is None
    assert any("not JSON" in p for p in got.problems)
    assert any("not a valid SRT" in p for p in got.problems)
    fake = tmp_path / "broken.jpg"
    fake.write_bytes(b"not an image at all")
    fake.with_suffix(".txt").write_text("still captioned\n")
    broken = context_of(fake)
    assert broken.caption == "still captioned"
    assert any("embedded metadata not read" in p for p in broken.problems)
    with pytest.raises(ValueError, match=r"subtitles are \.srt or \.vtt"):
        read_subtitles(photo)


def test_a_long_caption_is_cut_on_a_character_boundary(photo: Path) -> None:
    write_xmp(photo, description={"x-default": "é" * 3000})
    caption = context_of(photo).caption
    assert caption is not None and caption == "é" * (MAX_CAPTION_BYTES // 2)
    assert len(caption.encode()) <= MAX_CAPTION_BYTES


def test_the_index_summary_says_how_many_had_no_caption() -> None:
    summary = flows.IndexSummary(
        images=3,
        images_with_faces=3,
        caption_sources={"iptc": 1, "txt": 1},
        without_caption=1,
        context_problems=[("a.jpg", "a.json: not JSON (Expecting value, line 1)")],
    )
    out = io.StringIO()
    cli.print_index_summary(summary, 3, Path("journal"), out)
    text = out.getvalue()
    assert "captions: 1 iptc, 1 txt; 1 image(s) with faces had no context text" in text
    assert "context not read for a.jpg: a.json: not JSON" in text
