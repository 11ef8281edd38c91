"""Typed decoding (msgspec): the same events as plain JSON, every refusal for the same reason, hostile text named."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest

from trading.marketdata.generator import generate_messages
from trading.marketdata.normalise import NOT_JSON, Normaliser, parse_levels
from trading.marketdata.wire import ParsedLevels, PublicDecoder, WireError, decode_untyped

from .kit import START_MS, book_delta
from .test_normalise import HOSTILE, SNAPSHOT, TICKER_SNAPSHOT, _fresh


def _raw(message: Any) -> bytes:
    return msgspec.json.encode(message)


@pytest.mark.parametrize(("message", "reason"), [pytest.param(m, r, id=i) for i, m, r in HOSTILE])
def test_every_hostile_message_is_refused_for_the_same_reason_when_it_arrives_as_text(message: Any, reason: str):
    normaliser = _fresh()
    before = normaliser.best("BTCUSDT")

    assert normaliser.normalise_raw(_raw(message)) == []

    assert normaliser.rejected == {reason: 1}
    if reason != "crossed_book":
        assert normaliser.best("BTCUSDT") == before, "a rejected message must not touch the book"


def test_typed_decoding_gives_exactly_the_events_of_plain_json_and_types_every_generated_message():
    messages = list(generate_messages(["BTCUSDT", "ETHUSDT"], 5, START_MS, max_messages=6_000))
    plain, typed = Normaliser(), Normaliser()
    decoder = PublicDecoder()

    expected = [plain.normalise(m) for m in messages]
    got = [typed.normalise(decoder.decode(_raw(m))) for m in messages]

    assert got == expected
    assert decoder.typed == len(messages) and decoder.untyped == 0
    assert typed.rejected == plain.rejected == {}


def test_book_levels_arrive_parsed_once_and_numbers_the_normaliser_checks_keep_their_json_type():
    decoder = PublicDecoder()
    book = decoder.decode(_raw(book_delta("BTCUSDT", bids=[["100.40", "5.000"]], asks=[["100.70", "0"]])))
    assert type(book["data"]["b"]) is ParsedLevels and book["data"]["b"] == {100.4: 5.0}
    assert parse_levels(book["data"]["a"]) is book["data"]["a"]  # nothing left to parse
    ticker = decoder.decode(_raw(TICKER_SNAPSHOT))
    assert ticker["data"]["lastPrice"] == 100.5 and ticker["ts"] == 2000
    string_ts = decoder.decode(_raw({**TICKER_SNAPSHOT, "ts": "2000"}))
    assert string_ts["ts"] == "2000"  # lenient number parsing never reaches a field the normaliser type-checks
    assert decoder.typed == 3


def test_a_message_in_another_key_order_is_typed_all_the_same():
    reordered = {"data": SNAPSHOT["data"], "ts": SNAPSHOT["ts"], "type": "snapshot", "topic": SNAPSHOT["topic"]}
    decoder = PublicDecoder()
    message = decoder.decode(_raw(reordered))
    assert decoder.typed == 1 and type(message["data"]["b"]) is ParsedLevels
    assert Normaliser().normalise(message) == Normaliser().normalise(copy.deepcopy(SNAPSHOT))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param(lambda m: m["data"].update(b=[["abc", "1"]]), "bad_number", id="wrong type: price not a number"),
        pytest.param(lambda m: m["data"].update(b=[[True, "1"]]), "bad_number", id="wrong type: price a boolean"),
        pytest.param(lambda m: m["data"].update(b=[["1e400", "1"]]), "bad_number", id="hostile size: price past float"),
        pytest.param(lambda m: m["data"].update(b=[[10**400, "1"]]), "bad_number", id="hostile size: 401-digit price"),
        pytest.param(lambda m: m["data"].update(b=[["100.40", "inf"]]), "bad_number", id="infinite size"),
        pytest.param(lambda m: m["data"].pop("a"), "missing_field", id="missing field: asks"),
        pytest.param(lambda m: m.pop("ts"), "missing_field", id="missing field: ts"),
        pytest.param(lambda m: m.update(ts=1100.0), "bad_number", id="wrong type: ts a float"),
    ],
)
def test_a_message_the_schema_refuses_is_decoded_plain_and_refused_with_the_normalisers_reason(change, reason):
    message = book_delta("BTCUSDT", bids=[["100.40", "5.000"]], asks=[])
    change(message)
    decoder = PublicDecoder()
    normaliser = _fresh()

    assert normaliser.normalise(decoder.decode(_raw(message))) == []

    assert normaliser.rejected == {reason: 1}
    assert decoder.typed == 0 or reason == "bad_number"  # a float ts is typed, kept a float, refused after


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        pytest.param(b"{not json", "malformed", id="not JSON"),
        pytest.param(b'{"topic":"tickers.BTCUSDT","ts":1', "truncated", id="cut short"),
        pytest.param(b"", "truncated", id="empty"),
        pytest.param(b'{"topic":"tickers.BTCUSDT","ts":' + b"9" * 5000 + b"}", "out of range", id="5000 digits"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "nested deeper", id="deep nesting"),
    ],
)
def test_text_that_is_not_json_is_refused_as_such_with_msgspecs_reason(raw: bytes, words: str):
    normaliser = Normaliser()
    assert normaliser.normalise_raw(raw) == []
    assert normaliser.rejected == {NOT_JSON: 1}
    assert words in normaliser.last_error
    with pytest.raises(WireError, match=words):
        decode_untyped(raw)


def test_a_price_twice_in_a_snapshot_keeps_its_old_meaning_the_last_size_wins():
    message = copy.deepcopy(SNAPSHOT)
    message["data"]["b"].append(["100.50", "7.000"])  # repeated: the typed path leaves it to the plain one
    decoder = PublicDecoder()
    events = Normaliser().normalise(decoder.decode(_raw(message)))
    assert decoder.untyped == 1
    assert events == Normaliser().normalise(message) and events[0].bid_qty == 7.0


def test_an_integer_too_large_for_a_float_is_a_bad_number_not_a_crash():
    normaliser = _fresh()
    huge = book_delta("BTCUSDT", bids=[[10**400, "1"]], asks=[])  # only a Python caller can build this
    assert normaliser.normalise(huge) == []
    assert normaliser.rejected == {"bad_number": 1}
