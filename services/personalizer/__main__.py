"""``python -m facesearch_server.personalizer`` (or ``facesearch-personalizer``).

Settings: PersonalizerSettings (services/personalizer/settings.py), tabled in
services/personalizer/README.md.
"""

from __future__ import annotations

from dataclasses import replace

from facesearch_contract.v1 import personalizer_service_pb2_grpc as pb_grpc
from facesearch_server.personalizer.candidate_source import GrpcCandidateSource
from facesearch_server.personalizer.consolidation import ConsolidationParams
from facesearch_server.personalizer.embedded_redis import RedisHandle, open_redis
from facesearch_server.personalizer.head_store import RedisHeadStore
from facesearch_server.personalizer.round_planner import RoundParams
from facesearch_server.personalizer.servicer import PersonalizerServicer
from facesearch_server.personalizer.session_store import SessionStore
from facesearch_server.personalizer.sessions import Sessions, SessionsConfig
from facesearch_server.personalizer.settings import PersonalizerSettings
from facesearch_server.runtime.readiness import ReadinessCheck
from facesearch_server.runtime.server import ServiceDefinition, Servicer, run_service


def sessions_config(cfg: PersonalizerSettings) -> SessionsConfig:
    p = RoundParams()
    p = replace(
        p,
        rescore_top=cfg.rescore_top,
        hub_rounds=cfg.hub_rounds,
        ranking=cfg.ranking,
        posterior=replace(p.posterior, cluster_weight=cfg.posterior_cluster_weight),
        scoring=replace(
            p.scoring,
            negative_weight=cfg.negative_weight,
            likelihood_weight=cfg.likelihood_weight,
            credibility_temperature=cfg.credibility_temperature,
            corroborated_training=cfg.corroborated_training,
            answers=replace(
                p.scoring.answers,
                wrong_share=cfg.wrong_answer_share,
                threshold=(
                    p.scoring.answers.threshold
                    if cfg.likeness_threshold == "collection"
                    else cfg.likeness_threshold
                ),
            ),
        ),
        training=replace(
            p.training, steps=cfg.train_steps, time_budget_s=cfg.train_budget_ms / 1000
        ),
    )
    lasting = replace(
        ConsolidationParams(), steps=cfg.lasting_steps, learning_rate=cfg.lasting_learning_rate
    )
    return SessionsConfig(
        default_k=cfg.k,
        round=p,
        undo_depth=cfg.undo_depth,
        consolidation=lasting,
        exploration_seed=cfg.exploration_seed,
        likeness_from_collection=cfg.likeness_threshold == "collection",
    )


def build(cfg: PersonalizerSettings) -> ServiceDefinition:
    handle: dict[str, RedisHandle] = {}
    source = GrpcCandidateSource(cfg)
    # The stores need the Redis client, which is opened in on_start (inside the event loop).
    sessions = Sessions(None, None, source, sessions_config(cfg))  # type: ignore[arg-type]
    servicer = PersonalizerServicer(cfg, sessions)

    async def start() -> None:
        await source.open()
        h = open_redis(cfg.redis_url, cfg.data_dir, cfg.redis_timeout_s)
        handle["redis"] = h
        sessions.heads = RedisHeadStore(h.client, cfg.redis_prefix)
        sessions.store = SessionStore(h.client, cfg.redis_prefix, cfg.session_ttl_s)

    async def stop() -> None:
        await source.close()
        if "redis" in handle:
            await handle["redis"].close()

    async def redis_answers() -> None:
        # Every RPC reads or writes Redis: without it each one answers UNAVAILABLE. The
        # retriever and embedder are not checked: a call that needs them says so itself, and
        # taking every replica out of service for their outage would only add to it.
        await handle["redis"].client.ping()

    return ServiceDefinition(
        servicers=[
            Servicer(
                "facesearch.v1.Personalizer", servicer, pb_grpc.add_PersonalizerServicer_to_server
            )
        ],
        on_start=[start],
        on_stop=[stop],
        readiness=[ReadinessCheck("redis", redis_answers)],
    )


def main() -> None:
    run_service("personalizer", build)


if __name__ == "__main__":
    main()
