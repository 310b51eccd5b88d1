"""Fixtures of the SDK tests: the three real services and a small labelled gallery.

The gallery is 17 LFW photos of 4 people with a caption sidecar each (from
/work/shared/data, i.e. ../shared/data; tests that need it skip in a clone without it).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from facesearch import ClientSettings, FacesearchClient
from harness.service_process import ServiceProcess, start_suite, stop_suite, suite_settings
from harness.shared_data import shared_data_dir

from .apis import AsyncApi, SyncApi, open_async

GALLERY = {
    "Aaron_Peirsol": (4, "a swimmer in goggles at the pool after a race"),
    "Angela_Merkel": (5, "a politician speaking at a podium in parliament"),
    "Abdullah_Gul": (4, "a man in a suit at a press conference"),
    "Andre_Agassi": (4, "a tennis player hitting a ball on the court"),
}


@pytest.fixture(autouse=True)
def _private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`facesearch index` keeps its journal under the user's cache: not the developer's here."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="package")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServiceProcess]]:
    started = start_suite(tmp_path_factory.mktemp("sdk-suite"))
    yield started
    stop_suite(started)


def settings_of(services: dict[str, ServiceProcess], **kw: object) -> ClientSettings:
    return suite_settings(services, **kw)


@pytest.fixture
def client(suite: dict[str, ServiceProcess]) -> Iterator[FacesearchClient]:
    with FacesearchClient(settings_of(suite)) as fs:
        yield fs


@pytest.fixture
def api_settings(suite: dict[str, ServiceProcess]) -> ClientSettings:
    """Where ``api`` connects: the shared suite; a module with a stack of its own overrides it."""
    return settings_of(suite)


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest, api_settings: ClientSettings) -> Iterator[Any]:
    """The SDK's sync or async API (apis.py), each test run once through each."""
    if request.param == "sync":
        with FacesearchClient(api_settings) as fs:
            yield SyncApi(fs)
        return
    with asyncio.Runner() as runner:
        client = runner.run(open_async(api_settings))
        try:
            yield AsyncApi(runner, client)
        finally:
            runner.run(client.close())


@pytest.fixture(scope="package")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<tmp>/<person>/<photo>.jpg plus <photo>.txt captions."""
    data = shared_data_dir()
    if data is None:
        pytest.skip("needs ../shared/data (the LFW photos); absent in this clone")
    root = tmp_path_factory.mktemp("gallery")
    for person, (count, caption) in GALLERY.items():
        photos = sorted((data / "lfw" / "lfw" / person).glob("*.jpg"))[:count]
        assert len(photos) == count, f"expected {count} photos of {person} in {data}"
        (root / person).mkdir()
        for photo in photos:
            shutil.copy(photo, root / person / photo.name)
            (root / person / photo.name).with_suffix(".txt").write_text(caption + "\n")
    return root
