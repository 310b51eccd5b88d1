"""The user's lasting head through the real personalizer and retriever processes and the real
Redis (the stack of test_service.py, without the embedder: 20 people x 20 faces in a 16-d
inner-product collection): a head carried into the next session is loaded there, a reset one
is not, a session open across a reset stores nothing, and DescribeUser follows the training."""

from __future__ import annotations

import base64
import io
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis

from facesearch import cli
from facesearch_contract.v1 import personalizer_pb2 as ppb
from tests.personalizer.conftest import REDIS_URL
from tests.personalizer.test_service import (
    ALPHA,
    DIM,
    MODEL,
    _answer,
    _label,
    _stub,
    running_stack,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    yield from running_stack(tmp_path_factory.mktemp("lasting-head"), with_embedder=False)


SEED = ppb.SessionSeed(point_id="p100")


def _start(s, user: str, **kw) -> ppb.SessionState:
    return s.StartSession(
        ppb.StartSessionRequest(user_id=user, collection="faces", seed=SEED, **kw),
        metadata=ALPHA,
        timeout=30,
    ).state


def _teach(s, user: str, rounds: int = 2) -> ppb.EndSessionResponse:
    """A session of ``user`` looking for p100's person: truthful answers, then EndSession."""
    st = _start(s, user)
    for _ in range(rounds):
        st = s.SubmitFeedback(
            ppb.SubmitFeedbackRequest(
                session_id=st.session_id, feedback=_answer(st, _label("p100"))
            ),
            metadata=ALPHA,
            timeout=30,
        ).state
    return s.EndSession(ppb.EndSessionRequest(session_id=st.session_id), metadata=ALPHA)


def _scored(st: ppb.SessionState) -> list[tuple[str, float]]:
    """The first round's faces ranked by the head (exploratory ones are random)."""
    return [(c.id, round(c.score, 5)) for c in st.candidates if not c.exploratory]


def _describe(s, user: str) -> ppb.DescribeUserResponse:
    return s.DescribeUser(ppb.DescribeUserRequest(user_id=user), metadata=ALPHA, timeout=10)


def _lasting_in_session(prefix: str, session_id: str) -> np.ndarray | None:
    """The lasting head a session loaded at its start, as it holds it in Redis."""
    r = redis.Redis.from_url(REDIS_URL)
    try:
        raw = json.loads(r.hget(f"{prefix}sess:{session_id}", "d"))["lasting_b64"]
    finally:
        r.close()
    if not raw:
        return None
    return np.frombuffer(base64.b64decode(raw), "<f4").reshape(DIM, DIM)


def _stored_head(prefix: str, user: str) -> np.ndarray:
    r = redis.Redis.from_url(REDIS_URL)
    try:
        raw = r.hget(f"{prefix}head:{{alpha:{user}}}:{MODEL}", "w")
    finally:
        r.close()
    return np.frombuffer(raw, "<f4").reshape(DIM, DIM)


def test_a_carried_head_is_loaded_in_the_next_session_and_a_reset_one_is_not(stack) -> None:
    s = _stub(stack["p1"])
    user = f"carry-{uuid.uuid4().hex[:6]}"
    plain = _scored(_start(s, f"plain-{uuid.uuid4().hex[:6]}", ephemeral=True))
    assert len(plain) >= 4
    # A new user ranks like the plain embedding.
    fresh = _start(s, user)
    assert fresh.head_version == 0 and _scored(fresh) == plain
    s.EndSession(ppb.EndSessionRequest(session_id=fresh.session_id), metadata=ALPHA)
    assert not _describe(s, user).heads  # a session with no answer teaches nothing

    ended = _teach(s, user)
    assert ended.head_updated and ended.head_version == 1
    # The next session starts from the carried head: the same weights, a different ranking.
    carried = _start(s, user)
    assert carried.head_version == 1
    np.testing.assert_array_equal(
        _lasting_in_session(stack["prefix"], carried.session_id),
        _stored_head(stack["prefix"], user),
    )
    assert _scored(carried) != plain

    # Reset: the next session is back to the plain embedding.
    reset = s.ResetUser(ppb.ResetUserRequest(user_id=user), metadata=ALPHA, timeout=10)
    assert reset.heads_deleted == 1 and not _describe(s, user).heads
    after = _start(s, user)
    assert after.head_version == 0 and _scored(after) == plain
    assert _lasting_in_session(stack["prefix"], after.session_id) is None

    # The session that was open across the reset (it loaded the old head) stores nothing.
    st = s.SubmitFeedback(
        ppb.SubmitFeedbackRequest(
            session_id=carried.session_id, feedback=_answer(carried, _label("p100"))
        ),
        metadata=ALPHA,
        timeout=30,
    ).state
    assert st.round == 1
    ended = s.EndSession(ppb.EndSessionRequest(session_id=carried.session_id), metadata=ALPHA)
    assert (ended.head_updated, ended.head_version) == (False, 0)
    assert not _describe(s, user).heads
    # A session started after the reset does store its answers, into a fresh head.
    s.EndSession(ppb.EndSessionRequest(session_id=after.session_id), metadata=ALPHA)
    assert _teach(s, user).head_version == 1
    assert _describe(s, user).heads[0].sessions_trained == 1


def test_describe_user_follows_the_lasting_head(stack) -> None:
    s = _stub(stack["p1"])
    user = f"desc-{uuid.uuid4().hex[:6]}"
    assert not _describe(s, user).heads
    _teach(s, user, rounds=2)
    one = _describe(s, user).heads[0]
    assert (one.model_id, one.version, one.sessions_trained, one.rounds_trained) == (
        MODEL,
        1,
        1,
        2,
    )
    assert one.distance_from_identity > 0 and one.probe_cosine_change > 0
    assert one.drift == pytest.approx(one.distance_from_identity * DIM**0.5, rel=1e-4)
    assert one.updated.seconds > time.time() - 300
    time.sleep(1.1)  # "updated" has to move
    _teach(s, user, rounds=3)
    two = _describe(s, user).heads[0]
    assert (two.version, two.sessions_trained, two.rounds_trained) == (2, 2, 5)
    assert two.distance_from_identity != one.distance_from_identity
    assert two.probe_cosine_change != one.probe_cosine_change
    assert two.updated.ToNanoseconds() > one.updated.ToNanoseconds()
    # An ephemeral session neither reads nor changes it.
    st = _start(s, user, ephemeral=True)
    assert st.head_version == 0
    ended = s.EndSession(ppb.EndSessionRequest(session_id=st.session_id), metadata=ALPHA)
    assert not ended.head_updated and _describe(s, user).heads[0].version == 2

    # The CLI shows the description and resets the head.
    def cli_run(*flags: str) -> str:
        out = io.StringIO()
        conn = ["--personalizer", stack["p1"].address, "--api-key", "key-alpha"]
        assert cli.main(["session", "--user", user, *flags, *conn], out=out) == 0
        return out.getvalue()

    shown = cli_run("--describe")
    assert f"{MODEL}: distance from identity {two.distance_from_identity:.4f}" in shown
    assert "trained on 2 session(s), 5 round(s); version 2" in shown
    shown = cli_run("--reset", "--describe")
    assert "forgot 1 lasting head(s)" in shown and "no lasting head" in shown
    assert not _describe(s, user).heads
