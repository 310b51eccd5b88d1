"""The SDK clients against a real server process (the test-only probe service of
tests/runtime, on the shared runtime): API key, default deadline, retries, TLS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from facesearch import ClientSettings, FacesearchClient
from facesearch.aio import AsyncFacesearchClient
from facesearch_contract.v1 import embedder_pb2, personalizer_pb2
from harness.service_process import ServiceProcess, running_service
from harness.tls import self_signed

PROBE = "tests.runtime.probe_service"
KEY = "sdk-test-key-0123456789"


def settings_for(svc: ServiceProcess, **kw: object) -> ClientSettings:
    return ClientSettings(
        embedder_address=svc.address,
        retriever_address=svc.address,
        personalizer_address=svc.address,
        initial_backoff_s=0.05,
        max_backoff_s=0.2,
    ).replace(**kw)


@pytest.fixture
def probe(tmp_path: Path) -> Iterator[ServiceProcess]:
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"{KEY}: tenant-sdk\n")
    env = {
        "FACESEARCH_AUTH_ENABLED": "true",
        "FACESEARCH_AUTH_KEYS_FILE": str(keys),
        "PROBE_FLAKY_FAILS": "2",
    }
    with running_service("probe", env, module=PROBE) as svc:
        yield svc


def attempts(client: FacesearchClient) -> dict[str, int]:
    raw = client.channel("embedder").unary_unary("/facesearch.test.Probe/Attempts")(b"")
    return json.loads(raw)


def test_sync_client_sends_key_retries_idempotent_calls_only(probe: ServiceProcess) -> None:
    with FacesearchClient(settings_for(probe, api_key=KEY)) as client:
        who = client.channel("embedder").unary_unary("/facesearch.test.Probe/WhoAmI")(b"")
        assert who == b"tenant-sdk"
        # ListModels fails UNAVAILABLE twice on purpose, then answers: retried.
        models = client.embedder.ListModels(embedder_pb2.ListModelsRequest())
        assert models.models[0].model_id == "probe-model"
        # StartSession is not idempotent: one attempt, the UNAVAILABLE reaches the caller.
        with pytest.raises(grpc.RpcError) as err:
            client.personalizer.StartSession(personalizer_pb2.StartSessionRequest(user_id="u"))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert attempts(client) == {"ListModels": 3, "StartSession": 1}
        assert client.health("embedder") == "SERVING"


def test_sync_client_without_key_is_unauthenticated(probe: ServiceProcess) -> None:
    with FacesearchClient(settings_for(probe)) as client:
        with pytest.raises(grpc.RpcError) as err:
            client.embedder.ListModels(embedder_pb2.ListModelsRequest())
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_default_deadline_applies_and_an_explicit_one_wins(probe: ServiceProcess) -> None:
    with FacesearchClient(settings_for(probe, api_key=KEY, timeout_s=0.3)) as client:
        sleep = client.channel("embedder").unary_unary("/facesearch.test.Probe/Sleep")
        with pytest.raises(grpc.RpcError) as err:
            sleep(b"3")
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert sleep(b"0.5", timeout=5) == b"slept 0.5"


def test_async_client_twin(probe: ServiceProcess) -> None:
    async def scenario() -> None:
        async with AsyncFacesearchClient(settings_for(probe, api_key=KEY, timeout_s=0.3)) as fs:
            who = await fs.channel("embedder").unary_unary("/facesearch.test.Probe/WhoAmI")(b"")
            assert who == b"tenant-sdk"
            reply = await fs.embedder.ListModels(embedder_pb2.ListModelsRequest())
            assert reply.models[0].model_id == "probe-model"
            with pytest.raises(grpc.RpcError) as err:
                await fs.personalizer.StartSession(
                    personalizer_pb2.StartSessionRequest(user_id="u")
                )
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            with pytest.raises(grpc.RpcError) as err:
                await fs.channel("embedder").unary_unary("/facesearch.test.Probe/Sleep")(b"3")
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            raw = await fs.channel("embedder").unary_unary("/facesearch.test.Probe/Attempts")(b"")
            assert json.loads(raw) == {"ListModels": 3, "StartSession": 1}
            assert await fs.health("personalizer") == "SERVING"

    asyncio.run(scenario())


def test_tls_settings(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    env = {"FACESEARCH_TLS_CERT_FILE": str(cert), "FACESEARCH_TLS_KEY_FILE": str(key)}
    with running_service("probe", env, module=PROBE, tls_ca=cert.read_bytes()) as svc:
        trusted = settings_for(svc, tls_ca_file=str(cert), tls_server_name="localhost")
        with FacesearchClient(trusted) as client:
            assert client.health("embedder") == "SERVING"
        with FacesearchClient(settings_for(svc, timeout_s=2)) as plain:
            with pytest.raises(grpc.RpcError) as err:
                plain.embedder.ListModels(embedder_pb2.ListModelsRequest())
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
