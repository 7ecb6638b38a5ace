"""The floors of the house, read from the source: `facility/` (the kernel) imports no service
and not the composition root; a service imports `facility` and never another service nor
the composition root; only `stack/` imports the services. Every import statement counts,
also those inside functions (a lazy import is still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("gateway", "ingest", "rules", "api", "simulators")
COMPOSITION_ROOT = "stack"


def imported_packages(path: Path) -> set[str]:
    """The top-level package of every absolute import in one module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def offending_imports(package: str, forbidden: set[str]) -> list[str]:
    """`module.py imports X` for each forbidden top-level package a module of `package` imports."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in sorted(imported_packages(path) & forbidden):
            found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def test_the_reader_sees_lazy_and_nested_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import os\nfrom . import sibling\n"
        "def f():\n    from gateway.service import run_gateway\n    import rules.engine\n"
    )
    assert imported_packages(module) == {"os", "gateway", "rules"}


def test_the_kernel_imports_no_service_and_not_the_composition_root() -> None:
    assert offending_imports("facility", {*SERVICES, COMPOSITION_ROOT}) == []


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service_nor_the_composition_root(service: str) -> None:
    forbidden = {*SERVICES, COMPOSITION_ROOT} - {service}
    assert offending_imports(service, forbidden) == []


def test_the_composition_root_is_what_imports_the_services() -> None:
    imported = set().union(*(imported_packages(p) for p in (ROOT / COMPOSITION_ROOT).rglob("*.py")))
    assert {"gateway", "ingest", "rules", "api", "simulators", "facility"} <= imported


MAX_MODULE_LINES = 400  # STYLE.md: a module is one job; past this it is two


def test_no_module_of_the_product_is_past_the_size_of_one_job() -> None:
    long = [f"{p.relative_to(ROOT)}: {n} lines"
            for package in ("facility", *SERVICES, COMPOSITION_ROOT)
            for p in sorted((ROOT / package).rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES]
    assert long == []
