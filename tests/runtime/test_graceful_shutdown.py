"""SIGTERM drains: an in-flight call finishes, new calls are refused, the process exits 0.

Uses the test-only probe service (tests/runtime/probe_service.py) because it needs a handler
that is slow on purpose; it runs on the same shared runtime as the real services.
"""

from __future__ import annotations

import signal
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2

from harness.service_process import SERVICES, running_service

PROBE = {"module": "tests.runtime.probe_service"}


def test_in_flight_call_finishes_after_sigterm_and_process_exits_0() -> None:
    with running_service("probe", {"FACESEARCH_PROBE_SHUTDOWN_GRACE_S": "10"}, **PROBE) as svc:
        channel = svc.channel()
        sleep = channel.unary_unary("/facesearch.test.Probe/Sleep")
        in_flight = sleep.future(b"1.5", timeout=20)
        time.sleep(0.4)  # the call is now being handled
        svc.signal(signal.SIGTERM)
        assert in_flight.result() == b"slept 1.5"
        assert svc.wait(timeout=20) == 0
        messages = [r.get("msg") for r in svc.log_records()]
        assert "shutting down" in messages and messages[-1] == "stopped"


def test_new_calls_are_refused_after_sigterm() -> None:
    with running_service("probe", {"FACESEARCH_PROBE_SHUTDOWN_GRACE_S": "10"}, **PROBE) as svc:
        channel = svc.channel()
        in_flight = channel.unary_unary("/facesearch.test.Probe/Sleep").future(b"2", timeout=20)
        time.sleep(0.4)
        svc.signal(signal.SIGTERM)
        time.sleep(0.5)  # still draining: the slow call holds the process up
        assert svc.proc.poll() is None
        with pytest.raises(grpc.RpcError) as err:
            channel.unary_unary("/facesearch.test.Probe/WhoAmI")(b"", timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert in_flight.result() == b"slept 2.0"
        assert svc.wait(timeout=20) == 0


def test_call_longer_than_the_grace_period_is_cancelled_and_exit_is_still_0() -> None:
    with running_service("probe", {"FACESEARCH_PROBE_SHUTDOWN_GRACE_S": "0.5"}, **PROBE) as svc:
        in_flight = (
            svc.channel().unary_unary("/facesearch.test.Probe/Sleep").future(b"30", timeout=40)
        )
        time.sleep(0.4)
        started = time.monotonic()
        svc.signal(signal.SIGTERM)
        with pytest.raises(grpc.RpcError):
            in_flight.result()
        assert svc.wait(timeout=20) == 0
        assert time.monotonic() - started < 10


@pytest.mark.parametrize("name", SERVICES)
def test_real_service_exits_0_on_sigterm(tmp_path, name: str) -> None:
    env = {f"FACESEARCH_{name.upper()}_DATA_DIR": str(tmp_path)}
    with running_service(name, env) as svc:
        assert svc.health() == health_pb2.HealthCheckResponse.SERVING
        svc.signal(signal.SIGTERM)
        assert svc.wait(timeout=30) == 0
