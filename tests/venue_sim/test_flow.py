"""Synthetic flow: deterministic for a seed, keeps books two-sided and moving, and trades with
the gateway's resting orders."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest

from gateway.venue_sim.engine import (
    Accepted,
    BookChanged,
    Event,
    Filled,
    MatchingEngine,
    Side,
    TradePrinted,
)
from gateway.venue_sim.flow import FLOW_MAKER, SyntheticFlow
from gateway.venue_sim.instruments import SPOT_SYMBOLS
from tests.venue_sim.test_engine import renumbered

D = Decimal
BTC = "BTC/USD"


def clock() -> Callable[[], int]:
    ticks: Iterator[int] = iter(range(1_000_000_000, 10**18, 1_000))
    return lambda: next(ticks)


def make(seed: int = 5, symbols: tuple[str, ...] | None = None) -> tuple[MatchingEngine,
                                                                         SyntheticFlow]:
    eng = MatchingEngine(time_source=clock(), seed=seed)
    return eng, SyntheticFlow(eng, seed=seed, symbols=symbols, rate_hz=50)


def test_seed_books_gives_twenty_levels_per_side_everywhere() -> None:
    eng, flow = make()
    flow.seed_books()
    assert flow.symbols == eng.symbols  # default: every instrument, perps included
    for sym in eng.symbols:
        bids, asks = eng.levels(sym)
        assert len(bids) == 20 and len(asks) == 20, sym
        assert bids[0][0] < asks[0][0]
        assert bids[0][0] < flow.mid(sym) < asks[0][0]
    eng.check_invariants()


def test_same_seed_same_events_different_seed_different() -> None:
    def run(seed: int) -> list[Event]:
        _, flow = make(seed, SPOT_SYMBOLS)
        events = flow.seed_books()
        for _ in range(150):
            events += flow.step()
        return events

    first, again, other = run(9), run(9), run(10)
    assert renumbered(first) == renumbered(again)
    assert renumbered(first) != renumbered(other)


def test_books_stay_two_sided_move_and_trade() -> None:
    eng, flow = make(symbols=SPOT_SYMBOLS)
    flow.seed_books()
    start_mids = {s: flow.mid(s) for s in SPOT_SYMBOLS}
    trades = 0
    for n in range(400):
        events = flow.step()
        trades += sum(isinstance(e, TradePrinted) for e in events)
        if n % 25 == 0:
            eng.check_invariants()
            for sym in SPOT_SYMBOLS:
                bids, asks = eng.levels(sym)
                assert len(bids) >= 5 and len(asks) >= 5, (n, sym)
    assert trades > 50
    assert any(flow.mid(s) != start_mids[s] for s in SPOT_SYMBOLS)
    for sym in SPOT_SYMBOLS:
        assert eng.last_trades(sym, 5)
        # The book stays bounded however long the flow runs.
        assert len(flow.engine.open_orders(FLOW_MAKER, sym)) <= 120


def test_all_flow_prices_and_sizes_are_on_the_instrument_grid() -> None:
    eng, flow = make()
    events = flow.seed_books()
    for _ in range(100):
        events += flow.step()
    for ev in events:
        if isinstance(ev, Accepted):
            inst = eng.instruments[ev.order.symbol]
            assert type(ev.order.qty) is Decimal and ev.order.qty >= inst.min_qty
            assert ev.order.qty % inst.lot_size == 0
            if ev.order.price is not None:
                assert ev.order.price % inst.price_tick == 0


def test_gateway_resting_order_gets_filled_by_the_flow() -> None:
    eng, flow = make(symbols=(BTC,))
    flow.seed_books()
    bid, ask = eng.top_of_book(BTC)
    assert bid is not None and ask is not None
    eng.submit("GW", "g1", BTC, Side.BUY, D("0.01"), bid)
    eng.submit("GW", "g2", BTC, Side.SELL, D("0.01"), ask)
    gw_fills: list[Filled] = []
    for _ in range(500):
        gw_fills += [e for e in flow.step() if isinstance(e, Filled) and e.order.owner == "GW"]
        if {f.order.cl_ord_id for f in gw_fills} == {"g1", "g2"}:
            break
    assert {f.order.cl_ord_id for f in gw_fills} == {"g1", "g2"}
    assert all(f.is_maker for f in gw_fills)
    # The flow's own submissions are not counted; the gateway's are.
    assert set(eng.submission_counts) == {("GW", "g1"), ("GW", "g2")}


def test_event_stream_reconstructs_books_under_flow() -> None:
    eng, flow = make()
    mirror: dict[tuple[str, Side], dict[Decimal, Decimal]] = {}

    def apply(events: tuple[Event, ...]) -> None:
        for e in events:
            if isinstance(e, BookChanged):
                lvl = mirror.setdefault((e.symbol, e.side), {})
                if e.new_level_qty == 0:
                    del lvl[e.price]
                else:
                    lvl[e.price] = e.new_level_qty

    # The engine logs and swallows a listener's exception (one broken face must not stop the
    # venue): a KeyError in `apply` must reach the test through this list instead.
    errors: list[BaseException] = []

    def listener(events: tuple[Event, ...]) -> None:
        try:
            apply(events)
        except BaseException as exc:
            errors.append(exc)

    eng.add_listener(listener)
    flow.seed_books()
    for _ in range(200):
        flow.step()
    assert not errors, errors
    for sym in eng.symbols:
        bids, asks = eng.levels(sym)
        assert sorted(mirror.get((sym, Side.BUY), {}).items(), reverse=True) == bids
        assert sorted(mirror.get((sym, Side.SELL), {}).items()) == asks


def test_thread_runs_and_stops_cleanly() -> None:
    eng = MatchingEngine(seed=1)
    flow = SyntheticFlow(eng, seed=1, symbols=(BTC,), rate_hz=200)
    flow.seed_books()
    seq0 = eng.last_seq
    flow.start()
    flow.start()  # idempotent
    deadline = time.monotonic() + 5
    while eng.last_seq == seq0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert flow.running
    # A direct step while the thread runs is safe (shared lock) and the gateway can trade.
    flow.step()
    eng.submit("GW", "g1", BTC, Side.BUY, D("0.01"), D("40000.0"))
    flow.stop()
    assert not flow.running
    seq = eng.last_seq
    time.sleep(0.05)
    assert eng.last_seq == seq  # nothing lands after stop()
    assert seq > seq0
    eng.check_invariants()


def test_start_refuses_non_positive_rate() -> None:
    eng = MatchingEngine()
    with pytest.raises(ValueError):
        SyntheticFlow(eng, seed=1, symbols=(BTC,), rate_hz=0).start()
