"""Richer answers and undo through the SDK (sync and async flows) and the CLI's prompt, against
the three real services: a 16-d collection of 10 people x 10 faces written straight into the
retriever, so no photo needs embedding."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import numpy as np
import pytest

from facesearch import FacesearchClient, FacesearchError, aio, cli, flows
from facesearch.aio import AsyncFacesearchClient
from facesearch_contract.v1 import personalizer_pb2 as ppb
from facesearch_contract.v1 import retriever_pb2 as rpb
from harness.service_process import ServiceProcess

from .conftest import settings_of

pytestmark = pytest.mark.slow

COLLECTION = "sdk-answers"
DIM = 16


@pytest.fixture(scope="module")
def collection(suite: dict[str, ServiceProcess]) -> str:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((10, DIM))
    v = np.repeat(centres, 10, axis=0) + 0.25 * rng.standard_normal((100, DIM))
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    with FacesearchClient(settings_of(suite)) as fs:
        fs.retriever.CreateCollection(
            rpb.CreateCollectionRequest(
                name=COLLECTION,
                vector_fields=[
                    rpb.VectorFieldSpec(
                        name="face", dimension=DIM, model_id="m", metric=rpb.METRIC_INNER_PRODUCT
                    )
                ],
            )
        )
        points = []
        for i, row in enumerate(v):
            p = rpb.Point(id=f"f{i}")
            p.vectors["face"].values.extend(row.tolist())
            p.model_ids["face"] = "m"
            points.append(p)
        fs.retriever.Upsert(rpb.UpsertRequest(collection=COLLECTION, points=points))
    return COLLECTION


class Script:
    """Round 0: "not them, but similar" for the first face, "nothing like them" for the rest;
    round 1: undo; round 0 again: "found" at its first face. Records every round it sees."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, list[str], int]] = []

    def __call__(self, state: ppb.SessionState) -> Any:
        ids = [c.id for c in state.candidates]
        self.seen.append((state.round, ids, state.undoable_rounds))
        if len(self.seen) == 1:
            return [
                ppb.Feedback(
                    id=i,
                    label=ppb.FEEDBACK_LABEL_NOT_PERSON_BUT_SIMILAR
                    if j == 0
                    else ppb.FEEDBACK_LABEL_NOT_PERSON_NOTHING_LIKE,
                )
                for j, i in enumerate(ids)
            ]
        if len(self.seen) == 2:
            return flows.UNDO
        return [ppb.Feedback(id=ids[0], label=ppb.FEEDBACK_LABEL_FOUND)]


def _check(script: Script, outcome: Any) -> None:
    (r0, first, u0), (r1, _, u1), (r0_again, again, u2) = script.seen
    assert (r0, r1, r0_again) == (0, 1, 0) and (u0, u1, u2) == (0, 1, 0)
    assert again == first  # undo showed round 0's faces again
    assert outcome.finished and outcome.found_id == first[0] and outcome.rounds == 1


def test_rich_answers_and_undo_through_the_sync_flow(
    suite: dict[str, ServiceProcess], collection: str
) -> None:
    script = Script()
    with FacesearchClient(settings_of(suite)) as fs:
        outcome = flows.run_session(fs, collection, "sdk-undo", script, k=4, ephemeral=True)
    _check(script, outcome)


def test_rich_answers_and_undo_through_the_async_flow(
    suite: dict[str, ServiceProcess], collection: str
) -> None:
    script = Script()

    async def scenario() -> Any:
        async with AsyncFacesearchClient(settings_of(suite)) as fs:

            async def on_round(state: ppb.SessionState) -> Any:
                return script(state)

            return await aio.run_session(fs, collection, "sdk-undo-a", on_round, k=4)

    _check(script, asyncio.run(scenario()))


def test_undo_before_any_answer_is_an_sdk_error(
    suite: dict[str, ServiceProcess], collection: str
) -> None:
    with FacesearchClient(settings_of(suite)) as fs, pytest.raises(FacesearchError, match="undo"):
        flows.run_session(fs, collection, "sdk-undo-0", lambda _s: flows.UNDO, ephemeral=True)


def test_the_cli_prompt_takes_rich_answers_and_undo() -> None:
    state = ppb.SessionState(session_id="s", round=1, undoable_rounds=1)
    for i in range(3):
        state.candidates.add(id=f"c{i}")
    out = io.StringIO()
    labels = cli.terminal_feedback(lambda _p: "1n 2o", out)(state)
    assert [(f.id, f.label) for f in labels] == [
        ("c0", ppb.FEEDBACK_LABEL_NOT_PERSON_BUT_SIMILAR),
        ("c1", ppb.FEEDBACK_LABEL_NOT_PERSON_NOTHING_LIKE),
        ("c2", ppb.FEEDBACK_LABEL_DISSIMILAR),
    ]
    assert cli.terminal_feedback(lambda _p: "u", out)(state) == flows.UNDO
    # Nothing to undo: said so, and asked again.
    answers = iter(["u", "q"])
    state.undoable_rounds = 0
    assert cli.terminal_feedback(lambda _p: next(answers), out)(state) is None
    assert "nothing to undo" in out.getvalue()
