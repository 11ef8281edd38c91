"""The layers, enforced: who may import whom, read from the source of every module.

Every import statement counts, wherever it stands (module level, inside a function,
under ``TYPE_CHECKING``), and relative imports are resolved, so a forbidden import
cannot hide. Each rule is its own test; a failure names the file, the line and the
import. The runtime probe backs the static rules: it imports the Django-free
packages in a fresh interpreter and looks at what came along.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIPPED_DIRS = {"migrations", "__pycache__", "node_modules", "data"}

# Packages that run without the web stack: the engine, the domains and the market data.
DJANGO_FREE = ("trading.engine", "trading.domain", "trading.marketdata", "failover.domain")
WEB_STACK = frozenset({"django", "rest_framework", "channels", "celery"})
NETWORK = frozenset({"pybit", "requests", "redis", "websocket", "aiohttp"})
FORBIDDEN = {
    "trading.engine": WEB_STACK,
    "trading.domain": WEB_STACK | NETWORK,
    "trading.marketdata": WEB_STACK | NETWORK,
    "failover.domain": WEB_STACK | NETWORK,
}

# What integration scenarios may use of the product: its public services (itests/README.md).
# An entry ending in ".*" allows the package and everything under it.
ITESTS_MAY_IMPORT = (
    "failover.services",
    "failover.selectors",
    "failover.domain.*",
    "trading.control",
    "trading.selectors",
    "trading.domain.*",
    "trading.simexchange.control",
    "trading.engine.eventlog",
)

# Import cycles that are allowed: Celery's task <-> runner pattern (the runner enqueues the
# next step's task, the task calls the runner).
ALLOWED_CYCLES = [frozenset({"failover.recovery.runner", "failover.tasks"})]


@dataclass(frozen=True)
class Import:
    """One imported module, as written at one place of one source file."""

    source: str  # the importing module
    path: str  # its file, relative to the repository
    line: int
    statement: str  # the statement as written
    target: str  # the imported module, absolute, as deep as the repository knows it

    def where(self) -> str:
        return f"{self.path}:{self.line}: {self.statement}"


def _python_files() -> Iterator[Path]:
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS)
        yield from (Path(folder) / name for name in sorted(files) if name.endswith(".py"))


def _module_name(path: Path) -> str:
    """The dotted name Python imports ``path`` under (a script outside a package is its stem)."""
    parts = [] if path.name == "__init__.py" else [path.stem]
    folder = path.parent
    while (folder / "__init__.py").exists():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts) or path.parent.name


def _is_test(path: Path) -> bool:
    relative = path.relative_to(ROOT)
    return "tests" in relative.parts or relative.name.startswith("test_") or relative.name == "conftest.py"


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in _python_files()}


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute module a ``from`` import with ``level`` dots names."""
    if level == 0:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _deepest_known(candidate: str) -> str:
    """``a.b.c`` if the repository has that module, else the longest known prefix, else ``candidate``."""
    known = _modules()
    parts = candidate.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in known:
            return ".".join(parts[:end])
    return candidate


def _imports_of(module: str, path: Path) -> Iterator[Import]:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = ast.parse(text, filename=str(path))
    relative = str(path.relative_to(ROOT))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                statement = f"import {alias.name}"
                yield Import(module, relative, node.lineno, statement, _deepest_known(alias.name))
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, path.name == "__init__.py", node.level, node.module)
            # Module names hold no "#", so cutting at it drops only comments.
            written = " ".join(line.split("#")[0] for line in lines[node.lineno - 1 : node.end_lineno])
            statement = " ".join(written.split())
            for alias in node.names:
                # `from pkg import name` imports the submodule pkg.name when there is one.
                target = _deepest_known(f"{base}.{alias.name}") if alias.name != "*" else _deepest_known(base)
                yield Import(module, relative, node.lineno, statement, target)


@cache
def _all_imports() -> tuple[Import, ...]:
    return tuple(imp for module, path in sorted(_modules().items()) for imp in _imports_of(module, path))


def _product_imports() -> Iterator[Import]:
    return (imp for imp in _all_imports() if not _is_test(ROOT / imp.path))


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _report(violations: Iterable[Import], rule: str) -> str:
    lines = sorted({imp.where() for imp in violations})
    return f"{rule} ({len(lines)}):\n  " + "\n  ".join(lines)


