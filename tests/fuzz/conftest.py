"""The fuzz tests' budget: bounded so the whole folder runs in well under a minute on 2 cores.

``fuzz(n)`` is a test's hypothesis settings: ``n`` inputs, times ``FACESEARCH_FUZZ_SCALE``
(default 1; raise it for a longer hunt). ``pytest tests/fuzz --hypothesis-show-statistics``
prints how many inputs each test tried and what kinds (its events). No example database and no
deadline: a slow input is not a failure here (pytest-timeout catches a hang), and nothing is
written into the checkout.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

SCALE = float(os.environ.get("FACESEARCH_FUZZ_SCALE", "1"))


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
