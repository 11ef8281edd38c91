"""SCENARIO_4: an invalid config.json is planted while the trader runs; fallback config and safe mode hold."""

from __future__ import annotations

import json
import time

from itests import probes
from itests.environment import IsolatedEnvironment, write_config
from itests.scenario import IntegrationScenario
from trading.domain.config import ConfigInvalid

BAD_FIELD = "risk.max_open_positions"


class ConfigInvalidScenario(IntegrationScenario):
    id = "SCENARIO_4"
    name = "CONFIG_INVALID"
    description = "An invalid config.json (a string instead of a number) is planted: fallback config, safe mode."
    prerequisite = "A running SIM trader on a valid config file (source: file)."
    action = f'Replace config.json with one where {BAD_FIELD} is "three"; later restore a valid file.'
    expected_events = ("the validator refuses the file", "CONFIG_INVALID (CRIT alert)", "safe mode ON",
                       "plan DISABLE_TRADING, RESYNC_CONFIG", "built-in fallback config in force",
                       "file fixed", "safe mode OFF on the file's config")
    pass_criteria = ("CONFIG_INVALID failure event naming the field", "safe mode ON", "a CRIT alert",
                     "the trader runs on the fallback config", "safe mode stays ON until the file is fixed")
    time_limit_s = 120.0

    def prepare(self, env: IsolatedEnvironment) -> None:
        write_config(env.data)

    def scenario(self, env: IsolatedEnvironment) -> None:
        run = self.run_id
        self.boot(env)
        beat = self.beat() or {}
        self.expect("the trader starts on the config file", "file", (beat.get("config") or {}).get("source"))
        version = probes.version(run)
        planted_ms = int(time.time() * 1000)
        self.progress(f'plant an invalid config.json ({BAD_FIELD} = "three")')
        path = env.data / "config" / "config.json"
        config = json.loads(path.read_text())
        config["risk"]["max_open_positions"] = "three"
        path.write_text(json.dumps(config, indent=2))
        refused = self.config_engine.load()
        self.expect("the validator refuses the planted file, naming the field", True,
                    isinstance(refused, ConfigInvalid) and any(e.startswith(BAD_FIELD) for e in refused.errors))
        failure = self.wait_for_failure("CONFIG_INVALID")
        self.expect("the failure names the refused field", True,
                    any(str(e).startswith(BAD_FIELD) for e in failure.details.get("errors", [])))
        self.wait_for("the trader enters safe mode for CONFIG_INVALID",
                      lambda: self.trader_saw("FAILOVER_STATE", after_ms=planted_ms, safeMode=True,
                                              reason="CONFIG_INVALID"),
                      timeout=10, expected={"safeMode": True, "reason": "CONFIG_INVALID"},
                      actual=lambda: self.trader_saw("FAILOVER_STATE", after_ms=planted_ms))
        self.wait_for_crit_alert("CONFIG_INVALID")
        self.wait_for("the built-in fallback config is in force",
                      lambda: ((self.beat() or {}).get("config") or {}).get("source") == "fallback"
                      and probes.state(run).config_fallback,
                      timeout=30, expected={"heartbeat config.source": "fallback", "configFallback": True},
                      actual=lambda: {"heartbeat": (self.beat() or {}).get("config"),
                                      "state": probes.state_summary(run)})
        self.progress("safe mode must hold while the file stays invalid")
        self.hold("safe mode stays ON while config.json is invalid", lambda: probes.state(run).safe_mode,
                  seconds=4.0, expected={"safeMode": True}, actual=lambda: probes.state_summary(run))
        self.progress("fix config.json")
        write_config(env.data)
        self.wait_safe_mode_off("with the file fixed safe mode is OFF", after_version=version,
                                since=failure.timestamp, timeout=45)
        self.wait_for("the trader runs on the fixed file again",
                      lambda: ((self.beat() or {}).get("config") or {}).get("source") == "file", timeout=15,
                      expected="file", actual=lambda: (self.beat() or {}).get("config"))
        self.expect("the fallback is lifted and trading enabled", (False, True),
                    (probes.state(run).config_fallback, probes.state(run).trading_enabled))
