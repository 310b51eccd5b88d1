"""Where settings come from, in what order, and which names are mistakes.

Precedence, lowest first: the class defaults; the file named by ``FACESEARCH_CONFIG`` (its
``common`` section, then the service's own section); ``FACESEARCH_<KEY>``; then
``FACESEARCH_<SERVICE>_<KEY>``. One rule bends that: ``FACESEARCH_RETRIEVER_ADDRESS`` is the
generic key ``retriever_address`` (every service needs to know where the retriever is), not the
retriever's own ``address``. Env values are parsed as YAML scalars (``true``, ``8``, ``0.5``,
``[a:1, b:2]``) except for text keys, which take the text as written.

One environment usually feeds all three services and the SDK (docker-compose, ``facesearch
serve``), so a service ignores the other services' ``FACESEARCH_<OTHER>_*`` variables and the
generic ones that only another service or the SDK reads; everything else that it does not know
is an error naming the variable (or file section) and the closest known key.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import os
import types
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import AliasChoices
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

if TYPE_CHECKING:
    from facesearch_server.runtime.settings import ServiceSettings

# The runtime sits below the services and never imports them by name in its code; it lists
# their settings classes here so that one service can tell another's variables from a typo and
# the docs can show all three. Those modules import only pydantic and the runtime.
SERVICE_SETTINGS = {
    "embedder": "facesearch_server.embedder.settings:EmbedderSettings",
    "retriever": "facesearch_server.retriever.settings:RetrieverSettings",
    "personalizer": "facesearch_server.personalizer.settings:PersonalizerSettings",
}

CONFIG_ENV = "FACESEARCH_CONFIG"

# Read by the SDK (facesearch/settings.py), which the runtime must not import: the same shell
# or compose file often sets them for the services too. FACESEARCH_<SERVICE>_ADDRESS are
# settings of the services as well. Keep in step with ClientSettings.from_env.
CLIENT_ENV = frozenset(
    {
        "FACESEARCH_API_KEY",
        "FACESEARCH_TLS",
        "FACESEARCH_TLS_CA_FILE",
        "FACESEARCH_TLS_SERVER_NAME",
        "FACESEARCH_CLIENT_TLS_CERT_FILE",
        "FACESEARCH_CLIENT_TLS_KEY_FILE",
        "FACESEARCH_TIMEOUT_S",
    }
)

# Read by test tooling in the shell that may also start the services (tests/personalizer).
TOOLING_ENV = frozenset({"FACESEARCH_TEST_REDIS_URL"})


class SettingsError(ValueError):
    """A setting the service does not know, or a value it cannot take; says where it came from."""


def settings_class(service: str) -> type[ServiceSettings]:
    """The settings class of a product service; the base class for any other (test) service."""
    if service not in SERVICE_SETTINGS:
        from facesearch_server.runtime.settings import ServiceSettings

        return ServiceSettings
    module, name = SERVICE_SETTINGS[service].split(":")
    cls: type[ServiceSettings] = getattr(importlib.import_module(module), name)
    return cls


def _suggest(name: str, candidates: set[str] | frozenset[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


@dataclass
class LoadContext:
    """One load: which service, which environment, and the sources it used (for errors)."""

    service: str
    env: Mapping[str, str]
    sources: list[Layer] = field(default_factory=list)
    # Unknown names found so far: all of them are reported at once, so a file or an
    # environment with several typos is fixed in one round, not one typo per start.
    unknown: list[str] = field(default_factory=list)

    def origin(self, key: str) -> str:
        # Sources are in precedence order, highest first: the first one holding the key won.
        for source in self.sources:
            if key in source.values:
                return source.values[key][1]
        return "the default"


_CONTEXT: ContextVar[LoadContext | None] = ContextVar("facesearch_settings_load", default=None)


@contextlib.contextmanager
def loading(service: str, env: Mapping[str, str]) -> Iterator[LoadContext]:
    """Within this block, constructing a settings class reads ``env`` as ``service``."""
    ctx = LoadContext(service, env)
    token = _CONTEXT.set(ctx)
    try:
        yield ctx
    finally:
        _CONTEXT.reset(token)


class Layer(PydanticBaseSettingsSource):
    """The values found in one place (a file section, a family of env variables), each with
    where it came from."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, tuple[Any, str]]):
        super().__init__(settings_cls)
        self.values = values

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        found = self.values.get(field_name)
        return (found[0] if found else None), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {key: value for key, (value, _) in self.values.items()}


