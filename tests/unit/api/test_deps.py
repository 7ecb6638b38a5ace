"""How routes hold database connections, read from the app's routes (no I/O): every
dependency with ``yield`` (which is how a route holds a pooled connection) ends when its
route function returns, never after the response has been sent, so that neither a streaming
body nor a slow client keeps a connection."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from api.app import create_app


def _tree(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _tree(sub)


def test_every_dependency_with_yield_ends_when_the_route_function_returns() -> None:
    app = create_app("postgresql://unused/unused")
    routes = [ctx.original_route for ctx in iter_route_contexts(app.routes)
              if isinstance(ctx.original_route, APIRoute)]
    held = [(route.path, d) for route in routes for d in _tree(route.dependant)
            if inspect.isasyncgenfunction(d.call) or inspect.isgeneratorfunction(d.call)]
    assert len(held) > 50, "most routes take a connection: the test looks at the wrong thing"
    late = [(path, getattr(d.call, "__name__", d.call)) for path, d in held
            if d.scope != "function"]
    assert late == []
