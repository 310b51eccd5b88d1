"""The caption benches' ranking, recall and LFW query construction on tiny known cases."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bench.idclip import context_archive
from bench.idclip.bench_captions import rank_of, recall_at
from bench.idclip.context_archive import CONTEXTS, Frame, Photo
from bench.idclip.lfw_captions import caption_queries, chance_recall, first_wrong, paraphrase

MADRID = Frame("Madrid", 12, "March", 2003, "(AP Photo)")


def photo(media_id: str, person: str, context: str, frame: Frame) -> Photo:
    caption = context_archive.wire_caption(person, CONTEXTS[context][1], frame)
    return Photo(media_id, person, context, caption, "iptc", frame)


def test_rank_counts_distinct_photos_and_wrong_ones_before_the_first_right() -> None:
    # Two faces of photo "x" are one wrong photo: "a" is second, not third.
    assert rank_of(["x", "x", "a", "y"], {"a"}) == 2
    assert rank_of(["a", "x"], {"a"}) == 1
    # Equally right photos share the first place any of them reaches.
    assert rank_of(["x", "b", "a"], {"a", "b"}) == 2
    assert rank_of(["x", "y"], {"a"}, depth=40) == 41
    assert rank_of([], {"a"}, depth=5) == 6


def test_recall_at_k_is_the_share_of_ranks_within_k() -> None:
    ranks = np.array([1, 2, 5, 6, 11, 41])
    assert [recall_at(ranks, k) for k in (1, 5, 10)] == pytest.approx([1 / 6, 3 / 6, 4 / 6])


def test_queries_paraphrase_the_caption_and_name_their_right_photos() -> None:
    other_day = Frame("Madrid", 13, "March", 2003, "(AP Photo)")
    photos = [
        photo("a/1.jpg", "Ann_A", "press", MADRID),
        photo("a/2.jpg", "Ann_A", "press", other_day),
        photo("a/3.jpg", "Ann_A", "press", replace(MADRID, agency="(EPA)")),
        photo("b/1.jpg", "Bo_B", "press", MADRID),
        photo("b/2.jpg", "Bo_B", "tennis", MADRID),
    ]
    named = dict(zip([p.media_id for p in photos], caption_queries(photos, True), strict=True))
    # Same person, scene, place and date (the agency is not asked for): equally right.
    assert named["a/1.jpg"][1] == {"a/1.jpg", "a/3.jpg"}
    assert named["a/2.jpg"][1] == {"a/2.jpg"}  # another day
    assert named["b/1.jpg"][1] == {"b/1.jpg"}  # another person
    assert named["b/2.jpg"][1] == {"b/2.jpg"}  # another scene
    text = named["a/1.jpg"][0]
    assert text == "Ann A answering questions at a press conference in Madrid on March 12, 2003"
    # A paraphrase: no caption's wording of the scene, the date in another form.
    assert CONTEXTS["press"][1] not in text and "12 March" not in text
    bare = dict(zip([p.media_id for p in photos], caption_queries(photos, False), strict=True))
    assert bare["a/1.jpg"] == (paraphrase(photos[0], False), {"a/1.jpg", "a/3.jpg", "b/1.jpg"})
    assert not bare["a/1.jpg"][0].startswith("Ann")
    # First places: a/1's is equally right (not a mistake); then one of each mistake.
    top = ["a/3.jpg", "a/1.jpg", "b/1.jpg", "b/2.jpg", None]
    assert first_wrong(photos, list(named.values()), top) == {
        "same person, same scene": 1,
        "another person, same scene": 1,
        "same person, another scene": 1,
        "nothing": 1,
    }


def test_chance_recall_of_a_random_ranking() -> None:
    assert chance_recall(480, 1, 10) == pytest.approx(10 / 480)
    assert chance_recall(4, 2, 1) == pytest.approx(0.5)
    assert chance_recall(4, 2, 3) == pytest.approx(1.0)
