"""Search: plain nearest-neighbour queries in batches, and multi-term queries (vector,
stored point, enrolled person) fused by weighted sum or reciprocal rank fusion.

A multi-term query gathers candidates from each positive term's nearest neighbours, then scores
every candidate exactly on every term from its stored vectors, so a record found by one term is
still scored on the others (a face that matches the description but was not in the face term's
top list is ranked by both).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import filters
from facesearch_server.retriever import validation as check
from facesearch_server.retriever.collection import Collection, Limits, person_filter
from facesearch_server.retriever.shard_router import CallBudget, ShardSearch
from facesearch_server.retriever.shard_search import FieldSearch
from facesearch_server.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from facesearch_server.runtime.validation import batch_size

RRF_K = 60
MAX_PERSON_FACES = 1_000


@dataclass
class Term:
    spec: pb.VectorFieldSpec
    weight: float
    source: str
    proto: pb.QueryTerm
    path: str
    vectors: np.ndarray | None = None  # (m, d) query vectors once resolved


@dataclass
class Plan:
    index: int
    terms: list[Term]
    k: int
    flt: cpb.Filter | None
    pred: filters.Predicate | None
    fusion: int
    exclude: list[str]
    min_score: float | None

    @property
    def simple(self) -> bool:
        return len(self.terms) == 1 and self.terms[0].source == "vector"


def plan(coll: Collection, q: pb.Query, i: int, limits: Limits) -> Plan:
    path = f"queries[{i}]"
    if not q.terms:
        raise InvalidArgument(f"{path}.terms", "is empty: give at least one term")
    if len(q.terms) > check.MAX_TERMS:
        raise InvalidArgument(
            f"{path}.terms", f"has {len(q.terms)} terms; at most {check.MAX_TERMS}"
        )
    if not 1 <= q.k <= limits.max_k:
        raise InvalidArgument(f"{path}.k", f"is {q.k}; it must be between 1 and {limits.max_k}")
    if len(q.exclude_ids) > check.MAX_EXCLUDE:
        raise InvalidArgument(
            f"{path}.exclude_ids",
            f"has {len(q.exclude_ids):,} ids; at most {check.MAX_EXCLUDE:,}",
        )
    for j, xid in enumerate(q.exclude_ids):
        if len(xid.encode()) > check.MAX_EXCLUDE_ID_BYTES:
            raise InvalidArgument(
                f"{path}.exclude_ids[{j}]",
                f"is {len(xid.encode())} bytes; ids are at most {check.MAX_EXCLUDE_ID_BYTES} bytes",
            )
    terms = []
    for j, t in enumerate(q.terms):
        tpath = f"{path}.terms[{j}]"
        spec = coll.field(t.field, f"{tpath}.field")
        source = t.WhichOneof("source")
        term = Term(spec, t.weight or 1.0, source or "", t, tpath)
        if source == "vector":
            check.check_model(t.model_id, spec, f"{tpath}.model_id")
            term.vectors = check.check_vector(t.vector.values, spec.dimension, f"{tpath}.vector")[
                None, :
            ]
        elif source == "point_id":
            check.check_id(t.point_id, f"{tpath}.point_id", check.MAX_POINT_ID_BYTES)
        elif source == "person_id":
            check.require(t.person_id, f"{tpath}.person_id")
        else:
            raise InvalidArgument(tpath, "set one of vector, point_id or person_id")
        if t.model_id and t.model_id != spec.model_id:
            check.check_model(t.model_id, spec, f"{tpath}.model_id")
        if t.HasField("missing_similarity") and not math.isfinite(t.missing_similarity):
            raise InvalidArgument(
                f"{tpath}.missing_similarity", f"is {t.missing_similarity}; give a finite score"
            )
        terms.append(term)
    if not any(t.weight > 0 for t in terms):
        raise InvalidArgument(
            f"{path}.terms", "at least one term needs a positive weight to find neighbours"
        )
    if q.HasField("min_score") and not math.isfinite(q.min_score):
        # NaN compares false with every score, so it would silently return everything.
        raise InvalidArgument(f"{path}.min_score", f"is {q.min_score}; give a finite score")
    flt = q.filter if q.HasField("filter") and not filters.is_empty(q.filter) else None
    pred = coll.compile(flt, f"{path}.filter")
    return Plan(
        i,
        terms,
        q.k,
        flt,
        pred,
        q.fusion,
        list(q.exclude_ids),
        q.min_score if q.HasField("min_score") else None,
    )


async def search(
    coll: Collection,
    req: pb.SearchRequest,
    limits: Limits,
    b: CallBudget,
    resolve: Callable[[str, str], Collection],
) -> pb.SearchResponse:
    batch_size(req.queries, "queries", limits.max_search_batch)
    if req.params.rescore_top > check.MAX_RESCORE:
        raise InvalidArgument(
            "params.rescore_top", f"is {req.params.rescore_top}; at most {check.MAX_RESCORE:,}"
        )
    plans = [plan(coll, q, i, limits) for i, q in enumerate(req.queries)]
    with_meta = req.with_metadata if req.HasField("with_metadata") else True
    # Results are written in place into the response: building hits with keyword arguments
    # and copying the lists in afterwards cost ~2.5x as much, a quarter of a batch-64
    # search's server time (bench/peers/README.md).
    resp = pb.SearchResponse()
    results = [resp.results.add() for _ in plans]
    done = [False] * len(plans)
    missing: set[int] = set()

    groups: dict[tuple[object, ...], list[Plan]] = {}
    for p in plans:
        if p.simple:
            key = (
                p.terms[0].spec.name,
                p.k,
                p.flt.SerializeToString() if p.flt is not None else b"",
                tuple(p.exclude),
            )
            groups.setdefault(key, []).append(p)
    for group in groups.values():
        first = group[0]
        spec = first.terms[0].spec
        queries = np.vstack([p.terms[0].vectors for p in group]).astype(np.float32)
        search = FieldSearch(
            field=spec.name,
            queries=queries,
            k=first.k,
            pred=first.pred,
            exclude=first.exclude,
            params=req.params,
            with_meta=with_meta,
            with_vectors=req.with_vectors,
        )
        sreq = ShardSearch(search, spec.model_id, first.flt)
        rows, miss = await coll.shards.search(sreq, b, req.allow_partial)
        missing.update(miss)
        for p, row in zip(group, rows, strict=True):
            _fill(
                results[p.index], row, p.terms[0].weight, p.min_score, with_meta, req.with_vectors
            )
            done[p.index] = True

    for p in plans:
        if not done[p.index]:
            res, miss = await _fused(coll, p, req, with_meta, b, resolve)
            results[p.index].MergeFrom(res)
            missing.update(miss)
    partial: list[pb.FieldCoverage] = []
    if (
        any(len(p.terms) > 1 for p in plans)
        or any(not r.hits for r in results)
        or any(t.spec.name != coll.primary for p in plans for t in p.terms)
    ):
        # A fused query, an empty answer or a term on a field some points may lack: was a term
        # one that can never contribute, or one that covers only part of the collection? (Not
        # asked of a plain face search with hits: it costs a report from every shard.)
        partial = await _field_coverage(coll, plans, b)
    resp.missing_shards.extend(sorted(missing))
    resp.partial_fields.extend(partial)
    return resp


def _fill(
    res: pb.QueryResult,
    row: list[tuple[float, pb.Point]],
    weight: float,
    min_score: float | None,
    with_meta: bool,
    with_vectors: bool,
) -> None:
    """One plain query's hits, appended to ``res``: score = weight x similarity."""
    hits = res.hits
    for sim, point in row:
        score = weight * sim
        if min_score is not None and score < min_score:
            continue
        hit = hits.add()
        hit.id = point.id
        hit.score = score
        hit.term_scores.append(sim)
        if with_meta:
            hit.metadata.MergeFrom(point.metadata)
        if with_vectors:
            for name, v in point.vectors.items():
                hit.vectors[name].CopyFrom(v)


