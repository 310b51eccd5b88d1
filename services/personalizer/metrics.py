"""The personalizer's own Prometheus metrics: how interactive search is going."""

from __future__ import annotations

from prometheus_client import Counter

SESSIONS_STARTED = Counter(
    "facesearch_personalizer_sessions_started_total", "Interactive sessions started."
)
FEEDBACK_ROUNDS = Counter(
    "facesearch_personalizer_feedback_rounds_total",
    "Feedback rounds answered, by whether the session finished with them.",
    ["finished"],
)
