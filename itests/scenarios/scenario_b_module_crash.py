"""TEST_B: a deliberate exception in the FeatureEngine; MODULE_CRASH, a CRIT alert, safe mode."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from itests import probes
from itests.environment import IsolatedEnvironment
from itests.scenario import IntegrationScenario
from trading.control import send_command

MESSAGE = "itest TEST_B: deliberate FeatureEngine failure"


class ModuleCrash(IntegrationScenario):
    id = "TEST_B"
    name = "Local module crash"
    description = "A deliberate throw in the FeatureEngine (fault hook): MODULE_CRASH, CRIT alert, safe mode ON."
    prerequisite = "A SIM trader started with --allow-fault-hooks, safe mode OFF."
    action = "arm_fault(feature_engine_error=...) through the trader's command bus; disarm after the checks."
    expected_events = ("MODULE_CRASH from FEATURE_ENGINE", "CRIT alert", "safe mode ON",
                       "plan RESYNC_POSITIONS, RESYNC_ORDERS, CLEAR_LOCAL_STATE",
                       "one report and one 3-step plan while it keeps throwing, safe mode held",
                       "fault disarmed: safe mode OFF once the module runs clean")
    pass_criteria = ("MODULE_CRASH with module FEATURE_ENGINE", "a CRIT MODULE_CRASH alert", "safe mode ON",
                     "one MODULE_CRASH report, plan of 3 steps", "safe mode held while it throws, OFF after")
    fault_hooks = True

    def scenario(self, env: IsolatedEnvironment) -> None:
        run = self.run_id
        self.boot(env)
        version = probes.version(run)
        armed_ms = int(time.time() * 1000)
        self.progress("arm the FeatureEngine fault")
        ack = send_command("arm_fault", run_id=run, args={"feature_engine_error": MESSAGE}, wait_s=10)
        self.expect("the trader accepts the fault hook", True, ack.get("ok"))
        failure = self.wait_for_failure("MODULE_CRASH", timeout=20)
        module = failure.details.get("module") or failure.source
        self.expect("the crashed module is the FeatureEngine", "FEATURE_ENGINE", module)
        self.expect("the failure carries the exception", True, MESSAGE in failure.message
                    or MESSAGE in str(failure.details))
        self.wait_for_crit_alert("MODULE_CRASH")
        self.wait_for("the trader enters safe mode for MODULE_CRASH",
                      lambda: self.trader_saw("FAILOVER_STATE", after_ms=armed_ms, safeMode=True),
                      timeout=10, expected={"safeMode": True, "reason": "MODULE_CRASH"},
                      actual=lambda: self.trader_saw("FAILOVER_STATE", after_ms=armed_ms))
        self.expect("the failover state is in safe mode", True, probes.state(run).safe_mode)
        # The module throws on every update: the plan runs once, and safe mode is held past it.
        self.wait_for("the MODULE_CRASH plan is carried out",
                      lambda: (probes.plan_for(run, "MODULE_CRASH") or {}).get("status") == "DONE", timeout=30,
                      expected="DONE", actual=lambda: probes.plan_steps(probes.plan_for(run, "MODULE_CRASH")))
        time.sleep(1.0)
        self.expect("safe mode stays ON while the module still throws, with its plan done", True,
                    probes.state(run).safe_mode)
        self.expect("one MODULE_CRASH report however often the module throws", 1,
                    probes.failures(run).count("MODULE_CRASH"))
        plan = probes.plan_for(run, "MODULE_CRASH")
        self.expect("the plan keeps its three steps", [("RESYNC_POSITIONS", "DONE"), ("RESYNC_ORDERS", "DONE"),
                                                       ("CLEAR_LOCAL_STATE", "DONE")], probes.plan_steps(plan))
        self.progress("disarm the fault; the module restarts and runs clean")
        disarmed_ms = int(time.time() * 1000)
        send_command("arm_fault", run_id=run, args={"feature_engine_error": None}, wait_s=10)
        self.metrics["moduleCrashEvents"] = probes.failures(run).count("MODULE_CRASH")
        self.metrics["planSteps"] = len(probes.plan_steps(plan))
        self.wait_for("safe mode goes OFF once the module has run clean (quiet period 5 s)",
                      lambda: probes.safe_mode_off_after(run, version), timeout=30, expected={"safeMode": False},
                      actual=lambda: probes.state_summary(run))
        self.recovery_ms = int((datetime.now(UTC) - failure.timestamp).total_seconds() * 1000)
        self.metrics["safeModeOffAfterDisarmMs"] = int(time.time() * 1000) - disarmed_ms