def suite_sources(settings_cls: type[BaseSettings]) -> list[Layer]:
    """The sources of one load, highest precedence first."""
    ctx = _CONTEXT.get() or LoadContext(getattr(settings_cls, "service_name", ""), os.environ)
    known = set(settings_cls.model_fields)
    file = _read_file(ctx.env)
    ctx.sources = [
        Layer(settings_cls, _service_env(settings_cls, ctx, known)),
        Layer(settings_cls, _generic_env(settings_cls, ctx, known)),
        Layer(settings_cls, _file_section(file, ctx.service, ctx, known)),
        Layer(settings_cls, _file_section(file, "common", ctx, known)),
    ]
    if ctx.unknown:
        found, ctx.unknown = ctx.unknown, []
        if len(found) == 1:
            raise SettingsError(found[0])
        raise SettingsError(f"{len(found)} unknown settings: " + "; ".join(found))
    given = {key for source in ctx.sources for key in source.values}
    ctx.sources.append(Layer(settings_cls, _alias_env(settings_cls, ctx.env, given)))
    return ctx.sources


def _all_services(ctx: LoadContext) -> set[str]:
    return {*SERVICE_SETTINGS, ctx.service} - {""}


def _keys_of_any_service(ctx: LoadContext, known: set[str]) -> set[str]:
    keys = set(known)
    for service in SERVICE_SETTINGS:
        keys |= set(settings_class(service).model_fields)
    return keys


def _wants_text(annotation: Any) -> bool:
    """Whether an env value for this type is taken as written (not parsed as YAML)."""
    if annotation is str:
        return True
    origin = get_origin(annotation)
    if origin is Literal:
        return all(isinstance(a, str) for a in get_args(annotation))
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return all(_wants_text(a) for a in args)
    return False


