"""The exchange's order book: deletes kept as size-0 entries until swept, never seen by a read."""

from __future__ import annotations

import random
from decimal import Decimal as D

from trading.simexchange.book import SWEEP_EVERY, OrderBook


def _book() -> OrderBook:
    book = OrderBook("BTCUSDT")
    book.apply_snapshot({100.0: 1.0, 99.5: 2.0, 99.0: 0.0}, {100.5: 1.5, 101.0: 3.0}, 1, 1)
    return book


def test_a_snapshot_keeps_only_levels_with_a_size() -> None:
    book = _book()
    assert book.levels("Buy") == [(D("100.0"), D("1.0")), (D("99.5"), D("2.0"))]
    assert book.best_ask() == (D("100.5"), D("1.5"))


def test_a_deleted_level_is_gone_from_every_read_before_any_sweep() -> None:
    book = _book()
    book.apply_delta({100.0: 0.0}, {100.5: 0.0, 100.75: 0.25}, 2, 2)
    assert book.best_bid() == (D("99.5"), D("2.0"))
    assert book.best_ask() == (D("100.75"), D("0.25"))
    assert book.levels("Sell") == [(D("100.75"), D("0.25")), (D("101.0"), D("3.0"))]
    assert book.liquidity_for("Sell", D("99")) == [(D("99.5"), D("2.0"))]
    assert book.liquidity_for("Buy", D("101")) == [(D("100.75"), D("0.25")), (D("101.0"), D("3.0"))]
    assert book.mid() == (D("99.5") + D("100.75")) / 2
    assert (book.u, book.seq) == (2, 2)


def test_a_delete_of_an_absent_level_is_ignored_and_a_deleted_level_can_come_back() -> None:
    book = _book()
    book.apply_delta({98.0: 0.0}, {}, 2, 2)
    assert book.levels("Buy") == [(D("100.0"), D("1.0")), (D("99.5"), D("2.0"))]
    book.apply_delta({100.0: 0.0}, {}, 3, 3)
    book.apply_delta({100.0: 4.0}, {}, 4, 4)
    assert book.best_bid() == (D("100.0"), D("4.0"))


def test_deletes_are_swept_so_the_book_holds_at_most_a_few_deltas_of_them() -> None:
    book = _book()
    for i in range(10 * SWEEP_EVERY):
        price = 90.0 - i * 0.5  # every delta adds a level below and deletes it the next time
        book.apply_delta({price: 1.0, price + 0.5: 0.0} if i else {price: 1.0}, {}, 2 + i, 2 + i)
        assert len(book._bids) <= 3 + SWEEP_EVERY  # the snapshot's two, this delta's level and the unswept deletes
    assert len(book.levels("Buy")) == 3


def test_reads_match_a_plain_model_over_random_deltas() -> None:
    rng = random.Random(7)
    book = OrderBook("BTCUSDT")
    model: dict[str, dict[float, float]] = {"Buy": {}, "Sell": {}}
    book.apply_snapshot({}, {}, 1, 1)
    for step in range(2_000):
        delta: dict[str, dict[float, float]] = {"Buy": {}, "Sell": {}}
        for side, base in (("Buy", 100.0), ("Sell", 101.0)):
            for _ in range(rng.randint(0, 6)):
                price = base + (rng.randint(0, 40) * 0.5 * (-1 if side == "Buy" else 1))
                size = 0.0 if rng.random() < 0.4 else rng.randint(1, 50) / 10
                delta[side][price] = size
                if size:
                    model[side][price] = size
                else:
                    model[side].pop(price, None)
        book.apply_delta(delta["Buy"], delta["Sell"], 2 + step, 2 + step)
        if step % 7 == 0:
            for side, reverse in (("Buy", True), ("Sell", False)):
                expected = [(D(repr(p)), D(repr(model[side][p]))) for p in sorted(model[side], reverse=reverse)]
                assert book.levels(side) == expected
