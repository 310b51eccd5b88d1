"""Who is calling: API key (or mTLS client certificate) -> tenant.

The tenant is carried in a context variable for the duration of one RPC; services read it
with ``current_tenant()`` and never from request fields, so a caller cannot name another
tenant's data.
"""

from __future__ import annotations

import contextvars
import hmac
from collections.abc import Iterable, Mapping

import grpc

from facesearch_server.runtime.errors import PermissionDenied, Unauthenticated

_TENANT: contextvars.ContextVar[str] = contextvars.ContextVar("facesearch_tenant")
_CREDENTIAL: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "facesearch_credential", default=()
)

# Calls that need no credentials: probes and tooling must work before a key is issued.
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

API_KEY_HEADER = "x-api-key"
# With mTLS, a service calling another on a caller's behalf names the caller's tenant here;
# honoured only from the certificates listed in trusted_peers.
ON_BEHALF_HEADER = "x-facesearch-on-behalf-of"


def current_tenant() -> str:
    """The tenant of the RPC being handled."""
    try:
        return _TENANT.get()
    except LookupError:  # pragma: no cover - only outside an RPC, a programming error
        raise RuntimeError("current_tenant() called outside an RPC") from None


def forwarded_credentials() -> tuple[tuple[str, str], ...]:
    """Metadata to pass on when this service calls another on the caller's behalf."""
    return _CREDENTIAL.get()


class Authenticator:
    def __init__(
        self,
        enabled: bool,
        keys: Mapping[str, str],
        default_tenant: str = "default",
        mtls: bool = False,
        trusted_peers: Iterable[str] = (),
    ) -> None:
        self.enabled = enabled
        self.trusted_peers = frozenset(trusted_peers)
        self._keys = dict(keys)
        self.default_tenant = default_tenant
        self.mtls = mtls

    def _tenant_for_key(self, key: str) -> str | None:
        # Constant-time comparison so response timing does not leak key prefixes.
        found = None
        for candidate, tenant in self._keys.items():
            if hmac.compare_digest(candidate.encode(), key.encode()):
                found = tenant
        return found

    def _tenant_of_certificate(self, peer: str, metadata: Mapping[str, str]) -> str:
        """A certificate's CN is its tenant, except that a trusted peer (another facesearch
        service) names the tenant it calls for in the on-behalf-of header."""
        on_behalf = metadata.get(ON_BEHALF_HEADER)
        if on_behalf is None:
            return peer
        if peer not in self.trusted_peers:
            raise PermissionDenied(
                f"certificate {peer!r} may not act for another tenant: only the services named "
                "in trusted_peers may send " + ON_BEHALF_HEADER
            )
        return on_behalf

    @staticmethod
    def _key_from_metadata(metadata: Mapping[str, str]) -> str | None:
        if API_KEY_HEADER in metadata:
            return metadata[API_KEY_HEADER]
        auth = metadata.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return None

    def authenticate(self, method: str, context: grpc.aio.ServicerContext) -> None:
        """Bind the caller's tenant for this RPC, or raise Unauthenticated."""
        if method.startswith(PUBLIC_PREFIXES):
            _TENANT.set(self.default_tenant)
            return
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        key = self._key_from_metadata(metadata)
        if not self.enabled:
            _TENANT.set(self.default_tenant)
            _CREDENTIAL.set(((API_KEY_HEADER, key),) if key else ())
            return
        if key is not None:
            tenant = self._tenant_for_key(key)
            if tenant is None:
                raise Unauthenticated("the API key is not valid: check the x-api-key header")
            _TENANT.set(tenant)
            _CREDENTIAL.set(((API_KEY_HEADER, key),))
            return
        if self.mtls:
            names = context.auth_context().get("x509_common_name") or []
            if names:
                tenant = self._tenant_of_certificate(names[0].decode(), metadata)
                _TENANT.set(tenant)
                # Passed on, so the next service acts for this tenant, not for its caller.
                _CREDENTIAL.set(((ON_BEHALF_HEADER, tenant),))
                return
        raise Unauthenticated(
            "no credentials: send an API key in the x-api-key header "
            "(or 'authorization: Bearer <key>')"
        )
