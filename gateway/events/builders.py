"""Typed constructors for the common event kinds, taking plain Python values.

Why: producers (FIX callbacks, transports, the gate, the router) should state facts in the terms
they already hold — FIX field values, Decimals, datetimes — and never learn protobuf's API or
this package's encoding rules (decimal strings, enum mapping, timestamps). Every rule lives here
once: a float price is refused (TypeError) instead of being silently rounded, an unknown FIX
enum value is refused (ValueError) instead of becoming "unspecified".

Each builder returns an `Event` ready for `EventLog.publish()`. Common keyword arguments:

* `source`: an `EventSource` (`EventSource.fix("FIXGW->KRAKEN-TRD")`, `.rest()`, `.ws()`,
  `.gateway("router")`).
* `venue_time`: the venue's time of the fact — a timezone-aware `datetime` (naive means UTC), an
  `int` of nanoseconds since the epoch, or a FIX UTCTimestamp string ("20240501-12:00:00.123").
* `gateway_receive_time_ns`: `time.time_ns()` taken when the callback started; omitted, the log
  stamps the event at publish time (later by the time spent building it).
* `raw_fix`: the message exactly as received; only subscribers that ask get it.

An event can also travel unbuilt, as an `EventSpec`: a builder's name and its keyword arguments
in plain values (str, int, bytes, None, tuples and lists of them; a source as its
`(kind, session)` tuple, a Figure as its tuple), which `marshal` serializes in well under a
microsecond. The FIX threads publish specs; whoever builds them calls `from_spec`.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from google.protobuf import json_format, timestamp_pb2

from gateway._proto.fixgw.v1 import (
    common_pb2,
    events_pb2,
    gate_pb2,
    market_data_pb2,
    orders_pb2,
    session_pb2,
    signals_pb2,
)

__all__ = [
    "DecimalLike",
    "EventSource",
    "EventSpec",
    "Figure",
    "TimeLike",
    "book_delta",
    "book_snapshot",
    "cancel_reject",
    "from_spec",
    "from_wire",
    "gate_decision",
    "order_event",
    "session_event",
    "signal_snapshot",
    "top_of_book",
    "trade",
    "transport_switch",
]

DecimalLike = Decimal | str | int
TimeLike = datetime | int | str
Level = tuple[DecimalLike, DecimalLike]

SourceKindName = Literal["fix", "rest", "ws", "gateway"]
OrderEventTypeName = Literal["accepted", "rejected", "execution_report", "cancel_requested"]
SessionStatusName = Literal[
    "logon",
    "logout",
    "disconnect",
    "sequence_reset",
    "resend_request",
    "connecting",
    "logon_rejected",
]
DirectionName = Literal["inbound", "outbound"]
GateActionName = Literal["allow", "warn", "reduce", "block"]
TransportName = Literal["fix", "rest", "ws"]

_SOURCE_KIND: dict[str, common_pb2.SourceKind.ValueType] = {
    "fix": common_pb2.SOURCE_KIND_FIX,
    "rest": common_pb2.SOURCE_KIND_REST,
    "ws": common_pb2.SOURCE_KIND_WS,
    "gateway": common_pb2.SOURCE_KIND_GATEWAY,
}
_ORDER_EVENT_TYPE: dict[str, orders_pb2.OrderEventType.ValueType] = {
    "accepted": orders_pb2.ORDER_EVENT_TYPE_ACCEPTED,
    "rejected": orders_pb2.ORDER_EVENT_TYPE_REJECTED,
    "execution_report": orders_pb2.ORDER_EVENT_TYPE_EXECUTION_REPORT,
    "cancel_requested": orders_pb2.ORDER_EVENT_TYPE_CANCEL_REQUESTED,
}
# FIX 4.4 ExecType (150) -> proto.
_EXEC_TYPE: dict[str, orders_pb2.ExecType.ValueType] = {
    "0": orders_pb2.EXEC_TYPE_NEW,
    "3": orders_pb2.EXEC_TYPE_DONE_FOR_DAY,
    "4": orders_pb2.EXEC_TYPE_CANCELED,
    "5": orders_pb2.EXEC_TYPE_REPLACED,
    "6": orders_pb2.EXEC_TYPE_PENDING_CANCEL,
    "7": orders_pb2.EXEC_TYPE_STOPPED,
    "8": orders_pb2.EXEC_TYPE_REJECTED,
    "9": orders_pb2.EXEC_TYPE_SUSPENDED,
    "A": orders_pb2.EXEC_TYPE_PENDING_NEW,
    "B": orders_pb2.EXEC_TYPE_CALCULATED,
    "C": orders_pb2.EXEC_TYPE_EXPIRED,
    "D": orders_pb2.EXEC_TYPE_RESTATED,
    "E": orders_pb2.EXEC_TYPE_PENDING_REPLACE,
    "F": orders_pb2.EXEC_TYPE_TRADE,
    "G": orders_pb2.EXEC_TYPE_TRADE_CORRECT,
    "H": orders_pb2.EXEC_TYPE_TRADE_CANCEL,
    "I": orders_pb2.EXEC_TYPE_ORDER_STATUS,
}
# FIX 4.4 OrdStatus (39) -> proto.
_ORD_STATUS: dict[str, orders_pb2.OrdStatus.ValueType] = {
    "0": orders_pb2.ORD_STATUS_NEW,
    "1": orders_pb2.ORD_STATUS_PARTIALLY_FILLED,
    "2": orders_pb2.ORD_STATUS_FILLED,
    "3": orders_pb2.ORD_STATUS_DONE_FOR_DAY,
    "4": orders_pb2.ORD_STATUS_CANCELED,
    "6": orders_pb2.ORD_STATUS_PENDING_CANCEL,
    "7": orders_pb2.ORD_STATUS_STOPPED,
    "8": orders_pb2.ORD_STATUS_REJECTED,
    "9": orders_pb2.ORD_STATUS_SUSPENDED,
    "A": orders_pb2.ORD_STATUS_PENDING_NEW,
    "B": orders_pb2.ORD_STATUS_CALCULATED,
    "C": orders_pb2.ORD_STATUS_EXPIRED,
    "D": orders_pb2.ORD_STATUS_ACCEPTED_FOR_BIDDING,
    "E": orders_pb2.ORD_STATUS_PENDING_REPLACE,
}
_SIDE: dict[str, common_pb2.Side.ValueType] = {
    "1": common_pb2.SIDE_BUY,
    "2": common_pb2.SIDE_SELL,
    "buy": common_pb2.SIDE_BUY,
    "sell": common_pb2.SIDE_SELL,
}
_ORD_TYPE: dict[str, orders_pb2.OrdType.ValueType] = {
    "1": orders_pb2.ORD_TYPE_MARKET,
    "2": orders_pb2.ORD_TYPE_LIMIT,
    "3": orders_pb2.ORD_TYPE_STOP,
    "4": orders_pb2.ORD_TYPE_STOP_LIMIT,
}
_TIME_IN_FORCE: dict[str, orders_pb2.TimeInForce.ValueType] = {
    "0": orders_pb2.TIME_IN_FORCE_DAY,
    "1": orders_pb2.TIME_IN_FORCE_GOOD_TILL_CANCEL,
    "2": orders_pb2.TIME_IN_FORCE_AT_THE_OPENING,
    "3": orders_pb2.TIME_IN_FORCE_IMMEDIATE_OR_CANCEL,
    "4": orders_pb2.TIME_IN_FORCE_FILL_OR_KILL,
    "6": orders_pb2.TIME_IN_FORCE_GOOD_TILL_DATE,
}
_CXL_REJ_RESPONSE_TO: dict[str, orders_pb2.CxlRejResponseTo.ValueType] = {
    "1": orders_pb2.CXL_REJ_RESPONSE_TO_ORDER_CANCEL_REQUEST,
    "2": orders_pb2.CXL_REJ_RESPONSE_TO_ORDER_CANCEL_REPLACE_REQUEST,
}
_SESSION_STATUS: dict[str, session_pb2.SessionStatusType.ValueType] = {
    "logon": session_pb2.SESSION_STATUS_TYPE_LOGON,
    "logout": session_pb2.SESSION_STATUS_TYPE_LOGOUT,
    "disconnect": session_pb2.SESSION_STATUS_TYPE_DISCONNECT,
    "sequence_reset": session_pb2.SESSION_STATUS_TYPE_SEQUENCE_RESET,
    "resend_request": session_pb2.SESSION_STATUS_TYPE_RESEND_REQUEST,
    "connecting": session_pb2.SESSION_STATUS_TYPE_CONNECTING,
    "logon_rejected": session_pb2.SESSION_STATUS_TYPE_LOGON_REJECTED,
}
_DIRECTION: dict[str, session_pb2.Direction.ValueType] = {
    "inbound": session_pb2.DIRECTION_INBOUND,
    "outbound": session_pb2.DIRECTION_OUTBOUND,
}
_GATE_ACTION: dict[str, gate_pb2.GateAction.ValueType] = {
    "allow": gate_pb2.GATE_ACTION_ALLOW,
    "warn": gate_pb2.GATE_ACTION_WARN,
    "reduce": gate_pb2.GATE_ACTION_REDUCE,
    "block": gate_pb2.GATE_ACTION_BLOCK,
}
_TRANSPORT: dict[str, common_pb2.Transport.ValueType] = {
    "fix": common_pb2.TRANSPORT_FIX,
    "rest": common_pb2.TRANSPORT_REST,
    "ws": common_pb2.TRANSPORT_WS,
}
# Non-numeric figure values that shared/signals.md allows for unbounded/undefined ratios.
_SPECIAL_FIGURES = frozenset({"inf", "-inf", "undefined"})
_PLAIN_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_FIX_TIMESTAMP = re.compile(r"(\d{4})(\d{2})(\d{2})-(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?")


@dataclass(frozen=True, slots=True)
class EventSource:
    """Where an event comes from; `session` is what `SubscribeRequest.sessions` filters on."""

    kind: SourceKindName
    session: str = ""

    @classmethod
    def fix(cls, session: str) -> EventSource:
        """A FIX session, named SENDERCOMPID->TARGETCOMPID ("FIXGW->KRAKEN-TRD"), as the
        gateway's status board and `fixgwctl sessions` name it."""
        return cls("fix", session)

    @classmethod
    def rest(cls, name: str = "rest") -> EventSource:
        return cls("rest", name)

    @classmethod
    def ws(cls, name: str = "ws") -> EventSource:
        return cls("ws", name)

    @classmethod
    def gateway(cls, component: str = "") -> EventSource:
        return cls("gateway", component)


