from __future__ import annotations

import re

import pytest

from failover.domain.clock import MS_PER_DAY, ManualClock
from trading.domain.ids import OrderLinkIdFactory, base36, default_instance
from trading.tests.domain.kit import T0

SHAPE = re.compile(r"^[A-Za-z0-9_-]{1,36}$")


def test_ids_have_prefix_date_instance_and_counter() -> None:
    factory = OrderLinkIdFactory(ManualClock(T0), instance="abc")

    assert factory.next_id() == "AISCLP-20251118-abc-1"
    assert factory.next_id() == "AISCLP-20251118-abc-2"


def test_ids_follow_the_clock_date() -> None:
    clock = ManualClock(T0)
    factory = OrderLinkIdFactory(clock, instance="abc")
    factory.next_id()
    clock.advance(MS_PER_DAY)

    assert factory.next_id() == "AISCLP-20251119-abc-2"


def test_ids_default_instance_fits_bybit_limits() -> None:
    factory = OrderLinkIdFactory(ManualClock(T0))
    ids = [factory.next_id() for _ in range(1000)]

    assert len(factory.instance) == 13
    assert len(set(ids)) == 1000
    assert all(SHAPE.match(i) for i in ids)
    assert max(len(i) for i in ids) <= 36


def test_ids_from_two_processes_differ() -> None:
    clock = ManualClock(T0)
    first = OrderLinkIdFactory(clock, instance=base36(1_763_479_260_000, 8) + base36(4242, 5))
    second = OrderLinkIdFactory(clock, instance=base36(1_763_479_260_000, 8) + base36(4243, 5))

    assert {first.next_id() for _ in range(50)}.isdisjoint({second.next_id() for _ in range(50)})


def test_ids_reject_bad_prefix_and_instance() -> None:
    with pytest.raises(ValueError):
        OrderLinkIdFactory(ManualClock(T0), prefix="TOO-LONG")
    with pytest.raises(ValueError):
        OrderLinkIdFactory(ManualClock(T0), instance="UPPER")


def test_base36() -> None:
    assert base36(0) == "0"
    assert base36(35) == "z"
    assert base36(36, 3) == "010"
    assert len(default_instance()) == 13
