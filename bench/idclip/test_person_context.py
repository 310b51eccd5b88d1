"""The person-in-context bench's archive plan, metrics and caption writing, on tiny inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.idclip import context_archive
from bench.idclip.context_cost import reader_ms
from bench.idclip.precision import bootstrap_ci, ceiling_at, precision_at
from facesearch.context_text import context_of
from harness.shared_data import shared_data

FILES = {"Ann_A": [f"Ann_A_{i:04d}.jpg" for i in range(6)], "Bo_B": ["b1.jpg", "b2.jpg"]}


def test_plan_answers_are_the_persons_photos_of_that_scene() -> None:
    photos, queries = context_archive.plan(FILES, contexts_per_person=2, labelled_per_person=3)
    assert (photos, queries) == context_archive.plan(FILES, 2, 3)  # deterministic
    assert len(photos) == 8 and len(queries) == 4
    by_id = {p.media_id: p for p in photos}
    for q in queries:
        expected = {p.media_id for p in photos if p.person == q.person and p.context == q.context}
        assert q.relevant == expected and len(expected) == (3 if q.person == "Ann_A" else 1)
        # The query is the one wording no caption uses; captions carry the scene's others.
        wordings = context_archive.CONTEXTS[q.context]
        assert q.text == wordings[0]
        for m in q.relevant:
            assert wordings[0] not in by_id[m].caption
            assert any(w in by_id[m].caption for w in wordings[1:])
            assert by_id[m].caption.startswith(q.person.replace("_", " "))
    labelled = [p for p in photos if p.media_id.startswith("labelled/")]
    assert sorted(p.person for p in labelled) == ["Ann_A"] * 3 + ["Bo_B"] * 2
    # Labelled photos are spread over the person's scenes.
    assert len({p.context for p in labelled if p.person == "Ann_A"}) == 2


def test_plan_refuses_more_scenes_than_photos() -> None:
    with pytest.raises(ValueError, match="fewer than the scenes"):
        context_archive.plan({"Bo_B": ["b1.jpg"]}, contexts_per_person=2, labelled_per_person=0)


def test_precision_counts_distinct_photos_and_missing_places_as_wrong() -> None:
    relevant = {"a", "b"}
    # Two faces of photo "a" count once; a short list's missing places are wrong.
    assert precision_at(["a", "a", "x", "b"], relevant, 3) == pytest.approx(2 / 3)
    assert precision_at(["a"], relevant, 10) == pytest.approx(0.1)
    assert ceiling_at(frozenset(relevant), 10) == pytest.approx(0.2)
    assert ceiling_at(frozenset(relevant), 1) == pytest.approx(1.0)


def test_bootstrap_interval_holds_the_mean() -> None:
    values = np.array([0.0, 0.5, 1.0, 0.5, 0.2, 0.9])
    lo, hi = bootstrap_ci(values, n=500)
    assert lo < values.mean() < hi
    assert bootstrap_ci(np.full(5, 0.3), n=100) == pytest.approx((0.3, 0.3))


def test_captions_written_are_read_back_with_their_source(tmp_path: Path) -> None:
    lfw = shared_data("lfw") / "lfw"
    files = {"Aaron_Peirsol": sorted(p.name for p in (lfw / "Aaron_Peirsol").glob("*.jpg"))[:2]}
    photos, _ = context_archive.plan(files, contexts_per_person=1, labelled_per_person=1)
    context_archive.write(photos, lfw, tmp_path)
    for photo in photos:
        read = context_of(tmp_path / photo.media_id)
        assert (read.caption, read.caption_source) == (photo.caption, photo.source)
    assert {p.source for p in photos} == {"iptc", "xmp"}
    assert len(reader_ms([tmp_path / p.media_id for p in photos], passes=2)) == 2