# A Figure as a spec carries it: (name, value, unit, limit).
FigureTuple = tuple[str, DecimalLike, str, DecimalLike | None]


@dataclass(frozen=True, slots=True)
class Figure:
    """A gate figure with its unit and the limit it was compared with."""

    name: str
    value: DecimalLike
    unit: str = ""
    limit: DecimalLike | None = None


# Strings `decimal_str` has found plain. Prices and quantities repeat (an order's price and
# quantity are in each of its ~4 events), and the event process checks every one; a set lookup
# is ~6x cheaper than the regular expression. Emptied when it reaches `_PLAIN_SEEN_MAX`.
_PLAIN_SEEN: set[str] = set()
_PLAIN_SEEN_MAX = 1 << 16


def decimal_str(value: DecimalLike | None, name: str = "value") -> str:
    """A plain decimal string ("" for None); refuses floats, NaN, infinities and garbage."""
    if value is None:
        return ""
    if isinstance(value, str):
        if value in _PLAIN_SEEN:
            return value
        if _PLAIN_DECIMAL.fullmatch(value):
            if len(_PLAIN_SEEN) >= _PLAIN_SEEN_MAX:
                _PLAIN_SEEN.clear()
            _PLAIN_SEEN.add(value)
            return value  # the venue's own spelling, e.g. trailing zeros, is kept
        try:
            parsed = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{name}: {value!r} is not a decimal number") from None
        value = parsed
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(
            f"{name}: {type(value).__name__} refused; pass Decimal or str (floats lose precision)"
        )
    if isinstance(value, int):
        return str(value)
    if not value.is_finite():
        raise ValueError(f"{name}: {value} is not a finite decimal")
    return format(value, "f")


