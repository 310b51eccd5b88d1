"""What a Redis failure means to the caller, one mapping for both stores.

Every redis-py error becomes a gRPC status with a message that says what to do, never an
INTERNAL: a Redis out of memory is RESOURCE_EXHAUSTED (it will not pass by retrying at once),
anything else (unreachable, timed out, a refused command, a cluster redirect) is UNAVAILABLE.
A Lua script runs whole or not at all, so "nothing was changed" holds for every failed write
the stores make.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from facesearch_server.runtime.errors import ResourceExhausted, ServiceError, Unavailable


def redis_failure(exc: BaseException, what: str) -> ServiceError:
    """The status for ``exc``, raised while ``what`` (e.g. "storing the session")."""
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError)):
        return Unavailable(
            f"Redis cannot be reached ({detail}) while {what}; nothing was changed, retry when "
            "Redis is back"
        )
    if _out_of_memory(exc):
        return ResourceExhausted(
            f"Redis is out of memory ({detail}) while {what}; nothing was changed: end idle "
            "sessions or raise Redis maxmemory, then retry"
        )
    return Unavailable(f"Redis refused the command ({detail}) while {what}; nothing was changed")


def _out_of_memory(exc: BaseException) -> bool:
    # A write refused inside a Lua script arrives as a plain ResponseError naming OOM.
    return isinstance(exc, OutOfMemoryError) or "OOM command not allowed" in str(exc)


@contextmanager
def redis_call(what: str) -> Iterator[None]:
    """Turns any Redis error raised in the block into the caller's status."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise redis_failure(exc, what) from exc
