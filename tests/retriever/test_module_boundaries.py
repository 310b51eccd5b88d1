"""Each part of the retriever keeps its private methods to itself: no ``obj._name(...)`` call
on anything but ``self`` / ``cls`` (e.g. ``__main__`` once called ``LocalShard._maybe_build``;
it has ``resume_builds()`` now). Read from the source."""

from __future__ import annotations

import ast

from harness.service_process import REPO_ROOT

RETRIEVER = REPO_ROOT / "services" / "retriever"


def _private_calls(path: str, tree: ast.AST) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name = node.func.attr
        if not name.startswith("_") or name.startswith("__"):
            continue
        owner = node.func.value
        if isinstance(owner, ast.Name) and owner.id in {"self", "cls"}:
            continue
        out.append(f"{path}:{node.lineno}: .{name}()")
    return out


def test_no_private_method_is_called_from_outside() -> None:
    bad = [
        call
        for path in sorted(RETRIEVER.glob("*.py"))
        for call in _private_calls(path.name, ast.parse(path.read_text()))
    ]
    assert not bad, "give these a public name:\n" + "\n".join(bad)
