"""A pytest plugin: under CI (``CI=true``) a skipped test fails.

CI must run everything, so a missing tool or a missing ``../shared/data`` is a red build, not a
quiet skip; a user's clone keeps the skips and their reasons. Only tests marked ``needs_gpu``
may skip in CI (no CI machine has a GPU). Loaded by the root conftest.py.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from harness.shared_data import in_ci


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_gpu: needs a CUDA GPU; the only skip allowed in CI")


def _skip_reason(longrepr: object) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if (
        report.skipped
        and in_ci()
        and not hasattr(report, "wasxfail")
        and item.get_closest_marker("needs_gpu") is None
    ):
        report.outcome = "failed"
        report.longrepr = (
            f"skipped under CI=true, where every test must run: {_skip_reason(report.longrepr)}"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and in_ci():
        report.outcome = "failed"
        report.longrepr = (
            f"module skipped under CI=true, where every test must run: "
            f"{_skip_reason(report.longrepr)}"
        )
