"""Who may call the internal shard service (RetrieverShard): with auth on, only a trusted peer,
i.e. an mTLS client certificate whose CN is in ``trusted_peers`` and no API key. Tenants are
PERMISSION_DENIED: shards are addressed by the router's uid, not by the tenant's names, so a
tenant reaching them directly would bypass its own tenancy.

The call pipeline has authenticated the caller already (bad credentials never get here); this
check only decides whether that caller is one of the facesearch services.
"""

from __future__ import annotations

import grpc

from facesearch_server.runtime.auth import API_KEY_HEADER
from facesearch_server.runtime.config import ServerConfig
from facesearch_server.runtime.errors import PermissionDenied

SERVICE = "facesearch.v1.RetrieverShard"


def require_trusted_peer(context: grpc.aio.ServicerContext, cfg: ServerConfig) -> None:
    if not cfg.auth_enabled:
        return  # as for every service with auth off: the network is the boundary
    metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
    bearer = metadata.get("authorization", "").lower().startswith("bearer ")
    if API_KEY_HEADER in metadata or bearer:
        # An API key names a tenant even when a trusted certificate carries it.
        raise PermissionDenied(
            f"{SERVICE} is internal to the retriever: API keys (tenants) may not call it; "
            "use the Retriever service"
        )
    names = context.auth_context().get("x509_common_name") or []
    peer = names[0].decode() if names else ""
    if peer not in cfg.trusted_peers:
        raise PermissionDenied(
            f"{SERVICE} is internal to the retriever: only the certificates named in "
            f"trusted_peers may call it, not {peer or 'a caller without a certificate'!r}"
        )
