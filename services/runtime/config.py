"""Configuration: defaults that work on a laptop, one optional YAML file, environment variables.

Precedence, lowest first: the defaults below; the file named by ``FACESEARCH_CONFIG`` (one file
for the whole suite, a section per service plus ``common``); environment variables
``FACESEARCH_<SERVICE>_<KEY>`` then ``FACESEARCH_<KEY>`` (e.g. ``FACESEARCH_RETRIEVER_PORT=50052``,
``FACESEARCH_AUTH_ENABLED=true``). Values from the environment are parsed as YAML scalars, so
``true``, ``8`` and ``0.5`` get their natural types.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PORTS = {"embedder": 50051, "retriever": 50052, "personalizer": 50053}
DEFAULT_METRICS_PORTS = {"embedder": 9101, "retriever": 9102, "personalizer": 9103}


@dataclass
class ServerConfig:
    """What every service process needs; each service adds its own keys under ``extra``."""

    service: str
    host: str = "127.0.0.1"
    port: int = 0
    # 0 disables the metrics endpoint (tests that start many processes may want that).
    metrics_port: int = -1
    metrics_host: str = "127.0.0.1"
    # Seconds in-flight calls get to finish after SIGTERM before they are cancelled.
    shutdown_grace_s: float = 10.0
    max_message_mb: int = 64
    # Concurrent RPCs a process works on; more wait in gRPC's queue.
    max_concurrent_rpcs: int = 256
    log_level: str = "INFO"
    log_format: str = "json"
    # Auth is off by default on localhost and on in the deploy configs.
    auth_enabled: bool = False
    # API key -> tenant. Prefer auth_keys_file (YAML mapping) so keys stay out of the env.
    auth_keys: dict[str, str] = field(default_factory=dict)
    auth_keys_file: str = ""
    # The tenant of every call when auth is off.
    default_tenant: str = "default"
    # TLS: server certificate and key; with tls_client_ca set, clients must present a
    # certificate (mTLS) and its common name is their tenant unless an API key says otherwise.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    # Certificate CNs of the facesearch services themselves (mTLS): only they may call on
    # behalf of another tenant (the personalizer calling the retriever for its caller).
    trusted_peers: list[str] = field(default_factory=list)
    # Addresses of the other services, for calls one service makes to another.
    embedder_address: str = "127.0.0.1:50051"
    retriever_address: str = "127.0.0.1:50052"
    personalizer_address: str = "127.0.0.1:50053"
    # Upper bound on a call to another service when the incoming call has no deadline.
    downstream_timeout_s: float = 30.0
    data_dir: str = "./data"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def max_message_bytes(self) -> int:
        return self.max_message_mb * 1024 * 1024

    def get(self, key: str, default: Any = None) -> Any:
        """A service-specific setting (from the file's service section or the environment)."""
        return self.extra.get(key, default)


class _StringKeyLoader(yaml.SafeLoader):
    """Reads every scalar as the text written, so a key like 0123 stays '0123' (not octal 83)."""


# Resolvers are per class: dropping the implicit ones on the subclass leaves SafeLoader as is.
_StringKeyLoader.yaml_implicit_resolvers = {}


def _parse_scalar(raw: str) -> Any:
    """An env value as YAML, so true, 8 and 0.5 get their types; but text that only looks like
    a mapping or list to YAML (a key prefix "fs:p:", a URL) stays text unless it is written
    as one ({...} or [...])."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    if isinstance(value, (dict, list)) and not raw.lstrip().startswith(("{", "[")):
        return raw
    return raw if value is None else value


def _coerce(value: Any, like: Any) -> Any:
    if isinstance(like, bool):
        if isinstance(value, str):
            return value.strip().lower() in {"1", "true", "yes", "on"}
        return bool(value)
    if isinstance(like, int) and not isinstance(like, bool):
        return int(value)
    if isinstance(like, float):
        return float(value)
    if isinstance(like, list):
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return [str(v) for v in value]
    if isinstance(like, dict):
        if isinstance(value, str):
            value = yaml.safe_load(value) or {}
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping, got {value!r}")
        # YAML reads an all-digit API key as a number: keys and tenants are strings.
        return {str(k): str(v) for k, v in value.items()}
    return value if not isinstance(like, str) else str(value)


def load_config(service: str, env: dict[str, str] | None = None) -> ServerConfig:
    env = dict(os.environ if env is None else env)
    merged: dict[str, Any] = {}
    path = env.get("FACESEARCH_CONFIG", "")
    if path:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping with 'common' and per-service sections")
        merged.update(data.get("common") or {})
        merged.update(data.get(service) or {})
    known = {f.name: f for f in fields(ServerConfig)}
    service_prefix = f"FACESEARCH_{service.upper()}_"
    # Generic keys first so the service-specific ones win.
    for prefix in ("FACESEARCH_", service_prefix):
        for name, raw in env.items():
            if not name.startswith(prefix) or name == "FACESEARCH_CONFIG":
                continue
            key = name[len(prefix) :].lower()
            # FACESEARCH_RETRIEVER_ADDRESS is the generic key retriever_address (every service
            # needs to know where the retriever is), while FACESEARCH_RETRIEVER_DATA_DIR is the
            # retriever's own data_dir: a known generic key wins, then the service prefix.
            if prefix == "FACESEARCH_" and key not in known:
                if key.split("_", 1)[0] in DEFAULT_PORTS:
                    continue  # a service-specific variable (this service's or another's)
            if prefix == service_prefix and f"{service}_{key}" in known:
                continue  # read above as a generic key
            merged[key] = _parse_scalar(raw)

    cfg = ServerConfig(service=service)
    for key, value in merged.items():
        if key in known and key not in {"service", "extra"}:
            setattr(cfg, key, _coerce(value, getattr(cfg, key)))
        else:
            cfg.extra[key] = value
    if cfg.port == 0 and "port" not in merged:
        cfg.port = DEFAULT_PORTS.get(service, 0)
    if cfg.metrics_port == -1:
        cfg.metrics_port = DEFAULT_METRICS_PORTS.get(service, 0)
    if cfg.auth_keys_file:
        keys = yaml.load(Path(cfg.auth_keys_file).read_text(), Loader=_StringKeyLoader) or {}
        if not isinstance(keys, dict):
            raise ValueError(f"{cfg.auth_keys_file}: expected 'key: tenant' lines")
        cfg.auth_keys = {**{str(k): str(v) for k, v in keys.items()}, **cfg.auth_keys}
    if cfg.auth_enabled and not cfg.auth_keys and not cfg.tls_client_ca_file:
        raise ValueError(
            "auth is enabled but no API keys are configured: set FACESEARCH_AUTH_KEYS_FILE "
            "(a YAML mapping of key: tenant) or FACESEARCH_TLS_CLIENT_CA_FILE for mTLS"
        )
    return cfg