def _figure_str(value: DecimalLike, name: str) -> str:
    if isinstance(value, str) and value in _SPECIAL_FIGURES:
        return value
    return decimal_str(value, name)


def _enum(table: Mapping[str, int], value: str | None, name: str) -> int:
    if value is None:
        return 0
    try:
        return table[value]
    except KeyError:
        raise ValueError(f"{name}: unknown value {value!r}") from None


def time_ns(value: TimeLike) -> int:
    """Nanoseconds since the epoch from a datetime (naive = UTC), int ns or FIX UTCTimestamp."""
    if isinstance(value, bool):
        raise TypeError("time: bool refused")
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        delta = value - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    if isinstance(value, str):
        m = _FIX_TIMESTAMP.fullmatch(value)
        if m is None:
            raise ValueError(f"time: {value!r} is not a FIX UTCTimestamp (YYYYMMDD-HH:MM:SS[.f])")
        y, mo, d, h, mi, s, frac = m.groups()
        secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
        return secs * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0)
    raise TypeError(f"time: {type(value).__name__} refused")


def _set_time(ts: timestamp_pb2.Timestamp, value: TimeLike) -> None:
    ns = time_ns(value)
    ts.seconds = ns // 1_000_000_000
    ts.nanos = ns % 1_000_000_000


