"""The bus's typed decoding: each malformed message is dropped with msgspec's reason, good ones arrive whole."""

from __future__ import annotations

import logging

import pytest

from scalper_site.bus import BusListener


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "JSON is malformed"),
        (b"[1,2]", "Expected `object`, got `array`"),
        (b'{"kind": 5}', "Expected `str`, got `int` - at `$.kind`"),
        (b'{"payload": {}}', "Object missing required field `kind`"),
        (b'{"kind": "x", "sentAt": "soon"}', "Expected `float`, got `str` - at `$.sentAt`"),
        (b'{"kind": "x", "payload": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}", "maximum recursion depth"),
        (b'{"kind": "x", "payload": {"a": ' + b"9" * 5_000 + b"}}", "out of range"),
    ],
)
def test_a_malformed_bus_message_is_dropped_with_its_reason(raw: bytes, reason: str, caplog) -> None:
    received: list = []
    listener = BusListener(received.append, url="redis://127.0.0.1:1/0")  # never started: no Redis needed
    with caplog.at_level(logging.WARNING, logger="scalper_site.bus"):
        listener._dispatch(raw)
    assert received == []
    assert reason in caplog.text


def test_a_good_bus_message_reaches_the_handler_as_a_dict_with_a_float_time() -> None:
    received: list = []
    BusListener(received.append, url="redis://127.0.0.1:1/0")._dispatch(
        b'{"kind":"failover.changed","payload":{"version":7,"safeMode":true},"sentAt":1700000000.25}'
    )
    expected = {"kind": "failover.changed", "payload": {"version": 7, "safeMode": True}, "sentAt": 1700000000.25}
    assert received == [expected]
    assert type(received[0]) is dict and isinstance(received[0]["sentAt"], float)