# -- a. the Django-free packages ----------------------------------------------------------


def test_django_free_packages_import_no_web_stack_or_network_library() -> None:
    violations = [
        imp
        for imp in _product_imports()
        for package, forbidden in FORBIDDEN.items()
        if _within(imp.source, package) and imp.target.split(".")[0] in forbidden
    ]
    assert not violations, _report(violations, "a Django-free package imports the web stack or a network library")


def test_django_free_packages_bring_in_no_web_stack_at_run_time() -> None:
    """Import each Django-free package alone in a fresh interpreter: nothing forbidden may come along."""
    problems = []
    for package, forbidden in FORBIDDEN.items():
        modules = sorted(name for name in _modules() if _within(name, package))
        probe = (
            "import importlib, sys\n"
            f"forbidden = {sorted(forbidden)!r}\n"
            "blame = {}\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "    for top in forbidden:\n"
            "        if top in sys.modules and top not in blame:\n"
            "            blame[top] = name\n"
            "print(sorted(blame.items()))\n"
        )
        out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"importing {package} failed:\n{out.stderr}"
        if out.stdout.strip() != "[]":
            problems.append(f"{package}: (library, first module that brought it in) {out.stdout.strip()}")
    assert not problems, "a Django-free package brings in forbidden libraries at run time:\n  " + "\n  ".join(problems)


# -- b, c, d. who may use whom ---------------------------------------------------------------


def test_failover_domain_imports_nothing_of_trading_or_the_rest_of_failover() -> None:
    violations = [
        imp
        for imp in _product_imports()
        if _within(imp.source, "failover.domain")
        and (_within(imp.target, "trading") or _within(imp.target, "failover"))
        and not _within(imp.target, "failover.domain")
    ]
    assert not violations, _report(violations, "failover.domain reaches outside itself")


def test_trading_imports_only_the_failover_domain() -> None:
    violations = [
        imp
        for imp in _product_imports()
        if _within(imp.source, "trading")
        and _within(imp.target, "failover")
        and not _within(imp.target, "failover.domain")
    ]
    assert not violations, _report(violations, "trading imports failover beyond failover.domain")


def _itests_may_import(target: str) -> bool:
    for allowed in ITESTS_MAY_IMPORT:
        if allowed.endswith(".*"):
            if _within(target, allowed[:-2]):
                return True
        elif target == allowed:
            return True
    return False


def test_itests_use_the_product_only_through_its_public_modules() -> None:
    violations = [
        imp
        for imp in _product_imports()
        if _within(imp.source, "itests")
        and (_within(imp.target, "trading") or _within(imp.target, "failover"))
        and not _itests_may_import(imp.target)
    ]
    rule = f"itests imports a product module that is not public (allowed: {', '.join(ITESTS_MAY_IMPORT)})"
    assert not violations, _report(violations, rule)


# -- e. import cycles ------------------------------------------------------------------------------


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative: the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def test_no_import_cycles_but_the_celery_one() -> None:
    product = {name for name, path in _modules().items() if not _is_test(path)}
    graph: dict[str, set[str]] = {name: set() for name in product}
    edges: dict[tuple[str, str], list[Import]] = {}
    for imp in _product_imports():
        if imp.target in product and imp.target != imp.source:
            graph[imp.source].add(imp.target)
            edges.setdefault((imp.source, imp.target), []).append(imp)
    cycles = [component for component in _strongly_connected(graph) if frozenset(component) not in ALLOWED_CYCLES]
    messages = []
    for component in cycles:
        inside = [imp.where() for (a, b), imps in sorted(edges.items()) if {a, b} <= component for imp in imps]
        messages.append(f"{sorted(component)}:\n    " + "\n    ".join(dict.fromkeys(inside)))
    assert not cycles, f"import cycles ({len(cycles)}):\n  " + "\n  ".join(messages)


def test_the_module_scan_sees_the_product() -> None:
    """Guard the guards: the scan finds the packages the rules speak of, and resolves relative imports."""
    modules = _modules()
    for package in (*DJANGO_FREE, "trading", "failover", "itests", "scalper_site"):
        assert package in modules, package
    assert _resolve("trading.engine.core", False, 1, "eventlog") == "trading.engine.eventlog"
    assert _resolve("trading.engine", True, 2, "domain") == "trading.domain"
    assert not any(_within(name, "trading.migrations") for name in modules)
