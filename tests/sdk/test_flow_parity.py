"""The sync and async APIs offer the same flows, with the same signatures, from one
implementation (facesearch.core): no server needed."""

from __future__ import annotations

import inspect
import types

import pytest

from facesearch import aio, core, flows

ALL = (*core.FLOWS, *core.STREAMING_FLOWS, *core.HELPERS)


def _public_functions(module: types.ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == module.__name__
    }


def test_both_apis_expose_the_same_set_and_nothing_else_of_the_core() -> None:
    core_modules = [
        core.backfilling,
        core.collections,
        core.indexing,
        core.persons,
        core.reembed,
        core.search,
        core.sessions,
        core.vector_fields,
    ]
    written = set().union(*(_public_functions(m) for m in core_modules))
    assert written == set(ALL), "a public function of facesearch.core is not listed in its FLOWS"
    assert set(aio.__all__) >= set(ALL)
    assert set(flows.__all__) >= set(ALL)
    assert set(aio.__all__) - {"AsyncFacesearchClient"} == set(flows.__all__)


@pytest.mark.parametrize("name", core.FLOWS + core.STREAMING_FLOWS)
def test_a_flow_has_the_same_signature_in_both_apis(name: str) -> None:
    sync, asynchronous = getattr(flows, name), getattr(aio, name)
    s, a = inspect.signature(sync), inspect.signature(asynchronous)
    assert [(p.name, p.kind, p.default) for p in s.parameters.values()] == [
        (p.name, p.kind, p.default) for p in a.parameters.values()
    ]
    client_s, *rest_s = s.parameters.values()
    client_a, *rest_a = a.parameters.values()
    assert (client_s.annotation, client_a.annotation) == (
        "FacesearchClient",
        "AsyncFacesearchClient",
    )
    assert [p.annotation for p in rest_s] == [p.annotation for p in rest_a]
    assert sync.__doc__ == asynchronous.__doc__


@pytest.mark.parametrize("name", core.FLOWS + core.STREAMING_FLOWS)
def test_a_sync_flow_is_the_async_one_run_for_a_sync_caller(name: str) -> None:
    sync, asynchronous = getattr(flows, name), getattr(aio, name)
    assert sync.__wrapped__ is asynchronous  # one implementation, not a copy
    if name in core.STREAMING_FLOWS:
        assert inspect.isasyncgenfunction(asynchronous)
        assert "Iterator" in str(inspect.signature(sync).return_annotation)
    else:
        assert inspect.iscoroutinefunction(asynchronous)
    assert not inspect.iscoroutinefunction(sync) and not inspect.isasyncgenfunction(sync)


@pytest.mark.parametrize("name", core.HELPERS)
def test_helpers_are_the_same_objects(name: str) -> None:
    assert getattr(flows, name) is getattr(aio, name) is getattr(core, name)
