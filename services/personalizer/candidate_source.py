"""Where candidate faces come from: one small interface, a backend that asks the retriever
(and, for photo seeds, the embedder) over their gRPC contracts.

Calls carry the caller's credentials and the smaller of the caller's remaining deadline and
the configured bound (runtime.downstream), so the tenant and the deadline hold across
the chain. A failed call is mapped by the runtime's one map (``errors.from_rpc_error``): a
retriever or embedder that cannot be reached is UNAVAILABLE; their own refusals (NOT_FOUND for
another tenant's collection, INVALID_ARGUMENT, ...) are passed on with their message. Reads are
retried on UNAVAILABLE by the channel's gRPC retry policy (``runtime.downstream``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import grpc
import numpy as np

from facesearch_contract.v1 import common_pb2, embedder_pb2, retriever_pb2
from facesearch_contract.v1 import embedder_service_pb2_grpc as emb_grpc
from facesearch_contract.v1 import retriever_service_pb2_grpc as ret_grpc
from facesearch_server.runtime import errors
from facesearch_server.runtime.config import ServerConfig
from facesearch_server.runtime.downstream import call_options, open_channel

Context = grpc.aio.ServicerContext | None


@dataclass
class FaceField:
    """The collection's primary (face) vector field, and its text field when it has one."""

    name: str
    model_id: str
    dim: int
    text_field: str = ""
    text_model_id: str = ""
    # The face field's pair-score quantiles (median, p98) as the retriever reports them
    # (VectorFieldStats.similarity_profile); None when it has too few faces to say.
    profile: tuple[float, float] | None = None
    # Its unit mean direction (SimilarityProfile.centroid); None when not reported.
    centroid: np.ndarray | None = None
    # Faces stored in the field (VectorFieldStats.vectors).
    vectors: int = 0


@dataclass
class Hit:
    id: str
    score: float
    vector: np.ndarray
    metadata: dict[str, common_pb2.MetadataValue] = field(default_factory=dict)


class CandidateSource(Protocol):
    async def face_field(self, collection: str, context: Context = None) -> FaceField: ...

    async def search(
        self,
        collection: str,
        face: FaceField,
        queries: list[tuple[np.ndarray, int]],
        exclude: list[str],
        filter: common_pb2.Filter | None,
        context: Context = None,
    ) -> list[list[Hit]]:
        """One batched search: per (query vector, k) the hits, with their vectors."""
        ...

    async def get(
        self, collection: str, face: FaceField, ids: list[str], context: Context = None
    ) -> list[Hit]: ...

    async def person_hits(
        self,
        collection: str,
        face: FaceField,
        person_id: str,
        k: int,
        filter: common_pb2.Filter | None,
        context: Context = None,
    ) -> list[Hit]: ...

    async def embed_image(
        self, image: bytes, model_id: str, context: Context = None
    ) -> np.ndarray: ...


def _vec(v: common_pb2.Vector) -> np.ndarray:
    return np.asarray(v.values, np.float32)


