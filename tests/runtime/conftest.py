"""Fixtures of the runtime tests: the three real services, started once for the package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.service_process import ServiceProcess, start_suite, stop_suite


@pytest.fixture(scope="package")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServiceProcess]]:
    """embedder, retriever and personalizer, each its own process, metrics on."""
    started = start_suite(tmp_path_factory.mktemp("services"), metrics=True)
    yield started
    stop_suite(started)
