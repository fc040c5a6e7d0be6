"""The design card's rules, checked: pure domain cores, no service importing another, schemas standalone."""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("orchestrator", "inventory", "wms_node", "payments")
INFRASTRUCTURE = ("faust", "aiokafka", "redis", "structlog", "mode")


def _parse(source: str) -> ast.AST:
    """``ast.parse``, again in a fresh thread when CPython 3.11.7 raises its spurious "AST constructor recursion
    depth mismatch" (gh-106905, fixed in 3.11.8): a new thread starts with a fresh recursion count."""
    try:
        return ast.parse(source)
    except SystemError:
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(ast.parse, source).result()


def _imports(path: Path) -> set[str]:
    tree = _parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _domain_modules(service: str) -> list[str]:
    folder = ROOT / "services" / service / "domain"
    return [f"services.{service}.domain.{p.stem}" for p in sorted(folder.glob("*.py")) if p.stem != "__init__"]


@pytest.mark.parametrize("service", SERVICES)
def test_domain_cores_load_no_infrastructure(service: str) -> None:
    """Importing a domain core (and everything it imports) must not load a Kafka, Redis or log client."""
    modules = _domain_modules(service)
    assert modules, f"{service} has no domain modules"
    probe = "import sys\n" + "".join(f"import {m}\n" for m in modules) + (
        f"print(','.join(sorted(m for m in {INFRASTRUCTURE!r} if m in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"{service} domain pulls in {done.stdout.strip()}"


@pytest.mark.parametrize("service", SERVICES)
def test_no_service_imports_another(service: str) -> None:
    others = [f"services.{s}" for s in SERVICES if s != service]
    for path in (ROOT / "services" / service).rglob("*.py"):
        bad = [m for m in _imports(path) if any(m == o or m.startswith(o + ".") for o in others)]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("service", SERVICES)
def test_services_use_only_schemas_and_the_runtime_from_the_project(service: str) -> None:
    for path in (ROOT / "services" / service).rglob("*.py"):
        project = [m for m in _imports(path) if m.split(".")[0] in ("baton", "services")]
        bad = [m for m in project if m.split(".")[0] == "baton"]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad} (services may use services.runtime only)"


def test_runtime_imports_no_service_and_not_the_command() -> None:
    """The layers: the ``baton`` command on top, the services and their runtime below it, schemas at the bottom."""
    for path in (ROOT / "services" / "runtime").rglob("*.py"):
        bad = [m for m in _imports(path) if m.split(".")[0] == "baton"
               or any(m == f"services.{s}" or m.startswith(f"services.{s}.") for s in SERVICES)]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_schemas_stand_alone() -> None:
    for path in (ROOT / "schemas").rglob("*.py"):
        bad = [m for m in _imports(path) if m.split(".")[0] in ("baton", "services", *INFRASTRUCTURE)]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def _project_files() -> list[Path]:
    return [p for root in ("baton", "services", "schemas", "tests") for p in (ROOT / root).rglob("*.py")]


def _private_names_defined_here(trees: list[ast.AST]) -> set[str]:
    """Private names the project defines itself (functions, methods, attributes, class fields)."""
    names: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
    return {n for n in names if n.startswith("_")}


def test_no_private_member_of_a_library_is_read_or_written() -> None:
    """Reaching into a library's private members (``consumer._client``, ``faust.streams._current_event``)
    breaks silently with any release: only the project's own private names may be used across objects."""
    trees = {path: _parse(path.read_text()) for path in _project_files()}
    ours = _private_names_defined_here(list(trees.values()))
    found = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                if node.attr not in ours:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] not in (
                "baton", "services", "schemas", "tests"
            ):
                found += [f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{a.name}"
                          for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert not found, f"library private members used: {found}"