def _envelope(
    source: EventSource,
    symbol: str,
    account: str,
    venue_time: TimeLike | None,
    gateway_receive_time_ns: int | None,
    raw_fix: bytes,
    **payload: Any,
) -> events_pb2.Event:
    """The event with its common fields and `payload` (one oneof member as a dict).

    Built by one constructor call with nested dicts (which protobuf accepts for message fields,
    though the generated stubs type only the message class): upb fills the message in C, ~3x
    faster than setting the same fields one attribute at a time. The event process builds every
    event the gateway publishes, ~4 per order, and its CPU competes with the order path's."""
    source_fields: Any = {"kind": _SOURCE_KIND[source.kind], "session": source.session}
    ev = events_pb2.Event(symbol=symbol, account=account, raw_fix=raw_fix, source=source_fields,
                          **payload)
    if venue_time is not None:
        _set_time(ev.venue_time, venue_time)
    if gateway_receive_time_ns is not None:
        _set_time(ev.gateway_receive_time, gateway_receive_time_ns)
    return ev


def _decimals(target: dict[str, Any], **values: DecimalLike | None) -> None:
    """`decimal_str` of each value given, into `target`; None values are left out (""): a
    call per field present instead of one per field of the message."""
    for name, value in values.items():
        if value is not None:
            target[name] = decimal_str(value, name)


def _levels(target: Iterable[object], levels: Iterable[Level], name: str) -> None:
    add = target.add  # type: ignore[attr-defined]
    for price, qty in levels:
        add(price=decimal_str(price, f"{name}.price"), qty=decimal_str(qty, f"{name}.qty"))


def order_event(
    event_type: OrderEventTypeName,
    *,
    source: EventSource,
    symbol: str,
    account: str = "",
    cl_ord_id: str = "",
    orig_cl_ord_id: str = "",
    venue_cl_ord_id: str = "",
    venue_orig_cl_ord_id: str = "",
    order_id: str = "",
    exec_id: str = "",
    exec_type: str | None = None,
    ord_status: str | None = None,
    side: str | None = None,
    ord_type: str | None = None,
    time_in_force: str | None = None,
    price: DecimalLike | None = None,
    stop_px: DecimalLike | None = None,
    order_qty: DecimalLike | None = None,
    cum_qty: DecimalLike | None = None,
    leaves_qty: DecimalLike | None = None,
    avg_px: DecimalLike | None = None,
    last_px: DecimalLike | None = None,
    last_qty: DecimalLike | None = None,
    ord_rej_reason: int | None = None,
    reject_reason: str = "",
    text: str = "",
    venue_time: TimeLike | None = None,
    gateway_receive_time_ns: int | None = None,
    raw_fix: bytes = b"",
) -> events_pb2.Event:
    """An order event. `exec_type`, `ord_status`, `side`, `ord_type`, `time_in_force` take the
    FIX field values ("F", "2", "1", ...; side also "buy"/"sell")."""
    o: dict[str, Any] = {
        "type": _ORDER_EVENT_TYPE[event_type],
        "cl_ord_id": cl_ord_id, "orig_cl_ord_id": orig_cl_ord_id,
        "venue_cl_ord_id": venue_cl_ord_id, "venue_orig_cl_ord_id": venue_orig_cl_ord_id,
        "order_id": order_id, "exec_id": exec_id, "reject_reason": reject_reason,
    }
    if exec_type is not None:
        o["exec_type"] = _enum(_EXEC_TYPE, exec_type, "exec_type")
    if ord_status is not None:
        o["ord_status"] = _enum(_ORD_STATUS, ord_status, "ord_status")
    if side is not None:
        o["side"] = _enum(_SIDE, side, "side")
    if ord_type is not None:
        o["ord_type"] = _enum(_ORD_TYPE, ord_type, "ord_type")
    if time_in_force is not None:
        o["time_in_force"] = _enum(_TIME_IN_FORCE, time_in_force, "time_in_force")
    _decimals(o, price=price, stop_px=stop_px, order_qty=order_qty, cum_qty=cum_qty,
              leaves_qty=leaves_qty, avg_px=avg_px, last_px=last_px, last_qty=last_qty)
    if ord_rej_reason is not None:
        o["ord_rej_reason"] = ord_rej_reason
    if text:
        o["text"] = text
    return _envelope(source, symbol, account, venue_time, gateway_receive_time_ns, raw_fix,
                     order=o)