async def _field_coverage(
    coll: Collection, plans: list[Plan], b: CallBudget
) -> list[pb.FieldCoverage]:
    """The searched fields that some points lack (they score the term's missing_similarity,
    0 unless set), for the reply to say.
    A vector term on a field no face has a vector in (a text search on a collection indexed
    without captions) would silently add nothing: it is refused, saying what to index."""
    reports = await coll.shards.reports(b)
    if not all(r.available for r in reports):
        return []  # a shard that did not answer may hold the vectors
    stored: dict[str, int] = {}
    without: dict[str, int] = {}
    for r in reports:
        for f in r.fields:
            stored[f.name] = stored.get(f.name, 0) + f.vectors
            without[f.name] = without.get(f.name, 0) + f.points_without
    points = sum(r.points for r in reports)
    for p in plans:
        for t in p.terms:
            if t.source == "vector" and t.weight > 0 and not stored.get(t.spec.name, 0):
                raise FailedPrecondition(
                    f"{t.path}: no face in collection {coll.name!r} has a {t.spec.name!r} "
                    f"vector, so this term cannot find anything; index {t.spec.name} vectors "
                    "first (for a text field: captions, e.g. sidecar .txt files; for a scene "
                    "field: index with an embedder serving its image-text model), or back-fill "
                    "the faces stored before the field was added (`facesearch backfill`)"
                )
    searched = dict.fromkeys(t.spec.name for p in plans for t in p.terms)
    return [
        pb.FieldCoverage(field=name, points=points, points_without=without[name])
        for name in searched
        if without.get(name, 0)
    ]