def parse_scalar(raw: str) -> Any:
    """An env value as YAML, so true, 8 and 0.5 get their types; but text that only looks like
    a mapping or list to YAML (a key prefix "fs:p:", a URL) stays text unless it is written
    as one ({...} or [...])."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    if isinstance(value, (dict, list)) and not raw.lstrip().startswith(("{", "[")):
        return raw
    return raw if value is None else value


def _env_value(settings_cls: type[BaseSettings], key: str, raw: str) -> Any:
    annotation = settings_cls.model_fields[key].annotation
    return raw if _wants_text(annotation) else parse_scalar(raw)


def _service_env(
    settings_cls: type[BaseSettings], ctx: LoadContext, known: set[str]
) -> dict[str, tuple[Any, str]]:
    if not ctx.service:
        return {}
    prefix = f"FACESEARCH_{ctx.service.upper()}_"
    out: dict[str, tuple[Any, str]] = {}
    for name, raw in ctx.env.items():
        if not name.startswith(prefix):
            continue
        key = name[len(prefix) :].lower()
        if f"{ctx.service}_{key}" in known:
            continue  # FACESEARCH_RETRIEVER_ADDRESS: the generic retriever_address
        if key not in known:
            own = {f"{prefix}{k.upper()}" for k in known}
            ctx.unknown.append(
                f"{ctx.service}: unknown setting in environment variable {name}"
                f"{_suggest(name, own)}; see the {ctx.service} settings in the README"
            )
            continue
        out[key] = (_env_value(settings_cls, key, raw), f"environment variable {name}")
    return out


def _generic_env(
    settings_cls: type[BaseSettings], ctx: LoadContext, known: set[str]
) -> dict[str, tuple[Any, str]]:
    services = _all_services(ctx)
    out: dict[str, tuple[Any, str]] = {}
    anyones: set[str] | None = None  # every service's keys, loaded only when needed
    for name, raw in ctx.env.items():
        if not name.startswith("FACESEARCH_") or name in CLIENT_ENV | TOOLING_ENV:
            continue
        if name == CONFIG_ENV:
            continue
        key = name[len("FACESEARCH_") :].lower()
        if key in known:
            out[key] = (_env_value(settings_cls, key, raw), f"environment variable {name}")
            continue
        if key.split("_", 1)[0] in services:
            continue  # FACESEARCH_<SERVICE>_<KEY>: this service's (read above) or another's
        if anyones is None:
            anyones = _keys_of_any_service(ctx, known)
        if key in anyones:
            continue  # another service's key, set for all of them
        candidates = {f"FACESEARCH_{k.upper()}" for k in anyones} | CLIENT_ENV
        ctx.unknown.append(
            f"{ctx.service or 'service'}: unknown setting in environment variable {name}"
            f"{_suggest(name, candidates)}; no service or client reads it"
        )
    return out


def _read_file(env: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    path = env.get(CONFIG_ENV, "")
    if not path:
        return "", {}
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise SettingsError(
            f"{path} (named by {CONFIG_ENV}): {exc.strerror or exc}; point {CONFIG_ENV} at a "
            "readable YAML file, or unset it to run on defaults and environment variables"
        ) from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path} (named by {CONFIG_ENV}): not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping with 'common' and per-service sections")
    return path, data


def _file_section(
    file: tuple[str, dict[str, Any]], section: str, ctx: LoadContext, known: set[str]
) -> dict[str, tuple[Any, str]]:
    path, data = file
    if not path or not section:
        return {}
    sections = {"common", *_all_services(ctx)}
    if section == "common":  # checked once per load
        for name in data:
            if name not in sections:
                ctx.unknown.append(
                    f"{path}: unknown section {name!r}{_suggest(str(name), sections)}; "
                    f"sections are {', '.join(sorted(sections))}"
                )
    values = data.get(section) or {}
    if not isinstance(values, dict):
        raise SettingsError(f"{path}: section {section!r} must be a mapping of key: value")
    allowed = _keys_of_any_service(ctx, known) if section == "common" else known
    out: dict[str, tuple[Any, str]] = {}
    for key, value in values.items():
        key = str(key)
        if key not in allowed:
            whose = "any service" if section == "common" else ctx.service
            ctx.unknown.append(
                f"{path}: unknown key {key!r} in section {section!r}"
                f"{_suggest(key, allowed)}; not a setting of {whose}"
            )
            continue
        if key in known:  # a common key only another service reads is that service's
            out[key] = (value, f"{path}, section {section!r}")
    return out


def _alias_env(
    settings_cls: type[BaseSettings], env: Mapping[str, str], given: set[str]
) -> dict[str, tuple[Any, str]]:
    """Env names a class accepts besides FACESEARCH_* (``validation_alias=AliasChoices``), the
    lowest precedence: a key already given in the file or a FACESEARCH_ variable wins."""
    out: dict[str, tuple[Any, str]] = {}
    for key, info in settings_cls.model_fields.items():
        if key in given:
            continue
        for choice in env_aliases(info):
            if choice in env:
                out[choice] = (env[choice], f"environment variable {choice}")
                break
    return out


def env_aliases(info: FieldInfo) -> list[str]:
    """The non-FACESEARCH env names of a field (for the docs)."""
    if not isinstance(info.validation_alias, AliasChoices):
        return []
    return [c for c in info.validation_alias.choices if isinstance(c, str) and c.isupper()]