class GrpcCandidateSource:
    """The retriever (and embedder) over gRPC."""

    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg
        self._channels: list[grpc.aio.Channel] = []

    async def open(self) -> None:
        """Open the channels; inside the server's event loop (aio channels are bound to it)."""
        self._channels = [
            open_channel(self.cfg.retriever_address, self.cfg),
            open_channel(self.cfg.embedder_address, self.cfg),
        ]
        self._retriever = ret_grpc.RetrieverStub(self._channels[0])
        self._embedder = emb_grpc.EmbedderStub(self._channels[1])

    async def close(self) -> None:
        for ch in self._channels:
            await ch.close()

    def _opts(self, context: grpc.aio.ServicerContext | None) -> dict[str, object]:
        return call_options(context, self.cfg.downstream_timeout_s)

    async def _call(self, service: str, fn, request, context):
        try:
            return await fn(request, **self._opts(context))
        except grpc.aio.AioRpcError as exc:
            raise errors.from_rpc_error(exc, service) from exc

    async def face_field(self, collection: str, context=None) -> FaceField:
        reply = await self._call(
            "retriever",
            self._retriever.DescribeCollection,
            retriever_pb2.DescribeCollectionRequest(collection=collection),
            context,
        )
        fields = reply.collection.vector_fields
        f = fields[0]
        # A second field (e.g. "caption", MiniLM) holds text embeddings of the same records.
        t = fields[1] if len(fields) > 1 else None
        stats = {x.name: x for x in reply.collection.field_stats}
        profile, centroid = None, None
        stored = int(stats[f.name].vectors) if f.name in stats else 0
        if f.name in stats and stats[f.name].HasField("similarity_profile"):
            sp = stats[f.name].similarity_profile
            profile = (float(sp.median), float(sp.p98))
            if len(sp.centroid) == f.dimension:
                centroid = np.asarray(sp.centroid, np.float32)
        return FaceField(
            f.name,
            f.model_id,
            int(f.dimension),
            t.name if t else "",
            t.model_id if t else "",
            profile,
            centroid,
            stored,
        )

    def _hits(self, result: retriever_pb2.QueryResult, face: FaceField) -> list[Hit]:
        out = []
        for h in result.hits:
            if face.name in h.vectors:
                out.append(Hit(h.id, h.score, _vec(h.vectors[face.name]), dict(h.metadata)))
        return out

    async def search(self, collection, face, queries, exclude, filter, context=None):
        qs = [
            retriever_pb2.Query(
                terms=[
                    retriever_pb2.QueryTerm(
                        field=face.name,
                        vector=common_pb2.Vector(values=q.tolist()),
                        model_id=face.model_id,
                    )
                ],
                k=k,
                filter=filter,
                exclude_ids=exclude,
            )
            for q, k in queries
        ]
        reply = await self._call(
            "retriever",
            self._retriever.Search,
            retriever_pb2.SearchRequest(
                collection=collection, queries=qs, with_vectors=True, with_metadata=True
            ),
            context,
        )
        return [self._hits(r, face) for r in reply.results]

    async def get(self, collection, face, ids, context=None):
        reply = await self._call(
            "retriever",
            self._retriever.Get,
            retriever_pb2.GetRequest(collection=collection, ids=ids, with_vectors=True),
            context,
        )
        return [
            Hit(p.id, 0.0, _vec(p.vectors[face.name]), dict(p.metadata))
            for p in reply.points
            if face.name in p.vectors
        ]

    async def _search_one(self, collection, query, face, context):  # type: ignore[no-untyped-def]
        """One query's hits, with the stored vectors the exact rescoring needs."""
        reply = await self._call(
            "retriever",
            self._retriever.Search,
            retriever_pb2.SearchRequest(collection=collection, queries=[query], with_vectors=True),
            context,
        )
        return self._hits(reply.results[0], face)

    async def person_hits(self, collection, face, person_id, k, filter, context=None):
        q = retriever_pb2.Query(
            terms=[retriever_pb2.QueryTerm(field=face.name, person_id=person_id)],
            k=k,
            filter=filter,
        )
        return await self._search_one(collection, q, face, context)

    async def embed_image(self, image: bytes, model_id: str, context=None) -> np.ndarray:
        reply = await self._call(
            "embedder",
            self._embedder.EmbedImages,
            embedder_pb2.EmbedImagesRequest(
                images=[embedder_pb2.ImageInput(data=image, media_id="seed")], model_id=model_id
            ),
            context,
        )
        res = reply.results[0]
        if res.error_code:
            raise errors.InvalidArgument("seed.image", res.error_message)
        if not res.faces:
            raise errors.InvalidArgument("seed.image", "no face was found in the image")
        face = res.faces[0]
        if face.model_id and face.model_id != model_id:
            raise errors.FailedPrecondition(
                f"the embedder gave a {face.model_id} embedding; the collection holds {model_id}"
            )
        return _vec(face.embedding)

    async def text_hits(self, collection, face, text, k, filter, context=None):
        if not face.text_field:
            raise errors.FailedPrecondition(
                f"seed.text: collection {collection!r} has no text field to search; start with a "
                "face, a point, a person or no seed"
            )
        reply = await self._call(
            "embedder",
            self._embedder.EmbedText,
            embedder_pb2.EmbedTextRequest(
                texts=[text], role=embedder_pb2.TEXT_ROLE_QUERY, model_id=face.text_model_id
            ),
            context,
        )
        q = retriever_pb2.Query(
            terms=[
                retriever_pb2.QueryTerm(
                    field=face.text_field,
                    vector=reply.embeddings[0],
                    model_id=face.text_model_id,
                )
            ],
            k=k,
            filter=filter,
        )
        return await self._search_one(collection, q, face, context)
