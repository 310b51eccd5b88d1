"""Interactive sessions: run one with a callback per round, and simulated users to answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import numpy as np

from facesearch import messages
from facesearch.async_client import AsyncFacesearchClient
from facesearch.core.callbacks import call_back
from facesearch.core.collections import collection_fields
from facesearch.errors import FacesearchError
from facesearch_contract.v1 import personalizer_pb2, retriever_pb2

# What on_round returns instead of labels to take back the latest answered round
# (UndoFeedback): the session goes back to that round's candidates, and the user's head to its
# state before it.
UNDO = "undo"

Labels = list[personalizer_pb2.Feedback] | str | None
# What answers a round: sync (returns the labels) or async (returns an awaitable of them).
FeedbackFn = Callable[[personalizer_pb2.SessionState], Labels | Awaitable[Labels]]
ShowFn = Callable[[personalizer_pb2.SessionState], object]


async def run_session(
    client: AsyncFacesearchClient,
    collection: str,
    user_id: str,
    on_round: FeedbackFn,
    *,
    k: int = 0,
    seed: personalizer_pb2.SessionSeed | None = None,
    where: messages.FilterSpec = None,
    ephemeral: bool = False,
    max_rounds: int = 50,
) -> messages.SessionOutcome:
    """An interactive search: show each round's candidates to ``on_round``, send back its
    labels, until the person is found, the collection runs out, ``on_round`` returns None or
    an empty list, or ``max_rounds`` pass. Labels may be any FeedbackLabel, the near-miss
    ("not this person, but similar") and "nothing like them" answers included. ``on_round``
    may return ``UNDO`` to take back the latest answered round (while
    ``state.undoable_rounds`` > 0; else FacesearchError): it is then shown that round again.
    The session is always ended, also when the flow is cancelled. With ``ephemeral`` the
    user's stored head is neither used nor updated."""
    request = messages.start_session_request(
        user_id, collection, k=k, seed=seed, where=where, ephemeral=ephemeral
    )
    state = (await client.personalizer.StartSession(request)).state
    try:
        while not state.finished and state.round < max_rounds:
            labels = await call_back(on_round, state)
            if labels == UNDO:
                state = await _undo(client, state)
                continue
            if not labels:
                break
            feedback = personalizer_pb2.SubmitFeedbackRequest(
                session_id=state.session_id, feedback=labels
            )
            state = (await client.personalizer.SubmitFeedback(feedback)).state
    finally:
        rounds = await _end_session(client, state)
    return messages.SessionOutcome(
        rounds=rounds or state.round, finished=state.finished, found_id=state.found_id
    )


async def reset_user(client: AsyncFacesearchClient, user_id: str, model_id: str = "") -> int:
    """Forget what ``user_id``'s sessions taught (every face model's head, or ``model_id``'s);
    the next session starts from the identity head. Returns the heads deleted."""
    reply = await client.personalizer.ResetUser(
        personalizer_pb2.ResetUserRequest(user_id=user_id, model_id=model_id)
    )
    return reply.heads_deleted


async def describe_user(
    client: AsyncFacesearchClient, user_id: str
) -> personalizer_pb2.DescribeUserResponse:
    """What ``user_id``'s past sessions taught: per face model, the lasting head's distance from
    the plain embedding (``distance_from_identity``, ``probe_cosine_change``), the sessions
    and rounds it was trained on and its last update; and the user's live sessions."""
    return await client.personalizer.DescribeUser(
        personalizer_pb2.DescribeUserRequest(user_id=user_id)
    )


def simulated_user(
    person_id: str,
    target_id: str | None = None,
    *,
    show: ShowFn | None = None,
) -> Callable[[personalizer_pb2.SessionState], list[personalizer_pb2.Feedback]]:
    """A user who has ``person_id`` in mind ("target testing"): marks that person's faces
    similar, every other face dissimilar, and says "found" at ``target_id`` (or, without one,
    at the first face of the person). Ground truth is the stored person_id metadata.
    ``show`` sees each round first (e.g. to print it). Needs no client: the same function in
    the sync and the async API."""

    def on_round(state: personalizer_pb2.SessionState) -> list[personalizer_pb2.Feedback]:
        if show is not None:
            show(state)
        labels = []
        for c in state.candidates:
            is_person = messages.python_value(c.metadata["person_id"]) == person_id
            found = c.id == target_id if target_id else is_person
            labels.append(_feedback(c.id, found=found, similar=is_person))
        return labels

    return on_round


async def simulated_user_by_likeness(
    client: AsyncFacesearchClient,
    collection: str,
    target_id: str,
    *,
    threshold: float = 0.3,
    show: ShowFn | None = None,
) -> Callable[[personalizer_pb2.SessionState], Awaitable[list[personalizer_pb2.Feedback]]]:
    """A user who has the face ``target_id`` in mind but no identity labels to go by (e.g. the
    sample photos of the model package): marks a shown face similar when its face vector's
    cosine to the target's is at least ``threshold``, dissimilar otherwise, and says "found" at
    the target. Ground truth is the embedding, as in target testing without labels."""
    fields = await collection_fields(client, collection)

    async def face_vectors(ids: list[str]) -> dict[str, np.ndarray]:
        reply = await client.retriever.Get(
            retriever_pb2.GetRequest(collection=collection, ids=ids, with_vectors=True)
        )
        return {
            p.id: np.asarray(p.vectors[fields.face].values, dtype=np.float32)
            for p in reply.points
            if fields.face in p.vectors
        }

    target = (await face_vectors([target_id])).get(target_id)
    if target is None:
        raise FacesearchError(f"the target {target_id!r} is not in collection {collection!r}")

    async def on_round(state: personalizer_pb2.SessionState) -> list[personalizer_pb2.Feedback]:
        if show is not None:
            await call_back(show, state)
        vectors = await face_vectors([c.id for c in state.candidates])
        labels = []
        for c in state.candidates:
            similar = c.id in vectors and float(vectors[c.id] @ target) >= threshold
            labels.append(_feedback(c.id, found=c.id == target_id, similar=similar))
        return labels

    return on_round


def _feedback(point_id: str, *, found: bool, similar: bool) -> personalizer_pb2.Feedback:
    """A simulated user's label: found wins over similar."""
    if found:
        label = personalizer_pb2.FEEDBACK_LABEL_FOUND
    elif similar:
        label = personalizer_pb2.FEEDBACK_LABEL_SIMILAR
    else:
        label = personalizer_pb2.FEEDBACK_LABEL_DISSIMILAR
    return personalizer_pb2.Feedback(id=point_id, label=label)  # type: ignore[arg-type]


async def _undo(
    client: AsyncFacesearchClient, state: personalizer_pb2.SessionState
) -> personalizer_pb2.SessionState:
    if not state.undoable_rounds:
        raise FacesearchError(
            f"round {state.round} of session {state.session_id!r} has no answered round left "
            "to undo"
        )
    reply = await client.personalizer.UndoFeedback(
        personalizer_pb2.UndoFeedbackRequest(session_id=state.session_id, round=state.round)
    )
    return reply.state


async def _end_session(client: AsyncFacesearchClient, state: personalizer_pb2.SessionState) -> int:
    try:
        reply = await client.personalizer.EndSession(
            personalizer_pb2.EndSessionRequest(session_id=state.session_id)
        )
        return reply.rounds
    except grpc.RpcError as err:
        # A finished session may already be gone; the outcome is known either way.
        if err.code() == grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
            return state.round
        raise
