"""The trader package keeps its shape: one-way imports, short functions, ports the real modules fit."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import trading
from trading.trader.ports import FailoverServices, TraderControl

PACKAGE = Path(trading.__file__).resolve().parent / "trader"
REPO = PACKAGE.parents[1]
MAX_FUNCTION_LINES = 50


def _trader_imports(path: Path) -> set[str]:
    """The ``trading.trader`` modules ``path`` imports, type-checking-only imports included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "trading.trader":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("trading.trader."):
                found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("trading.trader.")}
    return found


def _graph() -> dict[str, set[str]]:
    return {path.stem: _trader_imports(path) - {path.stem} for path in PACKAGE.glob("*.py")}


def test_the_trader_modules_import_each_other_one_way_only():
    graph = _graph()
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module in done:
            return
        for imported in graph.get(module, set()):
            visit(imported, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())


def test_the_shared_modules_know_no_part_of_the_trader_and_no_part_knows_the_process():
    graph = _graph()
    assert graph["ports"] == set()
    assert graph["context"] == {"ports"}
    assert all("process" not in imported for imported in graph.values())


def test_no_function_in_the_trader_is_over_fifty_lines():
    long = [
        f"{path.name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in PACKAGE.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


def test_the_command_names_load_without_django_or_the_exchange_so_the_sending_side_can_share_them():
    probe = (
        "import sys; import trading.trader.commands; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'pybit', 'redis'}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_modules_run_trader_injects_fit_the_ports():
    from importlib import import_module

    from django.conf import settings

    from trading import control

    services = import_module(settings.SCALPER_FAILOVER_SERVICES)
    assert isinstance(services, FailoverServices)  # the link's needs included
    assert isinstance(control, TraderControl)
