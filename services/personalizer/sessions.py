"""Session logic: StartSession, SubmitFeedback, GetSession, EndSession, ResetUser, DescribeUser.

One round (SubmitFeedback):
1. record the labels (unlabelled faces of the last round count as dissimilar, as in FaIRCoP);
2. train the user's head on the session's clusters (online_training.py) and store it with an
   atomic version check (head_store.py), at most once per session round (the update carries
   "<session id>:<round>"); an ephemeral session keeps its head to itself;
3. ask the retriever, in one batched Search, for the top ``rescore_top`` faces of the linear
   query W^T(mu+ - lambda mu-) and, in early rounds, for an exploration pool; both exclude every
   face already shown;
4. rescore exactly with the head, mix in exploratory faces (round_planner.py), store the
   session (compare-and-set) and answer.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field

import grpc
import numpy as np

from facesearch_contract.limits import max_items, value_range
from facesearch_contract.v1 import common_pb2, retriever_pb2
from facesearch_contract.v1 import personalizer_pb2 as pb
from facesearch_server.personalizer.candidate_source import CandidateSource, FaceField, Hit
from facesearch_server.personalizer.exploration import random_directions
from facesearch_server.personalizer.head import Head
from facesearch_server.personalizer.head_store import HeadStore
from facesearch_server.personalizer.online_training import train_round
from facesearch_server.personalizer.round_planner import (
    Pick,
    RoundParams,
    exploratory_count,
    select,
)
from facesearch_server.personalizer.scoring import Clusters, clusters, retriever_query
from facesearch_server.personalizer.session_store import Session, SessionStore
from facesearch_server.runtime.errors import FailedPrecondition, InvalidArgument, NotFound

# The retriever's exclude_ids limit: a session's shown faces plus its excluded ones (a point
# seed) never pass it, so every round's Search stays valid; a session that reaches it finishes.
MAX_EXCLUDED = max_items(retriever_pb2.Query, "exclude_ids")
TEXT_SEED_FACES = 5  # faces of the best text matches averaged into a text seed


@dataclass
class SessionsConfig:
    default_k: int = 8
    round: RoundParams = field(default_factory=RoundParams)

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
        self.rng = np.random.default_rng()

    # -- helpers --------------------------------------------------------------------------

    async def _head(self, s: Session) -> Head:
        if s.ephemeral:
            head = Head.identity(s.model_id, s.dim)
            if s.ephemeral_weight_b64:
                head.weight = Head.weight_from_bytes(
                    base64.b64decode(s.ephemeral_weight_b64), s.dim
                )
            return head
        return await self.heads.get(s.tenant, s.user, s.model_id, s.dim)

    @staticmethod
    def _filter(s: Session) -> common_pb2.Filter | None:
        if not s.filter_b64:
            return None
        return common_pb2.Filter.FromString(base64.b64decode(s.filter_b64))

    def _clusters(self, s: Session, head: Head) -> tuple[Clusters, np.ndarray, np.ndarray]:
        vecs = s.vectors()
        index = {sid: i for i, sid in enumerate(s.shown)}
        pos = [index[i] for i, lab in s.labels.items() if lab > 0 and i in index]
        neg = [index[i] for i, lab in s.labels.items() if lab < 0 and i in index]
        p, n = vecs[pos], vecs[neg]
        seed = s.seed()
        if seed is not None:
            p = np.concatenate([seed[None, :], p])
        return clusters(head, p, n), p, n

    async def _next_round(
        self, s: Session, head: Head, k: int, context: grpc.aio.ServicerContext | None
    ) -> tuple[list[Pick], dict[str, Hit]]:
        room = MAX_EXCLUDED - len(s.shown) - len(s.exclude)
        if room <= 0:
            return [], {}
        p = self.cfg.round
        c, pos, _ = self._clusters(s, head)
        n_exp = exploratory_count(k, len(pos), s.rounds_with_positive, p)
        face = FaceField(s.field, s.model_id, s.dim)
        # One batched Search: the scoring query (top rescore_top) and the exploration pool.
        queries: list[tuple[np.ndarray, int]] = []
        if c.mu_pos is not None:
            queries.append((retriever_query(head, c, p.scoring), max(p.rescore_top, k)))
        n_scored = len(queries)
        if n_exp > 0 or c.mu_pos is None:
            dirs = random_directions(self.rng, p.pool_directions, s.dim)
            queries += [(d, p.pool_per_direction) for d in dirs]
        exclude = s.shown + s.exclude
        results = await self.source.search(
            s.collection, face, queries, exclude, self._filter(s), context=context
        )
        cands: list[tuple[str, np.ndarray]] = []
        pool: list[tuple[str, np.ndarray]] = []
        meta: dict[str, Hit] = {}
        for j, hits in enumerate(results):
            for h in hits:
                meta[h.id] = h
                (cands if j < n_scored else pool).append((h.id, h.vector))
        picks = select(head, c, cands, pool, s.vectors(), set(exclude), k, n_exp, p)
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
        seed = await self._seed(req, s, face, context)
        if seed is not None:
            seed = seed / max(float(np.linalg.norm(seed)), 1e-12)
            s.seed_b64 = base64.b64encode(np.asarray(seed, "<f4").tobytes()).decode()
            s.rounds_with_positive = 0
        head = await self._head(s)
        s.head_version = head.version
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
                new_labels[item.id] = 1
            else:
                new_labels[item.id] = 1 if item.label == pb.FEEDBACK_LABEL_SIMILAR else -1
        for sid in s.last_round:  # unlabelled faces of the last round count as dissimilar
            if sid not in new_labels:
                s.labels.setdefault(sid, -1)
        s.labels.update(new_labels)
        s.round += 1
        _, pos, neg = self._clusters(s, Head.identity(s.model_id, s.dim))
        if len(pos):
            s.rounds_with_positive += 1
        head = await self._train(s, pos, neg, token=f"{s.id}:{s.round}")
        if found:
            s.finished, s.found_id, s.last_round = True, found, []
            await self.store.save(s)
            return self.state(s, [])
        picks, meta = await self._next_round(s, head, req.k or s.k, context)
        self._record(s, picks)
        await self.store.save(s)
        return self.state(s, picks, meta)

    async def _train(self, s: Session, pos: np.ndarray, neg: np.ndarray, token: str) -> Head:
        """The head for the next round. The stored head is trained at most once per ``token``
        (session round): this runs before the session's compare-and-set, so a retried or
        doubled SubmitFeedback of one round would otherwise train it again."""
        params = self.cfg.round.training
        if s.ephemeral:
            head = await self._head(s)
            w, _ = await asyncio.to_thread(train_round, head.weight, pos, neg, params)
            head.weight = w
            s.ephemeral_weight_b64 = base64.b64encode(head.weight_bytes()).decode()
            return head
        if not len(pos):
            return await self._head(s)

        async def step(current: Head) -> tuple[np.ndarray, int]:
            w, steps = await asyncio.to_thread(train_round, current.weight, pos, neg, params)
            return w, 1 if steps else 0

        head = await self.heads.update(s.tenant, s.user, s.model_id, s.dim, step, token=token)
        s.head_version = head.version
        return head

    async def get(self, tenant: str, session_id: str) -> pb.GetSessionResponse:
        s = await self.store.load(tenant, session_id)
        return pb.GetSessionResponse(
            state=self.state(s), user_id=s.user, collection=s.collection, shown_ids=s.shown
        )

    async def end(self, tenant: str, session_id: str) -> int:
        s = await self.store.load(tenant, session_id)
        await self.store.delete(s)
        return s.round

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
            )
            info.updated.FromNanoseconds(int(h.updated_unix * 1e9))
        return out
