"""Where the services are and how to talk to them: client settings from arguments or env.

Environment variables (all optional; the defaults reach ``facesearch serve`` on this host):
``FACESEARCH_EMBEDDER_ADDRESS``, ``FACESEARCH_RETRIEVER_ADDRESS``,
``FACESEARCH_PERSONALIZER_ADDRESS`` (host:port), ``FACESEARCH_API_KEY``,
``FACESEARCH_TLS`` (true to use TLS with the system roots), ``FACESEARCH_TLS_CA_FILE`` (PEM of
the CA to trust; implies TLS), ``FACESEARCH_TLS_SERVER_NAME`` (name the certificate carries,
when dialling an IP), ``FACESEARCH_TIMEOUT_S`` (default deadline of unary calls).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_ADDRESSES = {
    "embedder": "127.0.0.1:50051",
    "retriever": "127.0.0.1:50052",
    "personalizer": "127.0.0.1:50053",
}

# The gRPC service name of each (what health checks ask about).
SERVICE_NAMES = {
    "embedder": "facesearch.v1.Embedder",
    "retriever": "facesearch.v1.Retriever",
    "personalizer": "facesearch.v1.Personalizer",
}

_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class ClientSettings:
    embedder_address: str = DEFAULT_ADDRESSES["embedder"]
    retriever_address: str = DEFAULT_ADDRESSES["retriever"]
    personalizer_address: str = DEFAULT_ADDRESSES["personalizer"]
    # Sent as the x-api-key header on every call; the servers map it to a tenant.
    api_key: str | None = None
    tls: bool = False
    tls_ca_file: str | None = None
    tls_server_name: str | None = None
    # Client certificate and key for mTLS deployments (the certificate's CN is the tenant).
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    # Deadline given to a unary call that names none. Streams get stream_timeout_s, which is
    # unset by default because a bulk index of a large folder may rightly run for hours.
    timeout_s: float = 30.0
    stream_timeout_s: float | None = None
    # Retries of idempotent calls answered UNAVAILABLE (gRPC caps attempts at 5).
    max_attempts: int = 4
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 3.0
    max_message_mb: int = 64

    def address(self, service: str) -> str:
        return str(getattr(self, f"{service}_address"))

    @property
    def uses_tls(self) -> bool:
        return self.tls or bool(self.tls_ca_file) or bool(self.tls_cert_file)

    def replace(self, **changes: object) -> ClientSettings:
        """A copy with the given fields changed; None values are ignored (unset CLI flags)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> ClientSettings:
        """Defaults, then FACESEARCH_* variables, then ``overrides`` (None = not given)."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for service in DEFAULT_ADDRESSES:
            if address := env.get(f"FACESEARCH_{service.upper()}_ADDRESS"):
                values[f"{service}_address"] = address
        if key := env.get("FACESEARCH_API_KEY"):
            values["api_key"] = key
        if tls := env.get("FACESEARCH_TLS"):
            values["tls"] = tls.strip().lower() in _TRUE
        if ca := env.get("FACESEARCH_TLS_CA_FILE"):
            values["tls_ca_file"] = ca
        if name := env.get("FACESEARCH_TLS_SERVER_NAME"):
            values["tls_server_name"] = name
        for key in ("tls_cert_file", "tls_key_file"):
            if path := env.get(f"FACESEARCH_CLIENT_{key.upper()}"):
                values[key] = path
        if timeout := env.get("FACESEARCH_TIMEOUT_S"):
            try:
                values["timeout_s"] = float(timeout)
            except ValueError:
                raise ValueError(
                    f"FACESEARCH_TIMEOUT_S={timeout!r} is not a number of seconds"
                ) from None
        return cls(**values).replace(**overrides)  # type: ignore[arg-type]


# The variables a misspelling of which silently reaches the wrong server or drops the key. Only
# these are compared: the services' own FACESEARCH_TLS_* keys sit too close to the client's TLS
# names to tell a typo from a service setting in the same shell.
_CHECKED_ENV = (
    *(f"FACESEARCH_{service.upper()}_ADDRESS" for service in DEFAULT_ADDRESSES),
    "FACESEARCH_API_KEY",
    "FACESEARCH_TIMEOUT_S",
)


def misspelt_env(env: Mapping[str, str] | None = None) -> list[str]:
    """One line per FACESEARCH_* variable that looks like a misspelt client variable.

    The client ignores variables it does not read (a shell also holds the services' own), so a
    typo in an address would quietly connect to the default one; this names it instead."""
    env = os.environ if env is None else env
    notes = []
    for name in sorted(env):
        if not name.startswith("FACESEARCH_") or name in _CHECKED_ENV:
            continue
        close = difflib.get_close_matches(name, _CHECKED_ENV, n=1, cutoff=0.9)
        if close:
            notes.append(f"{name} is not read (did you mean {close[0]}?)")
    return notes
