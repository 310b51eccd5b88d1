"""The typed settings classes: types and defaults, unknown keys and bad values as start-up
errors that name the key and where it came from, the shared environment (other services' and
the SDK's variables), and the README tables generated from the classes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from facesearch.settings import ClientSettings
from facesearch_server.runtime.config import SettingsError, load_config
from facesearch_server.runtime.settings import DEFAULT_METRICS_PORTS, DEFAULT_PORTS, ServiceSettings
from facesearch_server.runtime.settings_doc import REGENERATE, block, blocks_in
from facesearch_server.runtime.settings_sources import CLIENT_ENV, settings_class
from harness.service_process import REPO_ROOT

SERVICES = ("embedder", "retriever", "personalizer")


def write(tmp: Path, text: str) -> str:
    path = tmp / "facesearch.yaml"
    path.write_text(text)
    return str(path)


def refused(service: str, env: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as err:
        load_config(service, env=env)
    return str(err.value)


# -- types and defaults ---------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_gets_its_own_class_with_typed_defaults(service: str) -> None:
    cfg = load_config(service, env={})
    assert type(cfg) is settings_class(service)
    assert isinstance(cfg, ServiceSettings)
    assert cfg.service == service
    assert cfg.port == DEFAULT_PORTS[service]
    assert cfg.metrics_port == DEFAULT_METRICS_PORTS[service]
    # Every key is documented: the README tables are printed from these descriptions.
    undocumented = [k for k, f in type(cfg).model_fields.items() if not f.description]
    assert not undocumented


def test_values_get_the_declared_types() -> None:
    cfg = load_config(
        "embedder",
        env={
            "FACESEARCH_EMBEDDER_MAX_BATCH": "8",
            "FACESEARCH_EMBEDDER_SCORE_THRESHOLD": "0.5",
            "FACESEARCH_EMBEDDER_ORT_SPINNING": "yes",
            "FACESEARCH_EMBEDDER_BACKEND": "TRITON",
        },
    )
    assert (cfg.max_batch, cfg.score_threshold, cfg.ort_spinning) == (8, 0.5, True)
    assert cfg.backend == "triton"
    p = load_config("personalizer", env={"FACESEARCH_PERSONALIZER_TRAIN_BUDGET_MS": "20"})
    assert p.train_budget_ms == 20.0 and isinstance(p.train_budget_ms, float)
    assert p.k == 8


def test_settings_defaults_agree_with_the_service_dataclasses() -> None:
    """The settings classes hold the defaults the services run with; the dataclasses the
    services build from them keep defaults for library use, which must not drift apart."""
    from facesearch_server.embedder.image_decode import ImageLimits
    from facesearch_server.embedder.pipeline import DetectionSettings
    from facesearch_server.personalizer.__main__ import sessions_config
    from facesearch_server.personalizer.sessions import SessionsConfig
    from facesearch_server.retriever.collection import Limits

    r = load_config("retriever", env={})
    assert Limits(r.max_k, r.max_upsert_batch, r.max_search_batch) == Limits()
    e = load_config("embedder", env={})
    assert ImageLimits(max_bytes=e.max_image_bytes, max_pixels=e.max_image_pixels) == (
        ImageLimits()
    )
    assert DetectionSettings(e.max_faces, e.min_face_size, e.score_threshold) == (
        DetectionSettings()
    )
    assert sessions_config(load_config("personalizer", env={})) == SessionsConfig()
    tuned = load_config(
        "personalizer",
        env={"FACESEARCH_PERSONALIZER_TRAIN_BUDGET_MS": "20", "FACESEARCH_PERSONALIZER_K": "4"},
    )
    assert sessions_config(tuned).round.training.time_budget_s == pytest.approx(0.02)
    assert sessions_config(tuned).default_k == 4


# -- precedence -----------------------------------------------------------------------------


def test_a_service_key_follows_the_same_precedence_as_the_common_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "common:\n  max_k: 5\nretriever:\n  max_k: 6\n")
    env = {
        "FACESEARCH_CONFIG": path,
        "FACESEARCH_MAX_K": "7",
        "FACESEARCH_RETRIEVER_MAX_K": "8",
    }
    order = []
    for name in ("FACESEARCH_RETRIEVER_MAX_K", "FACESEARCH_MAX_K", "FACESEARCH_CONFIG"):
        order.append(load_config("retriever", env=env).max_k)
        env.pop(name)
    order.append(load_config("retriever", env=env).max_k)
    assert order == [8, 7, 6, 1000]
    env = {"FACESEARCH_CONFIG": write(tmp_path, "common:\n  max_k: 5\n")}
    assert load_config("retriever", env=env).max_k == 5


def test_the_address_variables_are_the_generic_keys_for_every_service() -> None:
    env = {"FACESEARCH_RETRIEVER_ADDRESS": "retriever:1", "FACESEARCH_EMBEDDER_ADDRESS": "e:2"}
    for service in SERVICES:
        cfg = load_config(service, env=env)
        assert (cfg.retriever_address, cfg.embedder_address) == ("retriever:1", "e:2")
    # The service-prefixed form of a generic key still works for that one service.
    env["FACESEARCH_PERSONALIZER_RETRIEVER_ADDRESS"] = "router:3"
    assert load_config("personalizer", env=env).retriever_address == "router:3"
    assert load_config("retriever", env=env).retriever_address == "retriever:1"


def test_redis_url_is_an_explicit_alias_below_every_facesearch_source(tmp_path: Path) -> None:
    assert load_config("personalizer", env={"REDIS_URL": "redis://a/0"}).redis_url == "redis://a/0"
    env = {"REDIS_URL": "redis://a/0", "FACESEARCH_PERSONALIZER_REDIS_URL": "redis://b/0"}
    assert load_config("personalizer", env=env).redis_url == "redis://b/0"
    path = write(tmp_path, "personalizer:\n  redis_url: redis://c/0\n")
    env = {"REDIS_URL": "redis://a/0", "FACESEARCH_CONFIG": path}
    assert load_config("personalizer", env=env).redis_url == "redis://c/0"
    # Only the personalizer reads it; the others ignore a variable that is not theirs.
    assert load_config("retriever", env={"REDIS_URL": "redis://a/0"}).port == 50052


# -- unknown keys ---------------------------------------------------------------------------


def test_a_misspelt_service_variable_names_itself_and_the_likely_key() -> None:
    message = refused("retriever", {"FACESEARCH_RETRIEVER_MAX_KK": "5"})
    assert "FACESEARCH_RETRIEVER_MAX_KK" in message
    assert "did you mean FACESEARCH_RETRIEVER_MAX_K?" in message
    # A common key with the service prefix is checked just the same.
    message = refused("embedder", {"FACESEARCH_EMBEDDER_SHUTDOWN_GRACE": "5"})
    assert "did you mean FACESEARCH_EMBEDDER_SHUTDOWN_GRACE_S?" in message


def test_a_misspelt_key_in_the_services_own_file_section(tmp_path: Path) -> None:
    path = write(tmp_path, "retriever:\n  snapshot_interval: 30\n")
    message = refused("retriever", {"FACESEARCH_CONFIG": path})
    assert path in message and "'retriever'" in message and "'snapshot_interval'" in message
    assert "did you mean snapshot_interval_s?" in message
    # Another service's section is that service's to check.
    assert load_config("embedder", env={"FACESEARCH_CONFIG": path}).port == 50051


def test_a_key_in_common_must_be_known_to_some_service(tmp_path: Path) -> None:
    path = write(tmp_path, "common:\n  log_levle: DEBUG\n")
    for service in SERVICES:
        message = refused(service, {"FACESEARCH_CONFIG": path})
        assert "'log_levle'" in message and "'common'" in message
        assert "did you mean log_level?" in message
    # A key only the embedder reads may sit in common: the others leave it alone.
    path = write(tmp_path, "common:\n  max_batch: 16\n")
    assert load_config("embedder", env={"FACESEARCH_CONFIG": path}).max_batch == 16
    assert not hasattr(load_config("retriever", env={"FACESEARCH_CONFIG": path}), "max_batch")


def test_every_misspelt_name_is_reported_at_once(tmp_path: Path) -> None:
    # Three typos in three places: one start names all of them, not one per start.
    path = write(tmp_path, "common:\n  log_levle: DEBUG\nretriever:\n  max_kk: 5\n")
    message = refused(
        "retriever", {"FACESEARCH_CONFIG": path, "FACESEARCH_RETRIEVER_SNAPSHOT_INTERVAL": "9"}
    )
    assert message.startswith("3 unknown settings: "), message
    assert "did you mean log_level?" in message
    assert "did you mean max_k?" in message
    assert "did you mean FACESEARCH_RETRIEVER_SNAPSHOT_INTERVAL_S?" in message
    # And a right load after it is not haunted by the earlier one's findings.
    assert load_config("retriever", env={}).max_k > 0


def test_a_misspelt_section_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "retreiver:\n  max_k: 5\n")
    message = refused("embedder", {"FACESEARCH_CONFIG": path})
    assert "'retreiver'" in message and "did you mean retriever?" in message


def test_a_generic_variable_no_service_or_client_reads_is_an_error() -> None:
    for service in SERVICES:
        message = refused(service, {"FACESEARCH_AUTH_ENABLD": "true"})
        assert "FACESEARCH_AUTH_ENABLD" in message
        assert "did you mean FACESEARCH_AUTH_ENABLED?" in message


def test_a_generic_variable_of_another_service_is_left_to_it() -> None:
    env = {"FACESEARCH_MAX_BATCH": "16", "FACESEARCH_MAX_K": "50"}
    assert load_config("embedder", env=env).max_batch == 16
    assert load_config("retriever", env=env).max_k == 50
    assert load_config("personalizer", env=env).k == 8


def test_other_services_variables_are_ignored_even_misspelt() -> None:
    env = {
        "FACESEARCH_EMBEDDER_MAX_BACH": "16",
        "FACESEARCH_EMBEDDER_PORT": "7000",
        "FACESEARCH_PERSONALIZER_REDIS_URL": "redis://x/0",
    }
    assert load_config("retriever", env=env).port == DEFAULT_PORTS["retriever"]
    assert "FACESEARCH_EMBEDDER_MAX_BACH" in refused("embedder", env)


def test_the_sdks_variables_are_ignored_and_listed_completely() -> None:
    class Recording(dict[str, str]):
        def __init__(self) -> None:
            super().__init__()
            self.asked: set[str] = set()

        def get(self, key, default=None):  # type: ignore[no-untyped-def, override]
            self.asked.add(key)
            return super().get(key, default)

    env = Recording()
    ClientSettings.from_env(env)
    read_by_sdk = {n for n in env.asked if n.startswith("FACESEARCH_")}
    service_vars = {f"FACESEARCH_{k.upper()}" for k in ServiceSettings.model_fields}
    assert read_by_sdk - service_vars <= CLIENT_ENV, "list the SDK's new names in CLIENT_ENV"
    shell = {name: "1" for name in read_by_sdk | CLIENT_ENV}
    shell.update({f"FACESEARCH_{s.upper()}_ADDRESS": f"{s}:1" for s in SERVICES})
    shell["FACESEARCH_TLS"] = "true"
    for service in SERVICES:
        assert load_config(service, env=shell).retriever_address == "retriever:1"


# -- bad values -----------------------------------------------------------------------------


def test_a_bad_value_names_the_key_and_where_it_came_from(tmp_path: Path) -> None:
    message = refused("retriever", {"FACESEARCH_RETRIEVER_PORT": "abc"})
    assert "port" in message and "'abc'" in message
    assert "FACESEARCH_RETRIEVER_PORT" in message
    path = write(tmp_path, "common:\n  metrics_port: 70000\n")
    message = refused("embedder", {"FACESEARCH_CONFIG": path})
    assert "metrics_port" in message and path in message and "'common'" in message
    message = refused("embedder", {"FACESEARCH_EMBEDDER_BACKEND": "onnx"})
    assert "backend" in message and "FACESEARCH_EMBEDDER_BACKEND" in message
    message = refused("personalizer", {"FACESEARCH_DOWNSTREAM_TIMEOUT_S": "0"})
    assert "downstream_timeout_s" in message and "greater than 0" in message
    # A number where text is wanted in the file (YAML would turn 0123 into 83): quote it.
    path = write(tmp_path, "personalizer:\n  redis_prefix: 0123\n")
    assert "redis_prefix" in refused("personalizer", {"FACESEARCH_CONFIG": path})


# -- the README tables ----------------------------------------------------------------------


def test_the_readme_tables_are_what_the_generator_prints() -> None:
    expected = {
        "README.md": "common",
        "services/embedder/README.md": "embedder",
        "services/retriever/README.md": "retriever",
        "services/personalizer/README.md": "personalizer",
    }
    for name, section in expected.items():
        found = blocks_in((REPO_ROOT / name).read_text())
        assert section in found, f"{name} lacks <!-- settings:{section}:begin/end --> markers"
        assert found[section] == block(section), (
            f"{name}: the {section} settings table is out of date; regenerate with: {REGENERATE}"
        )


# -- a real process -------------------------------------------------------------------------


def test_a_service_with_a_misspelt_variable_exits_naming_it(tmp_path: Path) -> None:
    child = {k: v for k, v in os.environ.items() if not k.startswith("FACESEARCH_")}
    child.update(
        {
            "FACESEARCH_RETRIEVER_DATA_DIR": str(tmp_path),
            "FACESEARCH_RETRIEVER_SNAPSHOT_INTERVAL": "5",
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "facesearch_server.retriever"],
        cwd=REPO_ROOT,
        env=child,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "configuration error" in result.stderr
    assert "FACESEARCH_RETRIEVER_SNAPSHOT_INTERVAL" in result.stderr
    assert "did you mean FACESEARCH_RETRIEVER_SNAPSHOT_INTERVAL_S?" in result.stderr
    assert "Traceback" not in result.stderr
