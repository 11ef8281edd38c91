from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import trading

REPO = Path(trading.__file__).resolve().parent.parent
MODULES = [
    "alerts",
    
    "config",
    "features",
    "health",
    "ids",
    "latency",
    "orders",
    "pipeline",
    "quality",
    "reasons",
    "regime",
    "risk",
    "scoring",
    "statemachine",
]


def test_domain_imports_no_django_pybit_or_network() -> None:
    imports = "; ".join(f"import trading.domain.{name}" for name in MODULES)
    probe = (
        f"import sys; {imports}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'pybit', 'requests', 'websocket', 'redis'}))"
    )

    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "[]"