def cancel_reject(
    *,
    source: EventSource,
    symbol: str = "",
    account: str = "",
    cl_ord_id: str = "",
    orig_cl_ord_id: str = "",
    venue_cl_ord_id: str = "",
    venue_orig_cl_ord_id: str = "",
    order_id: str = "",
    ord_status: str | None = None,
    response_to: str | None = None,
    cxl_rej_reason: int | None = None,
    side: str | None = None,
    text: str = "",
    venue_time: TimeLike | None = None,
    gateway_receive_time_ns: int | None = None,
    raw_fix: bytes = b"",
) -> events_pb2.Event:
    """An OrderCancelReject; `ord_status` (39), `response_to` (434) and `side` (54, the
    order's) take FIX values."""
    ev = _envelope(source, symbol, account, venue_time, gateway_receive_time_ns, raw_fix)
    c = ev.cancel_reject
    c.cl_ord_id = cl_ord_id
    c.orig_cl_ord_id = orig_cl_ord_id
    c.venue_cl_ord_id = venue_cl_ord_id
    c.venue_orig_cl_ord_id = venue_orig_cl_ord_id
    c.order_id = order_id
    c.ord_status = _enum(_ORD_STATUS, ord_status, "ord_status")  # type: ignore[assignment]
    c.response_to = _enum(_CXL_REJ_RESPONSE_TO, response_to, "response_to")  # type: ignore[assignment]
    if cxl_rej_reason is not None:
        c.cxl_rej_reason = cxl_rej_reason
    c.side = _enum(_SIDE, side, "side")  # type: ignore[assignment]
    c.text = text
    return ev


def book_snapshot(
    *,
    source: EventSource,
    symbol: str,
    bids: Iterable[Level],
    asks: Iterable[Level],
    depth: int = 0,
    checksum: int | None = None,
    venue_time: TimeLike | None = None,
    gateway_receive_time_ns: int | None = None,
    raw_fix: bytes = b"",
) -> events_pb2.Event:
    """A full book; levels are (price, qty), best first."""
    ev = _envelope(source, symbol, "", venue_time, gateway_receive_time_ns, raw_fix)
    b = ev.book_snapshot
    _levels(b.bids, bids, "bids")
    _levels(b.asks, asks, "asks")
    b.depth = depth
    if checksum is not None:
        b.checksum = checksum
    return ev


def book_delta(
    *,
    source: EventSource,
    symbol: str,
    bids: Iterable[Level] = (),
    asks: Iterable[Level] = (),
    checksum: int | None = None,
    venue_time: TimeLike | None = None,
    gateway_receive_time_ns: int | None = None,
    raw_fix: bytes = b"",
) -> events_pb2.Event:
    """Changed levels, (price, qty) each; qty 0 removes the level."""
    ev = _envelope(source, symbol, "", venue_time, gateway_receive_time_ns, raw_fix)
    d = ev.book_delta
    _levels(d.bids, bids, "bids")
    _levels(d.asks, asks, "asks")
    if checksum is not None:
        d.checksum = checksum
    return ev


