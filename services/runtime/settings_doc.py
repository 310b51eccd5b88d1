"""The settings tables of the READMEs, printed from the settings classes.

    python -m facesearch_server.runtime.settings_doc            # print every table
    python -m facesearch_server.runtime.settings_doc --write README.md services/*/README.md

Each table sits in a README between ``<!-- settings:<section>:begin -->`` and
``<!-- settings:<section>:end -->``; ``--write`` replaces what is between them, and a test
fails when a README differs from what this prints. Sections: ``common`` (the keys of every
service) and one per service (its own keys).
"""

from __future__ import annotations

import argparse
import re
import sys
from enum import Enum
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from facesearch_server.runtime.settings import ServiceSettings
from facesearch_server.runtime.settings_sources import SERVICE_SETTINGS, env_aliases, settings_class

SECTIONS = ("common", *SERVICE_SETTINGS)
REGENERATE = (
    "python -m facesearch_server.runtime.settings_doc --write README.md services/*/README.md"
)


def _type(info: FieldInfo) -> str:
    return _name(info.annotation)


def _name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return " or ".join(f"`{a}`" for a in get_args(annotation))
    if origin in (Union, UnionType):  # e.g. a number or a keyword
        return " or ".join(_name(a) for a in get_args(annotation))
    if origin is Annotated:  # a constrained type: the type it constrains
        return _name(get_args(annotation)[0])
    if origin is list:
        return "list"
    if origin is dict:
        return "mapping"
    names = {str: "text", int: "int", float: "float", bool: "bool"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _value(value: Any) -> str:
    if value in ("", [], {}, None):
        return "\N{EN DASH}"  # as the README tables always wrote "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, Enum):
        value = value.value
    return f"`{value}`"


def _default(info: FieldInfo) -> Any:
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    return None if info.default is PydanticUndefined else info.default


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(key: str, info: FieldInfo, default: str, env: str) -> str:
    cells = [f"`{key}`", _type(info), default, env, info.description or ""]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _common_default(key: str) -> str:
    # A default a service overrides (its port) is shown per service.
    per_service = {s: _default(settings_class(s).model_fields[key]) for s in SERVICE_SETTINGS}
    if len({repr(v) for v in per_service.values()}) == 1:
        return _value(next(iter(per_service.values())))
    return ", ".join(f"{_value(v)} ({s})" for s, v in per_service.items())


def render(section: str) -> str:
    """The markdown table of one section (no markers)."""
    head = [
        "| key | type | default | env variable | meaning |",
        "|---|---|---|---|---|",
    ]
    common = ServiceSettings.model_fields
    if section == "common":
        rows = [
            _row(key, info, _common_default(key), f"`FACESEARCH_{key.upper()}`")
            for key, info in common.items()
        ]
    else:
        fields = settings_class(section).model_fields
        rows = []
        for key, info in fields.items():
            if key in common:
                continue
            env = f"`FACESEARCH_{section.upper()}_{key.upper()}`"
            env += "".join(f" or `{a}`" for a in env_aliases(info))
            rows.append(_row(key, info, _value(_default(info)), env))
    return "\n".join([*head, *rows])


def block(section: str) -> str:
    """The section with its markers, as it stands in a README."""
    return "\n".join(
        [
            f"<!-- settings:{section}:begin -->",
            f"<!-- generated from the settings classes by: {REGENERATE} -->",
            render(section),
            f"<!-- settings:{section}:end -->",
        ]
    )


def _pattern(section: str) -> re.Pattern[str]:
    return re.compile(
        rf"<!-- settings:{section}:begin -->.*?<!-- settings:{section}:end -->", re.DOTALL
    )


def blocks_in(text: str) -> dict[str, str]:
    """The settings blocks a README holds, by section."""
    found = {}
    for section in SECTIONS:
        match = _pattern(section).search(text)
        if match:
            found[section] = match.group(0)
    return found


def rewrite(text: str) -> str:
    for section in blocks_in(text):
        text = _pattern(section).sub(lambda _m, s=section: block(s), text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--write", nargs="+", metavar="README", help="replace the settings blocks in these files"
    )
    args = parser.parse_args(argv)
    if not args.write:
        print("\n\n".join(block(s) for s in SECTIONS))
        return 0
    for name in args.write:
        path = Path(name)
        text = path.read_text()
        if not blocks_in(text):
            print(f"{path}: no <!-- settings:<section>:begin --> markers", file=sys.stderr)
            return 1
        path.write_text(rewrite(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
