"""The browser tests never wait with playwright's ``wait_for_function``: under the pages'
Content-Security-Policy (no 'unsafe-eval') its second look at the condition is refused with an
EvalError, so such a wait passes only when the condition already holds at the first look; a CI
run failed that way (tests/integration/test_offline_browser.py, waiting for the service
worker). ``browser_support.wait_in_page`` is the wait that works under the policy."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = "wait_for_function"


def calls_of(source: str, attribute: str) -> list[int]:
    """The line of every call of ``<anything>.<attribute>(...)`` in one module."""
    return [node.lineno for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == attribute]


def test_the_reader_finds_a_call_of_the_attribute() -> None:
    source = "async def f(page):\n    x = 1\n    await page.wait_for_function('true')\n"
    assert calls_of(source, FORBIDDEN) == [3]
    assert calls_of("page.wait_for_function\n", FORBIDDEN) == []  # named, not called


def test_no_browser_wait_goes_through_eval() -> None:
    found = [f"{path.relative_to(ROOT)}:{line}"
             for folder in ("tests", "bench")
             for path in sorted((ROOT / folder).rglob("*.py"))
             for line in calls_of(path.read_text(encoding="utf-8"), FORBIDDEN)]
    assert found == []