def trade(
    *,
    source: EventSource,
    symbol: str,
    price: DecimalLike,
    qty: DecimalLike,
    aggressor_side: str | None = None,
    trade_id: str = "",
    venue_time: TimeLike | None = None,
    gateway_receive_time_ns: int | None = None,
    raw_fix: bytes = b"",
) -> events_pb2.Event:
    """A public trade; `aggressor_side` is a FIX side ("1"/"2") or "buy"/"sell"."""
    ev = _envelope(source, symbol, "", venue_time, gateway_receive_time_ns, raw_fix)
    t = ev.trade
    t.price = decimal_str(price, "price")
    t.qty = decimal_str(qty, "qty")
    t.aggressor_side = _enum(_SIDE, aggressor_side, "aggressor_side")  # type: ignore[assignment]
    t.trade_id = trade_id
    return ev


def top_of_book(
    *,
    source: EventSource,
    symbol: str,
    bid_price: DecimalLike | None = None,
    bid_qty: DecimalLike | None = None,
    ask_price: DecimalLike | None = None,
    ask_qty: DecimalLike | None = None,
    venue_time: TimeLike | None = None,
    gateway_receive_time_ns: int | None = None,
    raw_fix: bytes = b"",
) -> events_pb2.Event:
    """Best bid/offer; a side left None is empty."""
    ev = _envelope(source, symbol, "", venue_time, gateway_receive_time_ns, raw_fix)
    t = ev.top_of_book
    t.bid_price = decimal_str(bid_price, "bid_price")
    t.bid_qty = decimal_str(bid_qty, "bid_qty")
    t.ask_price = decimal_str(ask_price, "ask_price")
    t.ask_qty = decimal_str(ask_qty, "ask_qty")
    return ev


def session_event(
    status: SessionStatusName,
    *,
    source: EventSource,
    direction: DirectionName | None = None,
    text: str = "",
    begin_seq_no: int = 0,
    end_seq_no: int = 0,
    new_seq_no: int = 0,
    gap_fill: bool = False,
    next_sender_seq_num: int = 0,
    next_target_seq_num: int = 0,
    venue_time: TimeLike | None = None,
    gateway_receive_time_ns: int | None = None,
    raw_fix: bytes = b"",
) -> events_pb2.Event:
    """A session status change of the session named by `source`."""
    ev = _envelope(source, "", "", venue_time, gateway_receive_time_ns, raw_fix)
    s = ev.session_status
    s.type = _SESSION_STATUS[status]
    s.direction = _enum(_DIRECTION, direction, "direction")  # type: ignore[assignment]
    s.text = text
    s.begin_seq_no = begin_seq_no
    s.end_seq_no = end_seq_no
    s.new_seq_no = new_seq_no
    s.gap_fill = gap_fill
    s.next_sender_seq_num = next_sender_seq_num
    s.next_target_seq_num = next_target_seq_num
    return ev


def gate_decision(
    *,
    rule: str,
    action: GateActionName,
    reasons: Sequence[str] = (),
    figures: Iterable[Figure | FigureTuple] | Mapping[str, DecimalLike] = (),
    symbol: str = "",
    account: str = "",
    cl_ord_id: str = "",
    side: str | None = None,
    order_qty: DecimalLike | None = None,
    price: DecimalLike | None = None,
    reduced_qty: DecimalLike | None = None,
    stale_inputs: bool = False,
    source: EventSource = EventSource.gateway("gate"),  # noqa: B008 - frozen, shared safely
    gateway_receive_time_ns: int | None = None,
) -> events_pb2.Event:
    """One gate rule's decision about one order, with the figures it used.

    `figures` is either `Figure`s (with unit and limit), their `(name, value, unit, limit)`
    tuples (as a spec carries them), or a name -> value mapping; values may also be "inf" /
    "-inf" / "undefined" where shared/signals.md allows them.
    """
    items: Iterable[FigureTuple] = (
        [(k, v, "", None) for k, v in figures.items()] if isinstance(figures, Mapping)
        else [f if isinstance(f, tuple) else (f.name, f.value, f.unit, f.limit) for f in figures]
    )
    g: dict[str, Any] = {
        "rule": rule, "action": _GATE_ACTION[action], "reasons": reasons,
        "figures": [{"name": name, "value": _figure_str(value, name), "unit": unit,
                     "limit": _figure_str(limit, name) if limit is not None else ""}
                    for name, value, unit, limit in items],
        "cl_ord_id": cl_ord_id, "stale_inputs": stale_inputs,
    }
    if side is not None:
        g["side"] = _enum(_SIDE, side, "side")
    _decimals(g, order_qty=order_qty, price=price, reduced_qty=reduced_qty)
    return _envelope(source, symbol, account, None, gateway_receive_time_ns, b"",
                     gate_decision=g)


