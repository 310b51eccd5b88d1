"""Client settings: defaults < FACESEARCH_* environment < explicit arguments (CLI flags)."""

from __future__ import annotations

import json

import grpc
import pytest

from facesearch import FacesearchClient
from facesearch.channels import IDEMPOTENT_METHODS, service_config
from facesearch.settings import DEFAULT_ADDRESSES, ClientSettings
from harness.service_process import free_port


def test_defaults_reach_a_local_serve() -> None:
    settings = ClientSettings.from_env({})
    for service, address in DEFAULT_ADDRESSES.items():
        assert settings.address(service) == address
    assert settings.api_key is None
    assert not settings.uses_tls


def test_env_then_overrides_and_none_means_not_given() -> None:
    env = {
        "FACESEARCH_RETRIEVER_ADDRESS": "10.0.0.2:7000",
        "FACESEARCH_API_KEY": "from-env",
        "FACESEARCH_TLS_CA_FILE": "/ca.pem",
        "FACESEARCH_TIMEOUT_S": "12.5",
    }
    settings = ClientSettings.from_env(env, api_key="from-flag", retriever_address=None)
    assert settings.retriever_address == "10.0.0.2:7000"
    assert settings.api_key == "from-flag"
    assert settings.uses_tls and settings.tls_ca_file == "/ca.pem"
    assert settings.timeout_s == 12.5


def test_bad_timeout_is_explained() -> None:
    with pytest.raises(ValueError, match="FACESEARCH_TIMEOUT_S"):
        ClientSettings.from_env({"FACESEARCH_TIMEOUT_S": "soon"})


def test_retry_policy_covers_only_idempotent_methods() -> None:
    config = json.loads(service_config(ClientSettings(max_attempts=9)))
    (method_config,) = config["methodConfig"]
    names = {(n["service"], n["method"]) for n in method_config["name"]}
    assert ("facesearch.v1.Retriever", "Search") in names
    assert ("facesearch.v1.Retriever", "CreateCollection") not in names
    assert ("facesearch.v1.Personalizer", "SubmitFeedback") not in names
    assert len(names) == sum(len(m) for m in IDEMPOTENT_METHODS.values())
    policy = method_config["retryPolicy"]
    assert policy["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert policy["maxAttempts"] == 5  # gRPC's cap


def test_one_attempt_means_no_retry_policy() -> None:
    # gRPC rejects a retry policy of fewer than 2 attempts (the channel would not work at all).
    (method_config,) = json.loads(service_config(ClientSettings(max_attempts=1)))["methodConfig"]
    assert "retryPolicy" not in method_config
    down = f"127.0.0.1:{free_port()}"
    with FacesearchClient(ClientSettings(embedder_address=down, max_attempts=1)) as client:
        with pytest.raises(grpc.RpcError) as err:
            client.health("embedder", timeout=2)
    # Not INVALID_ARGUMENT from a channel that refused its service config.
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
