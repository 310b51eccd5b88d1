"""`facesearch index` options choosing the face field's index when the collection is created:
kind and search-width tuning objective (facesearch.index_choice)."""

from __future__ import annotations

import argparse

from facesearch.index_choice import KINDS, OBJECTIVES, FaceIndex
from facesearch_contract.v1 import retriever_pb2


def face_index_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "face index (when the collection is created; an existing one keeps its own)"
    )
    group.add_argument(
        "--index",
        choices=[k.replace("_", "-") for k in KINDS],
        help="the face field's index: flat = exact search (the retriever's default), hnsw or "
        "ivf-pq = approximate, its search width tuned after each build",
    )
    group.add_argument(
        "--tuning-objective",
        choices=[o.replace("_", "-") for o in OBJECTIVES],
        help="what --target-recall is a share of: recall-at-k (default: recall@10 against "
        "exact search) or above-threshold (only neighbours scoring >= --min-score, for faces "
        "the same person's other photos: a much narrower search for the same identifications)",
    )
    group.add_argument(
        "--target-recall",
        type=float,
        metavar="R",
        help="the recall tuning aims for, in (0, 1] (default 0.95)",
    )
    group.add_argument(
        "--min-score",
        type=float,
        metavar="S",
        help="the score at or above which a result counts (above-threshold needs it): the "
        "face model's match threshold for the collection's size, e.g. SFace 0.64 at 100k faces",
    )


def face_index_of(args: argparse.Namespace) -> FaceIndex | None:
    """The FaceIndex the options ask for; None when none was given (the retriever's default).
    An approximate objective without --index means HNSW."""
    tuning = (args.tuning_objective, args.target_recall, args.min_score)
    if args.index is None and all(v is None for v in tuning):
        return None
    kind = (args.index or "hnsw").replace("-", "_")
    return FaceIndex(
        kind=kind,
        objective=(args.tuning_objective or "recall-at-k").replace("-", "_"),
        target_recall=args.target_recall,
        min_score=args.min_score,
    )


def index_summary(
    spec: retriever_pb2.VectorFieldSpec, stats: retriever_pb2.VectorFieldStats
) -> str:
    """`collections describe`: a field's index, the width and objective in force and what
    tuning measured (both recalls whatever the objective), e.g.
    "hnsw ready, 100,000 of 100,000 in the graph, ef_search 56 tuned for above-threshold
    recall 0.99 (min score 0.64): measured recall@10 0.955, above-threshold 0.995"."""
    eff = stats.effective_index
    kind = retriever_pb2.IndexKind.Name(spec.index.kind).removeprefix("INDEX_KIND_").lower()
    if spec.index.kind in (retriever_pb2.INDEX_KIND_UNSPECIFIED, retriever_pb2.INDEX_KIND_FLAT):
        return "flat (exact search)"
    state = retriever_pb2.BuildState.Name(stats.build_state).removeprefix("BUILD_STATE_").lower()
    line = f"{kind} {state}, {stats.indexed_vectors:,} of {stats.vectors:,} in the index"
    objective = (
        f"above-threshold recall {eff.target_recall:.2f} (min score {eff.min_score:.2f})"
        if eff.tuning_objective == retriever_pb2.TUNING_OBJECTIVE_ABOVE_THRESHOLD
        else f"recall@10 {eff.target_recall:.2f}"
    )
    width = eff.nprobe if spec.index.kind == retriever_pb2.INDEX_KIND_IVF_PQ else eff.ef_search
    name = "nprobe" if spec.index.kind == retriever_pb2.INDEX_KIND_IVF_PQ else "ef_search"
    line += f", {name} {width or 'tuned after the build'} for {objective}"
    if stats.measured_recall:
        line += f": measured recall@10 {stats.measured_recall:.3f}"
        if stats.measured_above_threshold_recall:
            line += f", above-threshold {stats.measured_above_threshold_recall:.3f}"
    return line
