"""DCP rules that need no exchange: what a reload asks for, what stepping down says, how health spells a reason."""

from __future__ import annotations

from trading.exchange.port import TemporaryExchangeError
from trading.trader import dcp
from trading.trader.dcp import DcpArming, DcpStatus, health_json


class Port:
    """The exchange's DCP: ``window`` None is an account without it; ``down`` makes every call fail."""

    def __init__(self, window: int | None = 10) -> None:
        self.window = window
        self.down = False
        self.sets: list[int] = []

    def dcp_window_s(self) -> int | None:
        if self.down:
            raise TemporaryExchangeError("exchange down")
        return self.window

    def set_dcp(self, window_s: int) -> None:
        self.sets.append(window_s)
        self.window = window_s


class Config:
    def __init__(self, window: int | None) -> None:
        self.window = window
        self.leader = True


def arming(window: int | None, port: Port | None = None) -> tuple[DcpArming, Config, Port]:
    config, port = Config(window), port or Port()
    return DcpArming(port, window_s=lambda: config.window, is_leader=lambda: config.leader), config, port


def test_a_reload_sets_a_new_window_on_an_armed_account_and_rebuilds_where_none_is_armed():
    armed, config, port = arming(5)
    assert armed.arm().armed and armed.due(reloaded=True) == dcp.NOTHING
    config.window = 8
    assert armed.due(reloaded=True) == dcp.SET and armed.arm().window_s == 8 and port.sets == [5, 8]
    unarmed, config, _ = arming(None)
    unarmed.arm()
    config.window = 8
    assert unarmed.due(reloaded=True) == dcp.REBUILD  # the build subscribes the topic after arming


def test_an_unset_window_keeps_dcp_armed_without_a_call_and_a_failed_arming_is_retried():
    armed, config, port = arming(5)
    armed.arm()
    config.window = None
    assert armed.due(reloaded=True) == dcp.SET
    kept = armed.arm()
    assert kept.armed and kept.window_s == 5 and kept.reason == dcp.UNSET_KEPT and port.sets == [5]
    failing, _, port = arming(5)
    port.down = True
    assert failing.arm().reason.startswith(dcp.UNREACHABLE) and failing.due(reloaded=False) == dcp.REBUILD
    assert arming(5)[0].due(reloaded=False) == dcp.NOTHING


def test_an_account_without_dcp_is_asked_again_only_when_the_window_changes():
    retail, config, _ = arming(5, Port(window=None))
    assert retail.arm().reason == dcp.NO_DCP
    assert retail.due(reloaded=True) == dcp.NOTHING and retail.due(reloaded=False) == dcp.NOTHING
    config.window = 7
    assert retail.due(reloaded=True) == dcp.REBUILD


def test_stepping_down_arms_nothing_and_a_leader_that_stepped_down_mid_call_is_not_armed():
    armed, config, _ = arming(5)
    armed.arm()
    assert armed.stand_by() == DcpStatus(window_s=5, supported=True, reason=dcp.STANDBY)
    port = Port()
    racing, config, _ = arming(5, port)
    port.set_dcp = lambda window_s: setattr(config, "leader", False)  # type: ignore[method-assign]
    assert racing.arm() == DcpStatus(window_s=5, supported=True, reason=dcp.STANDBY)


def test_health_spells_out_the_reason_code_first():
    retail = health_json(DcpStatus(window_s=5, supported=False, reason=dcp.NO_DCP), deadman_after_s=90)
    assert retail["reason"] == ("ACCOUNT_HAS_NO_DCP: the account has no DCP; the product relies on the dead-man "
                                "guardian (deadman.after_s 90 s)")
    assert health_json(DcpStatus(), deadman_after_s=60)["reason"].startswith("NOT_CONFIGURED: exchange.dcp_window_s")
    armed = DcpStatus(armed=True, window_s=5, supported=True, reason="")
    assert health_json(armed, deadman_after_s=60) == armed.as_json()
    error = DcpStatus(window_s=5, reason=f"{dcp.UNREACHABLE}: timeout")
    assert health_json(error, deadman_after_s=60)["reason"] == "EXCHANGE_ERROR: timeout"
