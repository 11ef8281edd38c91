"""Typed decoding of Bybit V5 public messages with msgspec: raw JSON in, the product's message dicts out.

One C pass turns a message into the dict every consumer already reads, with the
numbers the hot path needs already parsed: book levels become a ``ParsedLevels``
(price to size, validated: positive finite prices, finite sizes not below 0, no
price listed twice in a side), ticker fields become floats. Fields the product
does not read (``cts``, ``cs``, a fill's ``i``, ...) are left out.

Strictness is never traded for speed: every field the normaliser checks keeps its
JSON type (a ``ts`` of ``"1"`` stays a string, so it is refused as before), and a
message the typed schema does not accept is decoded untyped instead, so the
normaliser refuses it with the same reason as it always did. Only text that is
not JSON at all, or hostile sizes (a number past 64 bits, nesting deeper than
Python allows), raise ``WireError``, with msgspec's reason.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any, NotRequired, TypedDict

import msgspec

from trading.marketdata.messages import KLINE, ORDERBOOK, PUBLIC_TRADE, TICKERS, split_topic

_MAX = sys.float_info.max
# Levels are parsed leniently (Bybit sends "91234.50"), bounded so "inf" and "nan" are refused as before.
Price = Annotated[float, msgspec.Meta(gt=0.0, le=_MAX)]
Size = Annotated[float, msgspec.Meta(ge=0.0, le=_MAX)]
# A field the normaliser type-checks itself: the union keeps the JSON type through lenient decoding.
Keep = int | float | str


class ParsedLevels(dict[float, float]):
    """One side of a book message, already parsed and validated by the typed decoder: price to size.

    ``parse_levels`` returns it unchanged; readers must not change it (REPLAY's exchange and client share it).
    """

    __slots__ = ()


class _BookData(TypedDict):
    b: list[tuple[Price, Size]]
    a: list[tuple[Price, Size]]
    s: NotRequired[str]
    u: NotRequired[Keep | None]
    seq: NotRequired[Keep | None]


class _Book(TypedDict):
    topic: str
    ts: Keep
    type: NotRequired[str]
    data: _BookData


class _Fill(TypedDict):
    T: Keep
    S: str
    p: Keep  # prices and sizes of fills stay as sent: the exchange side reads them as Decimal
    v: Keep
    s: NotRequired[str]


class _Trades(TypedDict):
    topic: str
    ts: Keep
    type: NotRequired[str]
    data: list[_Fill]


class _TickerData(TypedDict, total=False):
    symbol: str
    lastPrice: float
    bid1Price: float
    ask1Price: float
    bid1Size: float
    ask1Size: float


class _Ticker(TypedDict):
    topic: str
    ts: Keep
    type: NotRequired[str]
    data: _TickerData


class _Kline(TypedDict):
    topic: str
    ts: Keep
    type: NotRequired[str]


class _Head(msgspec.Struct):
    topic: Any = None


class WireError(ValueError):
    """Raw text that is not JSON at all (or past a hostile size); ``reason`` is msgspec's own words."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _lenient(kind: type) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(kind, strict=False)


_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    ORDERBOOK: _lenient(_Book),
    PUBLIC_TRADE: _lenient(_Trades),
    TICKERS: _lenient(_Ticker),
    KLINE: _lenient(_Kline),
}
# Bybit (and every file the product writes) puts "topic" first: the kind shows in the first bytes, found by
# the three after '{"topic":"' and confirmed by the whole prefix. Any other order is found by a decode.
_MARK = slice(10, 13)
_SNIFF = {f"{kind}."[:3]: (f'{{"topic":"{kind}.', kind) for kind in _DECODERS}
# Bytes, the usual input, go straight to their decoder: (prefix, kind, the decoder's decode).
_SNIFF_BYTES = {
    mark.encode(): (prefix.encode(), kind, _DECODERS[kind].decode) for mark, (prefix, kind) in _SNIFF.items()
}
_HEAD = msgspec.json.Decoder(_Head)
_UNTYPED = msgspec.json.Decoder()


def decode_untyped(raw: bytes | str) -> Any:
    """Decode any JSON text as plain Python values; raise ``WireError`` for text that is not JSON."""
    try:
        return _UNTYPED.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:  # ValidationError: an integer past 64 bits
        raise WireError(str(exc)) from None
    except RecursionError:
        raise WireError("nested deeper than Python allows") from None


class PublicDecoder:
    """Decode Bybit public messages, typed where the schema accepts them, untyped otherwise.

    ``typed`` and ``untyped`` count the two outcomes: a stream or a file whose messages
    all go untyped is one whose shape the schema does not know.
    """

    __slots__ = ("typed", "untyped")

    def __init__(self) -> None:
        self.typed = 0
        self.untyped = 0

    def decode(self, raw: bytes | str) -> Any:
        """Return one message: a typed dict, or whatever the JSON holds; raise ``WireError`` if not JSON."""
        kind: str | None
        decode: Callable[[bytes | str], Any] | None = None
        if type(raw) is bytes:
            sniffed = _SNIFF_BYTES.get(raw[_MARK])
            if sniffed is not None and raw.startswith(sniffed[0]):
                kind, decode = sniffed[1], sniffed[2]
            else:
                kind = _topic_kind(raw)
        else:
            text = str(raw)
            known = _SNIFF.get(text[_MARK])
            kind = known[1] if known is not None and text.startswith(known[0]) else _topic_kind(raw)
        if decode is None and kind is not None:
            decode = _DECODERS[kind].decode
        if decode is not None:
            try:
                message = decode(raw)
            except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
                pass  # the untyped decode below tells which, and the normaliser why
            else:
                if kind != ORDERBOOK:
                    self.typed += 1
                    return message
                data = message["data"]
                sent_bids, sent_asks = data["b"], data["a"]
                bids, asks = ParsedLevels(sent_bids), ParsedLevels(sent_asks)
                # A price listed twice in a side: which size is meant? Left to the untyped path, which
                # refuses it in a delta and keeps the last in a snapshot, exactly as it always did.
                if len(bids) == len(sent_bids) and len(asks) == len(sent_asks):
                    data["b"], data["a"] = bids, asks
                    self.typed += 1
                    return message
        self.untyped += 1
        return decode_untyped(raw)


def _topic_kind(raw: bytes | str) -> str | None:
    """Return the kind of a message's topic when the typed decoders know it (found by a decode), else None."""
    try:
        topic = _HEAD.decode(raw).topic  # another key order: find the topic, ignore the rest
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return None
    parsed = split_topic(topic) if isinstance(topic, str) else None
    return parsed[0] if parsed is not None else None
