"""Configuration precedence: defaults < YAML file (common < service section) < env
(FACESEARCH_<KEY> < FACESEARCH_<SERVICE>_<KEY>). Pure unit tests of load_config; unknown keys,
bad values and the generated docs: test_settings.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from facesearch_server.runtime.config import DEFAULT_METRICS_PORTS, DEFAULT_PORTS, load_config


def write(tmp: Path, text: str) -> str:
    path = tmp / "facesearch.yaml"
    path.write_text(text)
    return str(path)


def test_laptop_defaults_without_file_or_env() -> None:
    cfg = load_config("retriever", env={})
    assert cfg.host == "127.0.0.1"
    assert cfg.port == DEFAULT_PORTS["retriever"]
    assert cfg.metrics_port == DEFAULT_METRICS_PORTS["retriever"]
    assert cfg.auth_enabled is False
    assert cfg.tls_cert_file == ""
    assert cfg.max_k == 1000


def test_file_overrides_defaults_and_service_section_overrides_common(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "common:\n  log_level: DEBUG\n  shutdown_grace_s: 3\n  port: 6000\n"
        "retriever:\n  port: 6100\n  max_k: 4\n"
        "embedder:\n  port: 6200\n",
    )
    cfg = load_config("retriever", env={"FACESEARCH_CONFIG": path})
    assert cfg.log_level == "DEBUG"
    assert cfg.shutdown_grace_s == 3.0
    assert cfg.port == 6100  # section beats common
    assert cfg.max_k == 4  # a service's own key
    assert load_config("embedder", env={"FACESEARCH_CONFIG": path}).port == 6200
    assert load_config("personalizer", env={"FACESEARCH_CONFIG": path}).port == 6000


def test_env_overrides_file_and_service_env_overrides_generic_env(tmp_path: Path) -> None:
    path = write(tmp_path, "retriever:\n  port: 6100\n  max_k: 4\n  shutdown_grace_s: 3\n")
    env = {
        "FACESEARCH_CONFIG": path,
        "FACESEARCH_SHUTDOWN_GRACE_S": "7.5",
        "FACESEARCH_RETRIEVER_SHUTDOWN_GRACE_S": "9",
        "FACESEARCH_RETRIEVER_PORT": "6111",
        "FACESEARCH_RETRIEVER_MAX_K": "8",
    }
    cfg = load_config("retriever", env=env)
    assert cfg.port == 6111
    assert cfg.shutdown_grace_s == 9.0
    assert cfg.max_k == 8
    env.pop("FACESEARCH_RETRIEVER_SHUTDOWN_GRACE_S")
    assert load_config("retriever", env=env).shutdown_grace_s == 7.5


def test_another_services_variables_do_not_leak(tmp_path: Path) -> None:
    env = {"FACESEARCH_EMBEDDER_PORT": "7000", "FACESEARCH_EMBEDDER_ADDRESS": "x:1"}
    cfg = load_config("retriever", env=env)
    assert cfg.port == DEFAULT_PORTS["retriever"]
    assert cfg.embedder_address == "x:1"  # the generic key, not the embedder's own


def test_env_types_are_coerced_to_the_field_type() -> None:
    env = {"FACESEARCH_AUTH_ENABLED": "yes", "FACESEARCH_AUTH_KEYS": "{k1: t1}"}
    cfg = load_config("embedder", env=env)
    assert cfg.auth_enabled is True
    assert cfg.auth_keys == {"k1": "t1"}
    assert load_config("embedder", env={"FACESEARCH_AUTH_ENABLED": "false"}).auth_enabled is False


def test_keys_file_is_read_and_auth_without_keys_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text("abc: tenant-a\n")
    cfg = load_config(
        "embedder",
        env={"FACESEARCH_AUTH_ENABLED": "true", "FACESEARCH_AUTH_KEYS_FILE": str(keys)},
    )
    assert cfg.auth_keys == {"abc": "tenant-a"}
    with pytest.raises(ValueError, match="FACESEARCH_AUTH_KEYS_FILE"):
        load_config("embedder", env={"FACESEARCH_AUTH_ENABLED": "true"})


def test_config_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected a mapping"):
        load_config("embedder", env={"FACESEARCH_CONFIG": write(tmp_path, "- a\n- b\n")})


def test_config_file_missing_or_not_yaml_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"named by FACESEARCH_CONFIG.*No such file"):
        load_config("embedder", env={"FACESEARCH_CONFIG": str(tmp_path / "nope.yaml")})
    with pytest.raises(ValueError, match=r"named by FACESEARCH_CONFIG.*not valid YAML"):
        load_config("embedder", env={"FACESEARCH_CONFIG": write(tmp_path, "common: [a\n")})


def test_text_logs_keep_the_extra_fields() -> None:
    # log_format text: the serving line's address (port 0) must not be lost.
    import logging

    from facesearch_server.runtime.logs import TextFormatter

    record = logging.LogRecord("x", logging.INFO, "", 0, "serving", (), None)
    record.address = "127.0.0.1:4321"
    line = TextFormatter("retriever").format(record)
    assert line.endswith("retriever INFO serving address=127.0.0.1:4321"), line


def test_peer_addresses_set_for_every_service_reach_every_service() -> None:
    # docker-compose sets these once for all three services.
    env = {
        "FACESEARCH_RETRIEVER_ADDRESS": "retriever:50052",
        "FACESEARCH_EMBEDDER_ADDRESS": "embedder:50051",
        "FACESEARCH_RETRIEVER_DATA_DIR": "/data",
    }
    for service in ("embedder", "retriever", "personalizer"):
        cfg = load_config(service, env=env)
        assert cfg.retriever_address == "retriever:50052", service
        assert cfg.embedder_address == "embedder:50051", service
    assert load_config("retriever", env=env).data_dir == "/data"
    assert load_config("personalizer", env=env).data_dir == "./data"
    # A service-specific peer address still wins for that service only.
    env["FACESEARCH_PERSONALIZER_RETRIEVER_ADDRESS"] = "router:50052"
    assert load_config("personalizer", env=env).retriever_address == "router:50052"
    assert load_config("embedder", env=env).retriever_address == "retriever:50052"


def test_api_keys_stay_strings(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text("0123: acme\n123456: globex\nyes: initech\n")
    cfg = load_config(
        "retriever",
        env={"FACESEARCH_AUTH_ENABLED": "true", "FACESEARCH_AUTH_KEYS_FILE": str(keys)},
    )
    assert cfg.auth_keys == {"0123": "acme", "123456": "globex", "yes": "initech"}
    cfg = load_config(
        "retriever", env={"FACESEARCH_AUTH_ENABLED": "true", "FACESEARCH_AUTH_KEYS": "{42: acme}"}
    )
    assert cfg.auth_keys == {"42": "acme"}


def test_text_that_looks_like_yaml_stays_text() -> None:
    env = {
        "FACESEARCH_PERSONALIZER_REDIS_PREFIX": "fs:p:",
        "FACESEARCH_PERSONALIZER_REDIS_URL": "redis://host:6379/0",
        "FACESEARCH_RETRIEVER_SHARD_SERVERS": "[a:1, b:2]",
    }
    cfg = load_config("personalizer", env=env)
    assert cfg.redis_prefix == "fs:p:"
    assert cfg.redis_url == "redis://host:6379/0"
    assert load_config("retriever", env=env).shard_servers == ["a:1", "b:2"]
    env["FACESEARCH_RETRIEVER_SHARD_SERVERS"] = "a:1, b:2"
    assert load_config("retriever", env=env).shard_servers == ["a:1", "b:2"]
    # A text key takes the env text as written, even when YAML would read a number or bool.
    env = {"FACESEARCH_PERSONALIZER_REDIS_PREFIX": "0123", "FACESEARCH_DEFAULT_TENANT": "yes"}
    cfg = load_config("personalizer", env=env)
    assert (cfg.redis_prefix, cfg.default_tenant) == ("0123", "yes")
