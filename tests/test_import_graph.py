"""The layering README's Layout promises: contract at the bottom, runtime above it, the three
services and the SDK each depending only downward, tests and benches on top with no arrow
between them. Read from the source (every import statement, lazy ones included) and checked
once more in a fresh interpreter (what importing each package really loads)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from harness.service_process import REPO_ROOT

SERVICES = ("embedder", "retriever", "personalizer")

# layer -> (folder, what it must never import)
LAYERS: dict[str, tuple[Path, set[str]]] = {
    "facesearch_contract": (
        REPO_ROOT / "protos" / "facesearch_contract",
        {"facesearch", "facesearch_server", "harness", "tests", "bench"},
    ),
    "facesearch_server.runtime": (
        REPO_ROOT / "services" / "runtime",
        {"facesearch", "harness", "tests", "bench"} | {f"facesearch_server.{s}" for s in SERVICES},
    ),
    **{
        f"facesearch_server.{name}": (
            REPO_ROOT / "services" / name,
            {"facesearch", "harness", "tests", "bench"}
            | {f"facesearch_server.{s}" for s in SERVICES if s != name},
        )
        for name in SERVICES
    },
    "facesearch": (REPO_ROOT / "facesearch", {"facesearch_server", "harness", "tests", "bench"}),
    "harness": (REPO_ROOT / "harness", {"tests", "bench"}),
    "tests": (REPO_ROOT / "tests", {"bench"}),
    "bench": (REPO_ROOT / "bench", {"tests"}),
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def forbidden(module: str, banned: set[str]) -> bool:
    return any(module == b or module.startswith(b + ".") for b in banned)


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_no_import_points_upward_or_sideways(layer: str) -> None:
    folder, banned = LAYERS[layer]
    assert folder.is_dir(), folder
    bad = [
        f"{path.relative_to(REPO_ROOT)} imports {module}"
        for path in sorted(folder.rglob("*.py"))
        for module in sorted(imported_modules(path))
        if forbidden(module, banned)
    ]
    assert not bad, f"{layer} must not import {sorted(banned)}:\n" + "\n".join(bad)


def test_no_generic_top_level_services_package_is_imported() -> None:
    bad = [
        f"{path.relative_to(REPO_ROOT)} imports {module}"
        for top in ("facesearch", "services", "harness", "tests", "bench")
        for path in sorted((REPO_ROOT / top).rglob("*.py"))
        for module in sorted(imported_modules(path))
        if module == "services" or module.startswith("services.")
    ]
    assert not bad, "services/ installs as facesearch_server:\n" + "\n".join(bad)


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    )
    return set(out.stdout.split())


def test_importing_the_contract_loads_neither_sdk_nor_servers() -> None:
    loaded = _loaded_after("import facesearch_contract.v1.retriever_service_pb2_grpc")
    assert not {m for m in loaded if m.split(".")[0] in {"facesearch", "facesearch_server"}}


def test_importing_a_service_does_not_load_the_sdk() -> None:
    loaded = _loaded_after("import facesearch_server.retriever.servicer")
    assert "facesearch" not in loaded and "facesearch.client" not in loaded


def test_importing_the_sdk_does_not_load_the_servers() -> None:
    loaded = _loaded_after("import facesearch, facesearch.flows, facesearch.aio")
    assert not {m for m in loaded if m.startswith("facesearch_server")}


def test_every_service_package_ships_in_the_server_wheel() -> None:
    # services/ maps onto facesearch_server by an explicit package list (services/pyproject);
    # a subpackage missing from it works in an editable install and is absent from the wheel.
    import tomllib

    listed = set(
        tomllib.loads((REPO_ROOT / "services" / "pyproject.toml").read_text())["tool"][
            "setuptools"
        ]["packages"]
    )
    found = {
        ".".join(("facesearch_server", *init.parent.relative_to(REPO_ROOT / "services").parts))
        for init in (REPO_ROOT / "services").rglob("__init__.py")
        if "build" not in init.relative_to(REPO_ROOT / "services").parts  # setuptools' copies
    }
    assert found == listed, f"services/pyproject.toml packages differ: {sorted(found ^ listed)}"
