"""The simulator is started only where the trader runs SIM: deploy profiles, systemd units and ``run_stack``."""

from __future__ import annotations

import configparser
from pathlib import Path

from scalper_site.launcher import product_processes

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def procfile(name: str) -> dict[str, str]:
    lines = (DEPLOY / name).read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string((DEPLOY / "systemd" / name).read_text())
    return parser


def test_the_live_procfile_has_no_simulator_and_no_sim_trader() -> None:
    live = procfile("Procfile")
    assert set(live) == {"web", "worker", "beat", "trader"}
    assert not any("run_simexchange" in cmd for cmd in live.values())
    assert "--mode SIM" not in live["trader"] and "TRADER_ARGS:?" in live["trader"]  # the mode must be chosen


def test_the_sim_procfile_adds_the_simulator_and_a_sim_trader() -> None:
    live, sim = procfile("Procfile"), procfile("Procfile.sim")
    assert {k: v for k, v in sim.items() if k not in ("simexchange", "trader")} == {
        k: v for k, v in live.items() if k != "trader"
    }
    assert "run_simexchange" in sim["simexchange"] and "--mode SIM" in sim["trader"]


def test_only_the_simulator_unit_runs_the_simulator() -> None:
    units = sorted(p.name for p in (DEPLOY / "systemd").glob("*.service"))
    running_sim = [name for name in units if "run_simexchange" in unit(name)["Service"]["ExecStart"]]
    assert running_sim == ["scalper-simexchange.service"]
    assert "127.0.0.1" in unit("scalper-simexchange.service")["Service"]["ExecStart"]
    trader = unit("scalper-trader.service")
    # No default mode (least of all SIM, whose simulator a LIVE host does not run); ordering, never a pull.
    assert "TRADER_ARGS" not in trader["Service"].get("Environment", "")
    assert "$${TRADER_ARGS:?" in trader["Service"]["ExecStart"]
    assert "scalper-simexchange.service" in trader["Unit"]["After"]
    assert not any(key in trader["Unit"] for key in ("Wants", "Requires", "BindsTo"))


def test_run_stack_starts_the_simulator_only_with_a_sim_trader() -> None:
    base = {"python": "python", "web_host": "127.0.0.1", "web_port": 8000, "worker_concurrency": 1}
    with_sim = {spec.name: list(spec.argv) for spec in product_processes(**base)}
    trader = with_sim["trader"]
    assert "simexchange" in with_sim and trader[trader.index("--mode") + 1] == "SIM"
    without = [spec.name for spec in product_processes(**base, sim_port=None)]
    assert "simexchange" not in without and "trader" not in without
