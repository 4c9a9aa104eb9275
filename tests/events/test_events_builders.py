"""Builders: plain Python values in, correctly encoded protobuf out; bad values refused."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from gateway._proto.fixgw.v1 import (
    common_pb2,
    gate_pb2,
    orders_pb2,
    session_pb2,
    signals_pb2,
)
from gateway.events import builders as b

SRC = b.EventSource.fix("FIX.4.4:GW->KRAKEN")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.1110", "0.1110"),  # the venue's spelling is kept
        (Decimal("0.1110"), "0.1110"),
        (Decimal("1E-8"), "0.00000001"),
        ("1e3", "1000"),
        (12, "12"),
        ("-6.7", "-6.7"),
        (None, ""),
    ],
)
def test_decimal_strings(value: b.DecimalLike | None, expected: str) -> None:
    assert b.decimal_str(value) == expected


@pytest.mark.parametrize("bad", [0.1, True, "abc", Decimal("NaN"), "Infinity", b"1"])
def test_decimal_refuses_floats_and_garbage(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        b.decimal_str(bad)  # type: ignore[arg-type]


def test_decimal_strings_seen_before_are_answered_alike_and_the_memory_is_bounded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain strings are remembered (the event process checks the same prices and quantities
    over and over): a second look gives the same answer, garbage is never remembered, and the
    memory is emptied at its bound rather than growing."""
    monkeypatch.setattr(b, "_PLAIN_SEEN", set())
    monkeypatch.setattr(b, "_PLAIN_SEEN_MAX", 8)
    for _ in range(2):
        assert b.decimal_str("45000.10") == "45000.10"
        assert b.decimal_str("1e3") == "1000"  # not plain: converted each time, not remembered
        with pytest.raises(ValueError):
            b.decimal_str("12abc")
    assert {"45000.10"} == b._PLAIN_SEEN
    for i in range(20):
        assert b.decimal_str(f"{i}.5") == f"{i}.5"
        assert len(b._PLAIN_SEEN) <= 8


def test_order_event_maps_fix_values() -> None:
    ev = b.order_event(
        "execution_report",
        source=SRC,
        symbol="XBT/USD",
        account="ACC",
        cl_ord_id="OMS-1",
        orig_cl_ord_id="OMS-0",
        venue_cl_ord_id="GW-1",
        order_id="O-9",
        exec_id="E-1",
        exec_type="F",
        ord_status="1",
        side="2",
        ord_type="2",
        time_in_force="3",
        price=Decimal("65000.10"),
        order_qty="2",
        cum_qty="0.5",
        leaves_qty="1.5",
        avg_px="65000.10",
        last_px="65000.10",
        last_qty="0.5",
        ord_rej_reason=0,
        text="partial",
        venue_time="20240501-12:00:00.123456",
        gateway_receive_time_ns=1_714_564_800_200_000_000,
        raw_fix=b"8=FIX.4.4\x01",
    )
    o = ev.order
    assert o.type == orders_pb2.ORDER_EVENT_TYPE_EXECUTION_REPORT
    assert o.exec_type == orders_pb2.EXEC_TYPE_TRADE
    assert o.ord_status == orders_pb2.ORD_STATUS_PARTIALLY_FILLED
    assert o.side == common_pb2.SIDE_SELL
    assert o.ord_type == orders_pb2.ORD_TYPE_LIMIT
    assert o.time_in_force == orders_pb2.TIME_IN_FORCE_IMMEDIATE_OR_CANCEL
    assert (o.price, o.cum_qty, o.leaves_qty, o.last_qty) == ("65000.10", "0.5", "1.5", "0.5")
    assert o.HasField("ord_rej_reason") and o.ord_rej_reason == 0
    assert not o.stop_px
    assert ev.source.kind == common_pb2.SOURCE_KIND_FIX
    assert ev.source.session == "FIX.4.4:GW->KRAKEN"
    assert (ev.symbol, ev.account, ev.raw_fix) == ("XBT/USD", "ACC", b"8=FIX.4.4\x01")
    assert ev.venue_time.ToNanoseconds() == 1_714_564_800_123_456_000
    assert ev.gateway_receive_time.ToNanoseconds() == 1_714_564_800_200_000_000


def test_unknown_fix_value_is_refused() -> None:
    with pytest.raises(ValueError, match="exec_type"):
        b.order_event("execution_report", source=SRC, symbol="X", exec_type="Z")
    with pytest.raises(TypeError):
        b.order_event("accepted", source=SRC, symbol="X", price=1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "when",
    [
        datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
        datetime(2024, 5, 1, 12, 0, 0, 123456),  # naive = UTC
        "20240501-12:00:00.123456",
        1_714_564_800_123_456_000,
    ],
)
def test_times(when: b.TimeLike) -> None:
    assert b.time_ns(when) == 1_714_564_800_123_456_000