async def _resolve_terms(
    coll: Collection,
    p: Plan,
    b: CallBudget,
    partial: bool,
    resolve: Callable[[str, str], Collection],
) -> list[int]:
    missing: list[int] = []
    for t in p.terms:
        name = t.spec.name
        if t.source == "point_id":
            got = await coll.shards.get([t.proto.point_id], True, b)
            if not got or name not in got[0].vectors:
                raise NotFound(
                    f"{t.path}.point_id: no point {t.proto.point_id!r} with a {name!r} vector "
                    f"in collection {coll.name!r}"
                )
            t.vectors = np.asarray(got[0].vectors[name].values, dtype=np.float32)[None, :]
        elif t.source == "person_id":
            pc = (
                resolve(t.proto.person_collection, f"{t.path}.person_collection")
                if (t.proto.person_collection)
                else coll
            )
            pspec = pc.fields.get(name)
            if pspec is None or pspec.model_id != t.spec.model_id:
                raise InvalidArgument(
                    f"{t.path}.person_collection",
                    f"collection {pc.name!r} has no {name!r} field of model {t.spec.model_id!r}",
                )
            flt = person_filter(t.proto.person_id)
            pred = pc.compile(flt, f"{t.path}.person_id")
            assert pred is not None
            pts, miss = await pc.shards.get_matching(flt, pred, name, MAX_PERSON_FACES, b, partial)
            missing.extend(miss)
            if not pts:
                raise NotFound(
                    f"{t.path}.person_id: person {t.proto.person_id!r} has no enrolled faces in "
                    f"collection {pc.name!r}"
                )
            mat = np.array([list(x.vectors[name].values) for x in pts], dtype=np.float32)
            if t.proto.person_aggregation == pb.PERSON_AGGREGATION_MEAN:
                mean = mat.mean(axis=0)
                norm = float(np.linalg.norm(mean))
                mat = (mean / norm if norm > 0 else mean)[None, :]
            t.vectors = mat
    return missing


def _similarity(spec: pb.VectorFieldSpec, vecs: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(n,) best similarity of each stored vector to any of the term's query vectors."""
    if spec.metric == pb.METRIC_L2:
        d = ((vecs[:, None, :] - queries[None, :, :]) ** 2).sum(axis=2)
        return (-d).max(axis=1)
    return (vecs @ queries.T).max(axis=1)


async def _fused(
    coll: Collection,
    p: Plan,
    req: pb.SearchRequest,
    with_meta: bool,
    b: CallBudget,
    resolve: Callable[[str, str], Collection],
) -> tuple[pb.QueryResult, list[int]]:
    partial = req.allow_partial
    missing = await _resolve_terms(coll, p, b, partial, resolve)
    kc = min(check.MAX_RESCORE, max(4 * p.k, req.params.rescore_top, 32))
    ranks: list[dict[str, int]] = []
    candidates: dict[str, None] = {}
    for t in p.terms:
        assert t.vectors is not None
        if t.weight <= 0:
            ranks.append({})
            continue
        search = FieldSearch(
            field=t.spec.name,
            queries=t.vectors,
            k=kc,
            pred=p.pred,
            exclude=p.exclude,
            params=req.params,
            with_meta=False,
            with_vectors=False,
        )
        sreq = ShardSearch(search, t.spec.model_id, p.flt)
        rows, miss = await coll.shards.search(sreq, b, partial)
        missing.extend(miss)
        best: dict[str, float] = {}
        for row in rows:
            for sim, point in row:
                best[point.id] = max(sim, best.get(point.id, -np.inf))
        order = sorted(best, key=lambda i: best[i], reverse=True)
        ranks.append({pid: r + 1 for r, pid in enumerate(order)})
        candidates.update(dict.fromkeys(order))
    pts = await coll.shards.get(list(candidates), True, b, allow_partial=partial)
    if not pts:
        return pb.QueryResult(), missing
    term_sims = np.zeros((len(pts), len(p.terms)), dtype=np.float32)
    for j, t in enumerate(p.terms):
        name = t.spec.name
        # A record without the field scores the term's stated neutral similarity (0 unless set):
        # for a log-likelihood term 0 would be the best score, not a neutral one.
        term_sims[:, j] = t.proto.missing_similarity
        rows = [i for i, x in enumerate(pts) if name in x.vectors]
        if rows:
            mat = np.array([list(pts[i].vectors[name].values) for i in rows], dtype=np.float32)
            term_sims[rows, j] = _similarity(t.spec, mat, t.vectors)  # type: ignore[arg-type]
    weights = np.array([t.weight for t in p.terms], dtype=np.float32)
    if p.fusion == pb.FUSION_RRF:
        fused = np.array(
            [
                sum(
                    t.weight / (RRF_K + ranks[j][x.id])
                    for j, t in enumerate(p.terms)
                    if x.id in ranks[j]
                )
                for x in pts
            ],
            dtype=np.float32,
        )
    else:
        fused = term_sims @ weights
    order = np.argsort(-fused, kind="stable")
    res = pb.QueryResult()
    for i in order:
        score = float(fused[i])
        if p.min_score is not None and score < p.min_score:
            continue
        x = pts[i]
        hit = res.hits.add(id=x.id, score=score, term_scores=term_sims[i].tolist())
        if with_meta:
            hit.metadata.MergeFrom(x.metadata)
        if req.with_vectors:
            for name, v in x.vectors.items():
                hit.vectors[name].CopyFrom(v)
        if len(res.hits) >= p.k:
            break
    return res, sorted(set(missing))
