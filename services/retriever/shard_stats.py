"""What a shard reports about its vector fields and its size (describe, stats, metrics)."""

from __future__ import annotations

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever.field_index import FieldIndex

# A rough per-record cost of the record dicts plus ids; exact accounting is not worth walking
# every metadata value.
RECORD_BYTES = 200


def field_stats(fields: dict[str, FieldIndex], points: int) -> list[pb.VectorFieldStats]:
    """Per field; ``points``: the shard's live records (what a field's coverage is out of)."""
    out = []
    for name, fi in fields.items():
        eff = pb.IndexParams()
        eff.CopyFrom(fi.spec.index)
        if fi.kind == pb.INDEX_KIND_FLAT:
            state = pb.BUILD_STATE_EXACT
        elif fi.ann is not None:
            state = pb.BUILD_STATE_READY
            if fi.ann.nlist:
                eff.nlist = fi.ann.nlist
            if fi.kind == pb.INDEX_KIND_IVF_PQ:
                eff.nprobe = fi.ann.width(fi.spec.index)
            else:
                eff.ef_search = fi.ann.width(fi.spec.index)
            if fi.ann.tuning and eff.tuning_objective:
                # The objective the width was chosen by: RECALL_AT_K where ABOVE_THRESHOLD had
                # too few neighbours above min_score in the sample to measure.
                eff.tuning_objective = fi.ann.tuning.objective
        elif fi.building:
            state = pb.BUILD_STATE_BUILDING
        else:
            state = pb.BUILD_STATE_EXACT
        flat_bytes = fi.flat.ntotal * (fi.spec.dimension * 4 + 16)
        out.append(
            pb.VectorFieldStats(
                name=name,
                build_state=state,
                build_progress=fi.progress if fi.building else (1.0 if fi.ann else 0.0),
                effective_index=eff,
                tombstones=len(fi.tombstones),
                vectors=fi.flat.ntotal,
                points_without=max(points - fi.flat.ntotal, 0),
                similarity_profile=fi.profile.to_proto() if fi.profile else None,
                indexed_vectors=fi.indexed,
                pending_purge=len(fi.purge) if fi.ann is not None else 0,
                index_bytes=flat_bytes + (fi.ann.nbytes if fi.ann else 0),
                measured_recall=fi.ann.tuning.recall if fi.ann and fi.ann.tuning else 0.0,
                measured_above_threshold_recall=(
                    fi.ann.tuning.above_threshold_recall if fi.ann and fi.ann.tuning else 0.0
                ),
            )
        )
    return out


def memory_bytes(stats: list[pb.VectorFieldStats], records: int) -> int:
    return sum(s.index_bytes for s in stats) + records * RECORD_BYTES
