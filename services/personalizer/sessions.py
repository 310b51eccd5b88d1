"""Session logic: StartSession, SubmitFeedback, GetSession, EndSession, ResetUser, DescribeUser.

Two heads (head.py): the user's lasting head, their notion of likeness, kept in Redis and read
once at StartSession; and the session's own head, which starts as a copy of it, learns this
session's target and is dropped with the session.

One round (SubmitFeedback):
1. record the labels (unlabelled faces of the last round count as dissimilar, as in FaIRCoP);
2. train the session's head on the session's clusters (online_training.py, anchored to the
   lasting head); it is stored in the session, never in the user's head;
3. ask the retriever, in one batched Search, for the top ``rescore_top`` faces of the linear
   query W^T(mu+ - lambda mu-) and, in early rounds, for an exploration pool; both exclude every
   face already shown;
4. rescore exactly with the head, mix in exploratory faces (round_planner.py), store the
   session (compare-and-set) and answer.

At the session's end (a FOUND answer, else EndSession) its relative answers are consolidated
into the user's lasting head (consolidation.py) with an atomic version check (head_store.py),
once per session (the update carries "<session id>:end") and only if the user was not reset
since the session started. An ephemeral session neither reads nor writes the lasting head; a
session left to expire teaches it nothing.

Every answered round leaves an undo record in the session (its fields before the round and,
for a FOUND round, the lasting head before it); UndoFeedback puts both back.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field, replace

import grpc
import numpy as np

from facesearch_contract.limits import max_items, value_range
from facesearch_contract.v1 import common_pb2, retriever_pb2
from facesearch_contract.v1 import personalizer_pb2 as pb
from facesearch_server.personalizer.answer_model import (
    DISSIMILAR,
    NEAR_MISS,
    NOTHING_LIKE,
    SIMILAR,
)
from facesearch_server.personalizer.candidate_source import CandidateSource, FaceField, Hit
from facesearch_server.personalizer.consolidation import (
    ConsolidationParams,
    consolidate,
    relative_answers,
)
from facesearch_server.personalizer.exploration import (
    hub_directions,
    random_directions,
    session_rng,
)
from facesearch_server.personalizer.head import Head
from facesearch_server.personalizer.head_store import HeadSnapshot, HeadStore
from facesearch_server.personalizer.online_training import train_round
from facesearch_server.personalizer.round_planner import (
    Pick,
    RoundParams,
    exploratory_count,
    on_likeness_scale,
    scoring_queries,
    select,
    training_weights,
)
from facesearch_server.personalizer.scoring import Clusters, clusters
from facesearch_server.personalizer.session_store import Session, SessionStore
from facesearch_server.runtime.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound

# The retriever's exclude_ids limit: a session's shown faces plus its excluded ones (a point
# seed) never pass it, so every round's Search stays valid; a session that reaches it finishes.
MAX_EXCLUDED = max_items(retriever_pb2.Query, "exclude_ids")
TEXT_SEED_FACES = 5  # faces of the best text matches averaged into a text seed
# The contract's labels as the answer model's codes (FOUND also joins the positives).
LABEL_CODES = {
    pb.FEEDBACK_LABEL_SIMILAR: SIMILAR,
    pb.FEEDBACK_LABEL_DISSIMILAR: DISSIMILAR,
    pb.FEEDBACK_LABEL_FOUND: SIMILAR,
    pb.FEEDBACK_LABEL_NOT_PERSON_BUT_SIMILAR: NEAR_MISS,
    pb.FEEDBACK_LABEL_NOT_PERSON_NOTHING_LIKE: NOTHING_LIKE,
}


@dataclass
class SessionsConfig:
    default_k: int = 8
    round: RoundParams = field(default_factory=RoundParams)
    # Answered rounds UndoFeedback can take back (each keeps a copy of the head: d*d*4 bytes).
    undo_depth: int = 4
    # How a session's answers update the user's lasting head at its end.
    consolidation: ConsolidationParams = field(default_factory=ConsolidationParams)
    # Seed of the exploration directions (with the session id and round: exploration.py).
    exploration_seed: int = 0
    # Take the answer model's tau / tau_unlike from the collection's pair-score quantiles
    # (answer_model.on_scale) instead of round.scoring.answers' constants.
    likeness_from_collection: bool = True

    def __post_init__(self) -> None:
        # Settings within what the contract allows: k as a caller could ask for it, and
        # rescore_top as the k of a retriever Query (the retriever's max_k may be lower still).
        _, max_k = value_range(pb.StartSessionRequest, "k")
        _, max_query_k = value_range(retriever_pb2.Query, "k")
        if not 1 <= self.default_k <= max_k:
            raise ValueError(f"k is {self.default_k}; it must be 1..{max_k}")
        if not 1 <= self.round.rescore_top <= max_query_k:
            raise ValueError(
                f"rescore_top is {self.round.rescore_top}; it must be 1..{max_query_k:,}"
            )


class Sessions:
    def __init__(
        self,
        heads: HeadStore,
        store: SessionStore,
        source: CandidateSource,
        config: SessionsConfig | None = None,
    ) -> None:
        self.heads = heads
        self.store = store
        self.source = source
        self.cfg = config or SessionsConfig()

    # -- helpers --------------------------------------------------------------------------

    def _params(self, s: Session) -> RoundParams:
        """The round parameters of this session: the configured ones, on the collection's
        likeness scale when the session took one at its start."""
        p = self.cfg.round
        if not s.likeness_p98:
            return p
        return on_likeness_scale(p, s.likeness_median, s.likeness_p98, s.likeness_lifted)

    def _consolidation(self, s: Session) -> ConsolidationParams:
        c = self.cfg.consolidation
        return replace(c, corroboration_threshold=s.likeness_p98) if s.likeness_p98 else c

    @staticmethod
    def _lasting(s: Session) -> np.ndarray:
        """The user's lasting head as the session started with it (identity when none)."""
        w = s.weights("lasting_b64")
        return np.eye(s.dim, dtype=np.float32) if w is None else w

    def _head(self, s: Session) -> Head:
        """The session's head: what this session learned, from the lasting head."""
        w = s.weights("head_b64")
        return Head(s.model_id, self._lasting(s) if w is None else w, s.head_version)

    @staticmethod
    def _filter(s: Session) -> common_pb2.Filter | None:
        if not s.filter_b64:
            return None
        return common_pb2.Filter.FromString(base64.b64decode(s.filter_b64))

    def _clusters(self, s: Session, head: Head) -> tuple[Clusters, np.ndarray, np.ndarray]:
        vecs = s.vectors()
        index = {sid: i for i, sid in enumerate(s.shown)}
        pos = [(index[i], lab) for i, lab in s.labels.items() if lab > 0 and i in index]
        neg = [(index[i], lab) for i, lab in s.labels.items() if lab < 0 and i in index]
        p, n = vecs[[i for i, _ in pos]], vecs[[i for i, _ in neg]]
        pc = np.array([lab for _, lab in pos], int)
        nc = np.array([lab for _, lab in neg], int)
        seed = s.seed()
        if seed is not None:  # the seed is one more "similar" answer
            p = np.concatenate([seed[None, :], p])
            pc = np.concatenate([[SIMILAR], pc]).astype(int)
        return clusters(head, p, n, pc, nc, self._params(s).scoring), p, n

    async def _next_round(
        self, s: Session, head: Head, k: int, context: grpc.aio.ServicerContext | None
    ) -> tuple[list[Pick], dict[str, Hit]]:
        room = MAX_EXCLUDED - len(s.shown) - len(s.exclude)
        if room <= 0:
            return [], {}
        p = self._params(s)
        c, pos, _ = self._clusters(s, head)
        n_exp = exploratory_count(k, len(pos), s.rounds_with_positive, p)
        face = FaceField(s.field, s.model_id, s.dim)
        # One batched Search: the scoring query (top rescore_top) and the exploration pool.
        lasting = Head(s.model_id, self._lasting(s))
        queries = scoring_queries(head, c, k, p, lasting)
        n_scored = len(queries)
        if n_exp > 0 or c.mu_pos is None:
            rng = session_rng(self.cfg.exploration_seed, s.id, s.round)
            centroid = s.centroid()
            if centroid is not None and 1 <= s.round <= p.hub_rounds:
                dirs = hub_directions(rng, p.pool_directions, centroid, p.hub_spread)
                n_hub = len(dirs)
                # Isotropic directions too, the fallback when the answers rule out most
                # faces near the centroid (select's ``fallback``).
                dirs = np.concatenate([dirs, random_directions(rng, p.pool_directions, s.dim)])
            else:
                dirs = random_directions(rng, p.pool_directions, s.dim)
                n_hub = 0
            queries += [(d, p.pool_per_direction) for d in dirs]
        exclude = s.shown + s.exclude
        results = await self.source.search(
            s.collection, face, queries, exclude, self._filter(s), context=context
        )
        cands: list[tuple[str, np.ndarray]] = []
        pool: list[tuple[str, np.ndarray]] = []
        fallback: list[tuple[str, np.ndarray]] = []
        meta: dict[str, Hit] = {}
        for j, hits in enumerate(results):
            for h in hits:
                meta[h.id] = h
                if j < n_scored:
                    cands.append((h.id, h.vector))
                elif j < n_scored + n_hub or not n_hub:
                    pool.append((h.id, h.vector))
                else:
                    fallback.append((h.id, h.vector))
        picks = select(
            head, c, cands, pool, s.vectors(), set(exclude), k, n_exp, p, lasting, fallback
        )
        return picks[:room], meta

    def _record(self, s: Session, picks: list[Pick]) -> None:
        s.shown += [pk.id for pk in picks]
        s.last_round = [pk.id for pk in picks]
        s.exploratory += [pk.exploratory for pk in picks]
        s.scores += [pk.score for pk in picks]
        if picks:
            s.set_vectors(np.concatenate([s.vectors(), np.stack([pk.vector for pk in picks])]))
        else:
            s.finished = True  # nothing unseen is left

    def state(
        self, s: Session, picks: list[Pick] | None = None, meta: dict[str, Hit] | None = None
    ) -> pb.SessionState:
        st = pb.SessionState(
            session_id=s.id,
            round=s.round,
            finished=s.finished,
            found_id=s.found_id,
            head_version=s.head_version,
            undoable_rounds=len(s.undo),
        )
        st.expires.FromNanoseconds(int(s.expires_unix * 1e9))
        if picks is None:  # GetSession: the latest round as stored
            n = len(s.last_round)
            picks = [
                Pick(i, s.scores[-n + j], s.exploratory[-n + j], np.zeros(0))
                for j, i in enumerate(s.last_round)
            ]
        meta = meta or {}
        for pk in picks:
            cand = st.candidates.add(id=pk.id, score=pk.score, exploratory=pk.exploratory)
            if pk.id in meta:
                for key, val in meta[pk.id].metadata.items():
                    cand.metadata[key].CopyFrom(val)
        return st

    # -- RPCs -----------------------------------------------------------------------------

    async def start(
        self, tenant: str, req: pb.StartSessionRequest, context: grpc.aio.ServicerContext | None
    ) -> pb.SessionState:
        face = await self.source.face_field(req.collection, context=context)
        k = req.k or self.cfg.default_k
        s = Session(
            id=Session.new_id(),
            tenant=tenant,
            user=req.user_id,
            collection=req.collection,
            field=face.name,
            model_id=face.model_id,
            dim=face.dim,
            k=k,
            ephemeral=req.ephemeral,
            filter_b64=base64.b64encode(req.filter.SerializeToString()).decode()
            if req.HasField("filter")
            else "",
        )
        if self.cfg.likeness_from_collection and face.profile is not None:
            s.likeness_median, s.likeness_p98 = face.profile
            s.likeness_lifted = face.vectors >= self.cfg.round.hub_min_faces
        if face.centroid is not None and face.vectors >= self.cfg.round.hub_min_faces:
            s.centroid_b64 = base64.b64encode(np.asarray(face.centroid, "<f4").tobytes()).decode()
        seed = await self._seed(req, s, face, context)
        if seed is not None:
            seed = seed / max(float(np.linalg.norm(seed)), 1e-12)
            s.seed_b64 = base64.b64encode(np.asarray(seed, "<f4").tobytes()).decode()
            s.rounds_with_positive = 0
        if not s.ephemeral:
            lasting = await self.heads.get(s.tenant, s.user, s.model_id, s.dim)
            s.head_version, s.head_epoch = lasting.version, lasting.epoch
            if lasting.version:
                s.set_weights("lasting_b64", lasting.weight)
        head = self._head(s)
        picks, meta = await self._next_round(s, head, k, context)
        self._record(s, picks)
        await self.store.save(s, create=True)
        return self.state(s, picks, meta)

    async def _seed(self, req, s: Session, face: FaceField, context) -> np.ndarray | None:
        which = req.seed.WhichOneof("seed") if req.HasField("seed") else None
        if which is None:
            return None
        if which == "face_vector":
            if req.seed.model_id != face.model_id:
                raise InvalidArgument(
                    "seed.model_id",
                    f"is {req.seed.model_id!r}; collection {req.collection!r} holds "
                    f"{face.model_id!r} faces",
                )
            v = np.asarray(req.seed.face_vector.values, np.float32)
            if v.shape[0] != face.dim:
                raise InvalidArgument(
                    "seed.face_vector", f"has {v.shape[0]} values; the model has {face.dim}"
                )
            if not np.isfinite(v).all() or not np.any(v):
                raise InvalidArgument("seed.face_vector", "holds NaN, Inf or only zeros")
            return v
        if which == "point_id":
            hits = await self.source.get(s.collection, face, [req.seed.point_id], context=context)
            if not hits:
                raise NotFound(f"seed.point_id {req.seed.point_id!r} is not in {req.collection!r}")
            s.exclude.append(req.seed.point_id)
            return hits[0].vector
        if which == "person_id":
            hits = await self.source.person_hits(
                s.collection, face, req.seed.person_id, 1, self._filter(s), context=context
            )
            if not hits:
                raise NotFound(f"seed.person_id {req.seed.person_id!r} has no face here")
            return hits[0].vector
        if which == "image":
            return await self.source.embed_image(req.seed.image, face.model_id, context=context)
        # A description: the faces whose text best matches it, averaged into one face seed.
        hits = await self.source.text_hits(
            s.collection, face, req.seed.text, TEXT_SEED_FACES, self._filter(s), context=context
        )
        if not hits:
            raise NotFound(f"seed.text: no record of {req.collection!r} has a matching text")
        return np.mean([h.vector for h in hits], axis=0)

    async def feedback(
        self, tenant: str, req: pb.SubmitFeedbackRequest, context: grpc.aio.ServicerContext | None
    ) -> pb.SessionState:
        s = await self.store.load(tenant, req.session_id)
        if s.finished:
            raise FailedPrecondition(f"session {s.id!r} is finished; start a new one")
        shown = set(s.shown)
        found = ""
        new_labels: dict[str, int] = {}
        for i, item in enumerate(req.feedback):
            if item.id not in shown:
                raise InvalidArgument(
                    f"feedback[{i}].id", f"{item.id!r} was not shown in this session"
                )
            if item.label == pb.FEEDBACK_LABEL_FOUND:
                found = item.id
            new_labels[item.id] = LABEL_CODES[item.label]
        record = s.undo_snapshot()
        for sid in s.last_round:  # unlabelled faces of the last round count as dissimilar
            if sid not in new_labels:
                s.labels.setdefault(sid, DISSIMILAR)
        s.labels.update(new_labels)
        s.round += 1
        c, pos, neg = self._clusters(s, Head.identity(s.model_id, s.dim))
        if len(pos):
            s.rounds_with_positive += 1
        lasting = Head(s.model_id, self._lasting(s))
        weights = training_weights(c, self._params(s), lasting)
        head = await self._train(s, pos, neg, weights)
        if found:
            s.finished, s.found_id, s.last_round = True, found, []
            # The session is over: what it says about the user's likeness goes into their
            # lasting head now (EndSession would do it too; a client may never send that).
            snap = None
            if self.cfg.undo_depth and self._consolidates(s):
                snap = await self._head_snapshot(s)
            stored = await self._consolidate(s)
            if snap is not None and stored is not None and stored.version != snap.version:
                # Restorable only when this update came right after the snapshot.
                after = stored.version if stored.version == snap.version + 1 else -1
                record["head"] = {**snap.to_dict(), "after": after}
        if self.cfg.undo_depth:
            s.undo = [*s.undo, record][-self.cfg.undo_depth :]
        if found:
            await self.store.save(s)
            return self.state(s, [])
        picks, meta = await self._next_round(s, head, req.k or s.k, context)
        self._record(s, picks)
        await self.store.save(s)
        return self.state(s, picks, meta)

    async def _head_snapshot(self, s: Session) -> HeadSnapshot:
        return await self.heads.snapshot(s.tenant, s.user, s.model_id, s.dim)

    async def _train(
        self, s: Session, pos: np.ndarray, neg: np.ndarray, pos_weights: np.ndarray | None
    ) -> Head:
        """The session's head for the next round, trained on its clusters from the head it
        has, anchored to the lasting head. Positives weigh ``pos_weights`` (1 = corroborated,
        0 = not: answer_model.corroboration)."""
        head = self._head(s)
        if not len(pos):
            return head
        w, steps = await asyncio.to_thread(
            train_round,
            head.weight,
            pos,
            neg,
            self._params(s).training,
            pos_weights,
            self._lasting(s),
        )
        if steps:
            head.weight = w
            s.set_weights("head_b64", w)
        return head

    def _consolidates(self, s: Session) -> bool:
        return not s.ephemeral and not s.consolidated

    async def _consolidate(self, s: Session) -> Head | None:
        """Put the session's relative answers into the user's lasting head, once per session
        (token "<id>:end": a retried FOUND or EndSession, or both at once, apply it once), not
        when the user was reset since the session started (its epoch). The stored head after
        it, or None when nothing was stored (ephemeral, reset, no round answered). A session
        whose answers hold nothing to learn (no corroborated positive) still counts as trained
        on: the head's weights stay, its sessions and rounds go up."""
        if not self._consolidates(s):
            return None
        s.consolidated = True
        if s.round == 0:
            return None
        vecs = s.vectors()
        index = {sid: i for i, sid in enumerate(s.shown)}
        labelled = [(index[i], lab) for i, lab in s.labels.items() if i in index]
        pos = vecs[[i for i, lab in labelled if lab > 0]]
        neg = vecs[[i for i, lab in labelled if lab < 0]]
        seed = s.seed()
        if seed is not None:
            pos = np.concatenate([seed[None, :], pos])
        found = vecs[index[s.found_id]] if s.found_id in index else None
        params = self._consolidation(s)
        answers = relative_answers(pos, neg, found, params)

        async def step(current: Head) -> tuple[np.ndarray, int]:
            w, _ = await asyncio.to_thread(consolidate, current.weight, answers, params)
            return w, s.round

        stored = await self.heads.update(
            s.tenant,
            s.user,
            s.model_id,
            s.dim,
            step,
            token=f"{s.id}:end",
            sessions=1,
            epoch=s.head_epoch,
        )
        s.stored_version = stored.version if stored is not None else 0
        return stored

    async def undo(self, tenant: str, req: pb.UndoFeedbackRequest) -> pb.SessionState:
        """Take back the session's latest answered round: its fields, and the user's stored
        head when that round changed it, exactly as they were before it."""
        s = await self.store.load(tenant, req.session_id)
        if req.round != s.round:
            raise FailedPrecondition(
                f"round is {req.round}, but session {s.id!r} is at round {s.round}: only the "
                "latest answered round can be undone (a retried UndoFeedback that succeeded "
                "answers this too)"
            )
        if not s.undo or s.undo[-1]["round"] + 1 != s.round:
            raise FailedPrecondition(
                f"session {s.id!r} has no answered round left to undo (at most the last "
                f"{self.cfg.undo_depth} rounds can be)"
            )
        record = s.undo[-1]
        back = s.restored(record)
        h = record.get("head")
        if h is None:
            await self.store.save(back)
            return self.state(back)
        snap = HeadSnapshot.from_dict({k: v for k, v in h.items() if k != "after"})
        current = await self._head_snapshot(s)
        restored = -1
        if h["after"] >= 0 and current.version == h["after"]:
            restored = await self.heads.restore(
                s.tenant, s.user, s.model_id, s.dim, snap, h["after"]
            )
        if restored < 0:
            raise FailedPrecondition(
                f"the head of user {s.user!r} was updated by another session (or reset) after "
                f"round {s.round}, so it cannot be put back exactly; nothing was changed: "
                "answer on or end this session"
            )
        prev = back.undo[-1].get("head") if back.undo else None
        if prev is not None and prev["after"] == snap.version:
            # The head is again what the previous round made, under a new version number.
            prev["after"] = restored
        try:
            await self.store.save(back)
        except Aborted:
            # Another call changed the session meanwhile: give the head its round back.
            await self.heads.restore(s.tenant, s.user, s.model_id, s.dim, current, restored)
            raise
        return self.state(back)

    async def get(self, tenant: str, session_id: str) -> pb.GetSessionResponse:
        s = await self.store.load(tenant, session_id)
        return pb.GetSessionResponse(
            state=self.state(s), user_id=s.user, collection=s.collection, shown_ids=s.shown
        )

    async def end(self, tenant: str, session_id: str) -> pb.EndSessionResponse:
        """Consolidate the session's answers into the user's lasting head (unless a FOUND
        did already), then forget the session and its own head."""
        s = await self.store.load(tenant, session_id)
        await self._consolidate(s)
        await self.store.delete(s)
        return pb.EndSessionResponse(
            rounds=s.round, head_updated=s.stored_version > 0, head_version=s.stored_version
        )

    async def reset_user(self, tenant: str, user: str, model_id: str) -> int:
        return await self.heads.reset(tenant, user, model_id)

    async def describe_user(self, tenant: str, user: str) -> pb.DescribeUserResponse:
        heads = await self.heads.describe(tenant, user)
        out = pb.DescribeUserResponse(
            user_id=user, active_sessions=await self.store.active(tenant, user)
        )
        for h in heads:
            info = out.heads.add(
                model_id=h.model_id,
                version=h.version,
                rounds_trained=h.rounds_trained,
                drift=h.drift(),
                sessions_trained=h.sessions_trained,
                distance_from_identity=h.distance_from_identity(),
                probe_cosine_change=h.probe_cosine_change(),
            )
            info.updated.FromNanoseconds(int(h.updated_unix * 1e9))
        return out
