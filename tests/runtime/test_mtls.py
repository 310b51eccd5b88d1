"""mTLS on a real process: the client certificate's CN is the tenant; only trusted peers (the
facesearch services themselves) may act for another tenant; a service's downstream channel
presents its own certificate; the SDK connects with a client certificate. The test
certificates name localhost and 127.0.0.1, the address dialled."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from facesearch.channels import channel_credentials
from facesearch.settings import ClientSettings
from facesearch_server.runtime.auth import ON_BEHALF_HEADER
from facesearch_server.runtime.config import load_config
from facesearch_server.runtime.downstream import open_channel
from harness.service_process import running_service
from harness.tls import certificate_authority

WHO = "/facesearch.test.Probe/WhoAmI"


def _who(channel: grpc.Channel, metadata: tuple = ()) -> str:
    return channel.unary_unary(WHO)(b"", metadata=metadata, timeout=10).decode()


def _channel(address: str, ca: Path, pair: tuple[Path, Path] | None) -> grpc.Channel:
    cert, key = pair or (None, None)
    creds = grpc.ssl_channel_credentials(
        ca.read_bytes(),
        key.read_bytes() if key else None,
        cert.read_bytes() if cert else None,
    )
    return grpc.secure_channel(address, creds)


def test_certificate_identity_and_on_behalf_of(tmp_path: Path) -> None:
    pki = certificate_authority(tmp_path, ["localhost", "archive-a", "personalizer"])
    ca = pki["ca"][0]
    env = {
        "FACESEARCH_AUTH_ENABLED": "true",
        "FACESEARCH_TLS_CERT_FILE": str(pki["localhost"][0]),
        "FACESEARCH_TLS_KEY_FILE": str(pki["localhost"][1]),
        "FACESEARCH_TLS_CLIENT_CA_FILE": str(ca),
        "FACESEARCH_TRUSTED_PEERS": "personalizer",
    }
    personalizer = tuple(p.read_bytes() for p in pki["personalizer"])
    with running_service(
        "probe",
        env,
        module="tests.runtime.probe_service",
        tls_ca=ca.read_bytes(),
        tls_client=personalizer,  # type: ignore[arg-type]
    ) as svc:
        tenant_a = _channel(svc.address, ca, pki["archive-a"])
        assert _who(tenant_a) == "archive-a"
        # A tenant's certificate cannot claim another tenant.
        with pytest.raises(grpc.RpcError) as err:
            _who(tenant_a, ((ON_BEHALF_HEADER, "archive-b"),))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # A trusted service may, and says for whom.
        service = _channel(svc.address, ca, pki["personalizer"])
        assert _who(service, ((ON_BEHALF_HEADER, "archive-b"),)) == "archive-b"
        assert _who(service) == "personalizer"
        # No client certificate: the handshake fails.
        with pytest.raises(grpc.RpcError) as err:
            _who(_channel(svc.address, ca, None))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE

        # A service's own downstream channel presents its certificate (mTLS between services).
        cfg = load_config(
            "personalizer",
            env={
                "FACESEARCH_TLS_CERT_FILE": str(pki["personalizer"][0]),
                "FACESEARCH_TLS_KEY_FILE": str(pki["personalizer"][1]),
                "FACESEARCH_TLS_CLIENT_CA_FILE": str(ca),
            },
        )

        async def downstream_who() -> str:
            async with open_channel(svc.address, cfg) as ch:  # type: ignore[attr-defined]
                return (await ch.unary_unary(WHO)(b"", timeout=10)).decode()

        assert asyncio.run(downstream_who()) == "personalizer"

        # The SDK with a client certificate.
        settings = ClientSettings(
            tls_ca_file=str(ca),
            tls_cert_file=str(pki["archive-a"][0]),
            tls_key_file=str(pki["archive-a"][1]),
        )
        sdk = grpc.secure_channel(svc.address, channel_credentials(settings))
        assert _who(sdk) == "archive-a"