def transport_switch(
    *,
    from_transport: TransportName | None,
    to_transport: TransportName,
    reason: str,
    automatic: bool = True,
    session: str = "",
    symbol: str = "",
    source: EventSource = EventSource.gateway("router"),  # noqa: B008 - frozen, shared safely
    gateway_receive_time_ns: int | None = None,
) -> events_pb2.Event:
    """The router moved order flow to another transport (`from_transport=None` at startup)."""
    ev = _envelope(source, symbol, "", None, gateway_receive_time_ns, b"")
    t = ev.transport_switch
    t.from_transport = _enum(_TRANSPORT, from_transport, "from_transport")  # type: ignore[assignment]
    t.to_transport = _TRANSPORT[to_transport]
    t.reason = reason
    t.automatic = automatic
    t.session = session
    return ev


def _jsonable(value: object, path: str) -> object:
    """Decimal -> str, datetime -> RFC 3339, recursively; floats refused like everywhere else."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, datetime):
        ts = timestamp_pb2.Timestamp()
        _set_time(ts, value)
        return ts.ToJsonString()
    if isinstance(value, float):
        raise TypeError(f"{path}: float refused; pass Decimal or str")
    if isinstance(value, Decimal):
        return _figure_str(value, path)
    return value


def signal_snapshot(
    *,
    symbol: str,
    computed_at: TimeLike,
    values: Mapping[str, object],
    source: EventSource = EventSource.gateway("signals"),  # noqa: B008 - frozen, shared safely
    gateway_receive_time_ns: int | None = None,
) -> events_pb2.Event:
    """A signal snapshot from a nested mapping shaped like `SignalSnapshot` (field names as in
    signals.proto, enums by name such as "SIGNAL_DIRECTION_SHORT", Decimals and datetimes
    allowed). Generic on purpose until the signal module settles its own builder; unknown
    field names raise ValueError rather than being dropped."""
    ev = _envelope(source, symbol, "", None, gateway_receive_time_ns, b"")
    snap = signals_pb2.SignalSnapshot()
    try:
        json_format.ParseDict(
            {str(k): _jsonable(v, k) for k, v in values.items()}, snap, ignore_unknown_fields=False
        )
    except json_format.ParseError as exc:
        raise ValueError(f"signal_snapshot: {exc}") from None
    _set_time(snap.computed_at, computed_at)
    ev.signal_snapshot.CopyFrom(snap)
    return ev


# Keep the market-data module imported for its types in stubs and for `_levels` targets.
_ = market_data_pb2


def from_wire(*, wire: bytes) -> events_pb2.Event:
    """An event built elsewhere, travelling serialized (`EventSpec` of an already built one)."""
    return events_pb2.Event.FromString(wire)


EventSpec = tuple[str, dict[str, Any]]

_BY_NAME: dict[str, Any] = {f.__name__: f for f in (
    order_event, cancel_reject, book_snapshot, book_delta, trade, top_of_book, session_event,
    gate_decision, transport_switch, from_wire)}


def from_spec(spec: EventSpec) -> events_pb2.Event:
    """Build the event an `EventSpec` describes. The spec's dict is consumed (modified)."""
    name, kwargs = spec
    builder = _BY_NAME.get(name)
    if builder is None:
        raise ValueError(f"no event builder named {name!r}")
    source = kwargs.get("source")
    if isinstance(source, tuple):
        kwargs["source"] = _source(source)
    event: events_pb2.Event = builder(**kwargs)
    return event


# A spec's source tuples -> EventSource: a handful of sessions name every event's source, and
# a lookup is ~10x cheaper than building the frozen dataclass for each event.
_SOURCES: dict[tuple[SourceKindName, str], EventSource] = {}
_SOURCES_MAX = 4096


def _source(spec: tuple[SourceKindName, str]) -> EventSource:
    source = _SOURCES.get(spec)
    if source is None:
        source = EventSource(*spec)
        if len(_SOURCES) >= _SOURCES_MAX:
            _SOURCES.clear()
        _SOURCES[spec] = source
    return source
