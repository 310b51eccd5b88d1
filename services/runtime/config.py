"""Configuration: defaults that work on a laptop, one optional YAML file, environment variables.

Precedence, lowest first: the defaults of the service's settings class; the file named by
``FACESEARCH_CONFIG`` (one file for the whole suite, a section per service plus ``common``);
environment variables ``FACESEARCH_<KEY>`` then ``FACESEARCH_<SERVICE>_<KEY>`` (e.g.
``FACESEARCH_RETRIEVER_PORT=50052``, ``FACESEARCH_AUTH_ENABLED=true``). Values from the
environment are parsed as YAML scalars, so ``true``, ``8`` and ``0.5`` get their natural types;
text keys take the text as written. The details, and which names are errors:
settings_sources.py. The keys: settings.py and each service's settings.py, tabled in the READMEs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import ValidationError

from facesearch_server.runtime.settings import (
    DEFAULT_METRICS_PORTS,
    DEFAULT_PORTS,
    ServiceSettings,
)
from facesearch_server.runtime.settings_sources import (
    LoadContext,
    SettingsError,
    loading,
    settings_class,
)

# The name the services' code has used for its settings object.
ServerConfig = ServiceSettings

__all__ = [
    "DEFAULT_METRICS_PORTS",
    "DEFAULT_PORTS",
    "ServerConfig",
    "ServiceSettings",
    "SettingsError",
    "load_config",
]


def load_config(service: str, env: Mapping[str, str] | None = None) -> ServiceSettings:
    """The settings of ``service`` (its own class for a product service) from the file and
    ``env`` (default: the process environment). Raises SettingsError (a ValueError) naming the
    key and where it came from; OSError for a file that cannot be read."""
    cls = settings_class(service)
    with loading(service, os.environ if env is None else env) as ctx:
        try:
            settings = cls()
        except ValidationError as exc:
            raise SettingsError(_describe(service, exc, ctx)) from None
    settings._service = service
    return settings


def _describe(service: str, exc: ValidationError, ctx: LoadContext) -> str:
    problems = []
    for err in exc.errors():
        if not err["loc"]:  # a check across keys (auth without keys): its message says it all
            problems.append(err["msg"].removeprefix("Value error, "))
            continue
        key = str(err["loc"][0])
        where = ".".join(str(p) for p in err["loc"])
        problems.append(
            f"{where} = {err['input']!r} from {ctx.origin(key)}: "
            f"{err['msg'].removeprefix('Value error, ')}"
        )
    return f"{service} settings: " + "; ".join(problems)