def test_market_data_builders() -> None:
    snap = b.book_snapshot(
        source=b.EventSource.ws("md"),
        symbol="XBT/USD",
        bids=[("65000.1", "1.5"), (Decimal("65000.0"), 2)],
        asks=[("65000.2", "0.1")],
        depth=10,
        checksum=123,
    )
    assert [(lv.price, lv.qty) for lv in snap.book_snapshot.bids] == [
        ("65000.1", "1.5"),
        ("65000.0", "2"),
    ]
    assert snap.book_snapshot.checksum == 123
    delta = b.book_delta(source=SRC, symbol="XBT/USD", asks=[("65000.2", "0")])
    assert delta.book_delta.asks[0].qty == "0" and not delta.book_delta.HasField("checksum")
    t = b.trade(source=SRC, symbol="XBT/USD", price="1", qty="2", aggressor_side="buy")
    assert t.trade.aggressor_side == common_pb2.SIDE_BUY
    tob = b.top_of_book(source=SRC, symbol="XBT/USD", bid_price="1", bid_qty="2")
    assert (tob.top_of_book.bid_price, tob.top_of_book.ask_price) == ("1", "")


def test_session_gate_transport_cancel_reject() -> None:
    s = b.session_event(
        "resend_request", source=SRC, direction="inbound", begin_seq_no=5, end_seq_no=0
    )
    assert s.session_status.type == session_pb2.SESSION_STATUS_TYPE_RESEND_REQUEST
    assert s.session_status.direction == session_pb2.DIRECTION_INBOUND
    g = b.gate_decision(
        rule="carry_vs_gravity",
        action="block",
        reasons=["buying against strong excess funding"],
        figures=[
            b.Figure("funding_excess_bps", Decimal("1095.0"), "bps", limit="1000"),
            b.Figure("oi_asymmetry", "inf", "ratio"),
        ],
        symbol="ARB/USD",
        account="A",
        cl_ord_id="OMS-7",
        side="1",
        order_qty="100",
    )
    gd = g.gate_decision
    assert gd.action == gate_pb2.GATE_ACTION_BLOCK
    assert [(f.name, f.value, f.unit, f.limit) for f in gd.figures] == [
        ("funding_excess_bps", "1095.0", "bps", "1000"),
        ("oi_asymmetry", "inf", "ratio", ""),
    ]
    assert g.source.kind == common_pb2.SOURCE_KIND_GATEWAY and g.source.session == "gate"
    mapping = b.gate_decision(rule="max_notional", action="warn", figures={"notional": "5000"})
    assert mapping.gate_decision.figures[0].value == "5000"
    # A spec carries figures as tuples: the same event, and the same checks on their values.
    as_tuples = b.from_spec(("gate_decision", {
        "rule": "carry_vs_gravity", "action": "block",
        "reasons": ["buying against strong excess funding"],
        "figures": [("funding_excess_bps", "1095.0", "bps", "1000"),
                    ("oi_asymmetry", "inf", "ratio", None)],
        "symbol": "ARB/USD", "account": "A", "cl_ord_id": "OMS-7", "side": "1",
        "order_qty": "100"}))
    assert as_tuples == g
    with pytest.raises(ValueError, match="oi_asymmetry"):
        b.gate_decision(rule="r", action="warn", figures=[("oi_asymmetry", "1e", "ratio", None)])
    ts = b.transport_switch(from_transport="fix", to_transport="rest", reason="fix_session_down")
    assert ts.transport_switch.to_transport == common_pb2.TRANSPORT_REST
    cr = b.cancel_reject(
        source=SRC, cl_ord_id="OMS-2", orig_cl_ord_id="OMS-1", ord_status="8", response_to="1"
    )
    assert cr.cancel_reject.response_to == orders_pb2.CXL_REJ_RESPONSE_TO_ORDER_CANCEL_REQUEST
    assert not cr.cancel_reject.HasField("cxl_rej_reason")
    assert cr.cancel_reject.side == common_pb2.SIDE_UNSPECIFIED
    assert b.cancel_reject(source=SRC, side="2").cancel_reject.side == common_pb2.SIDE_SELL


def test_signal_snapshot_from_nested_mapping() -> None:
    ev = b.signal_snapshot(
        symbol="ARB/USD",
        computed_at=datetime(2024, 5, 1, tzinfo=UTC),
        values={
            "reference_price": Decimal("0.111"),
            "carry": {
                "funding_ann_bps": Decimal("1095.0"),
                "carry_ann_bps": "1088.3",
                "vote": "SIGNAL_DIRECTION_SHORT",
            },
            "positioning": [{"cohort": "flow_estimate", "oi_asymmetry": "inf"}],
            "gravity": {"gravity": "-0.41", "supports": [{"price": "0.09"}]},
            "bias": "SIGNAL_DIRECTION_SHORT",
        },
    )
    s = ev.signal_snapshot
    assert s.carry.vote == signals_pb2.SIGNAL_DIRECTION_SHORT
    assert s.carry.funding_ann_bps == "1095.0"
    assert s.positioning[0].oi_asymmetry == "inf"
    assert s.gravity.supports[0].price == "0.09"
    assert s.computed_at.ToSeconds() == 1_714_521_600
    with pytest.raises(ValueError):
        b.signal_snapshot(symbol="X", computed_at=0, values={"no_such_field": "1"})
    with pytest.raises(TypeError):
        b.signal_snapshot(symbol="X", computed_at=0, values={"confidence": 0.5})
