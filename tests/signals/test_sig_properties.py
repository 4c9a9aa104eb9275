"""Hypothesis properties: bounded outputs, no NaN/inf on degenerate books and OI, no negative
map mass. Example counts are capped so the module runs in a few seconds."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.signals import (
    Book,
    LiquidationMap,
    OIHistory,
    PositioningRecord,
    Side,
    SignalInputs,
    compute_snapshot,
    gravity,
    simulate_cascade,
)
from tests.signals.floats import floats_in

NOW = 1_700_000_000.0
SIDES: tuple[Side, ...] = ("long", "short")
qty = st.floats(min_value=0.0, max_value=1e7, allow_nan=False)
rel_px = st.floats(min_value=0.5, max_value=1.5, allow_nan=False)


def _arr(xs: list[float]) -> np.ndarray:
    return np.asarray(xs, dtype=np.float64)


@settings(max_examples=150, deadline=None)
@given(
    levels=st.lists(rel_px, min_size=0, max_size=30),
    data=st.data(),
    s=st.floats(min_value=1e-4, max_value=1.0),
    beta=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    bids=st.lists(st.tuples(rel_px, qty), max_size=20),
    asks=st.lists(st.tuples(rel_px, qty), max_size=20),
)
def test_gravity_is_bounded(
    levels: list[float],
    data: st.DataObject,
    s: float,
    beta: float,
    bids: list[tuple[float, float]],
    asks: list[tuple[float, float]],
) -> None:
    n = len(levels)
    ql = data.draw(st.lists(qty, min_size=n, max_size=n))
    qs = data.draw(st.lists(qty, min_size=n, max_size=n))
    g = gravity(
        _arr(levels) * 100.0,
        _arr(ql),
        _arr(qs),
        100.0,
        s,
        bid_px=_arr([b[0] * 100 for b in bids]),
        bid_qty=_arr([b[1] for b in bids]),
        ask_px=_arr([a[0] * 100 for a in asks]),
        ask_qty=_arr([a[1] for a in asks]),
        beta=beta,
    )
    assert -1.0 <= g.gravity <= 1.0
    assert math.isfinite(g.pull_up) and math.isfinite(g.pull_down)
    if g.pull_up == 0.0 and g.pull_down == 0.0:
        assert g.gravity == 0.0


@settings(max_examples=150, deadline=None)
@given(
    side=st.sampled_from(["long", "short"]),
    book=st.lists(st.tuples(rel_px, qty), max_size=30),
    clusters=st.lists(st.tuples(rel_px, qty), max_size=30),
    oi=st.floats(min_value=0.0, max_value=1e8),
    haircut=st.sampled_from([0.0, 0.5, 0.9]),
    tau=st.floats(min_value=0.0, max_value=1.0),
    vol=st.floats(min_value=0.0, max_value=1e9),
)
@example(  # regression: float-dust wave into an empty book once indexed book[-1]
    side="long", book=[], clusters=[(1.0, 1e-160)], oi=0.0, haircut=0.0, tau=0.0, vol=0.0
)
def test_cascade_share_in_unit_interval_and_finite(
    side: str,
    book: list[tuple[float, float]],
    clusters: list[tuple[float, float]],
    oi: float,
    haircut: float,
    tau: float,
    vol: float,
) -> None:
    r = simulate_cascade(
        "long" if side == "long" else "short",
        _arr([b[0] * 100 for b in book]),
        _arr([b[1] for b in book]),
        _arr([c[0] * 100 for c in clusters]),
        _arr([c[1] for c in clusters]),
        price=100.0,
        side_oi=oi,
        sigma_d=0.05,
        daily_volume=vol,
        haircut=haircut,
        mark_transmission=tau,
    )
    assert 0.0 <= r.liquidated_share <= 1.0
    assert 0 <= r.steps <= 50
    assert r.end_price > 0.0 and math.isfinite(r.end_price)
    assert all(math.isfinite(x) for x in (r.liquidated_qty, r.amplification, *r.step_ratios))
    if side == "long":
        assert r.end_price <= r.shock_price
    else:
        assert r.end_price >= r.shock_price


op = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(["long", "short"]), qty, rel_px),
    st.tuples(st.just("remove"), st.sampled_from(["long", "short"]), qty, rel_px),
    st.tuples(st.just("consume"), st.just("long"), rel_px, rel_px),
    st.tuples(st.just("decay"), st.just("long"), st.floats(0, 1e6), rel_px),
    st.tuples(st.just("interval"), st.just("long"), st.floats(-1e7, 1e7), rel_px),
)


@settings(max_examples=100, deadline=None)
@given(ops=st.lists(op, max_size=25))
def test_map_mass_never_negative(ops: list[tuple[str, str, float, float]]) -> None:
    m = LiquidationMap(100.0)
    t = 0.0
    for kind, side, a, b in ops:
        sd: Side = "long" if side == "long" else "short"
        if kind == "add":
            m.add(sd, a, b * 100)
        elif kind == "remove":
            m.remove(sd, a)
        elif kind == "consume":
            m.consume(min(a, b) * 100, max(a, b) * 100)
        elif kind == "decay":
            t += a
            m.decay_to(t)
        else:
            m.apply_interval(t, a, -a / 2, b * 100, b * 99, b * 101)
        for s in SIDES:
            assert np.all(m.usd(s) >= 0.0) and np.all(m.base(s) >= 0.0)
    sm = m.scaled(1e6, 0.0, 100.0)
    assert np.all(sm.long_usd >= 0.0) and sm.net_usd_long <= 1e6 * (1 + 1e-12)
    assert math.isfinite(sm.gross_to_net_short)


book_kind = st.sampled_from(["empty", "bids_only", "asks_only", "both", "none"])


@settings(max_examples=60, deadline=None)
@given(
    kind=book_kind,
    long_usd=st.sampled_from([0.0, 1e6, 5e7]),
    short_usd=st.sampled_from([0.0, 1e6, 5e7]),
    with_history=st.booleans(),
    oi_scale=st.sampled_from([0.0, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_snapshot_finite_on_degenerate_inputs(
    kind: str, long_usd: float, short_usd: float, with_history: bool, oi_scale: float, seed: int
) -> None:
    """Empty and one-sided books, zero OI on one side or both: every float in the snapshot is
    finite (the asymmetry's inf/undefined cases are a status string, never a float)."""
    rng = np.random.default_rng(seed)
    p = 100.0
    k = np.arange(1, 51)
    bids = (p * np.exp(-k * 0.002), rng.uniform(0, 50, 50))
    asks = (p * np.exp(k * 0.002), rng.uniform(0, 50, 50))
    e = np.empty(0)
    book = {
        "empty": Book.of(e, e, e, e, NOW),
        "bids_only": Book.of(*bids, e, e, NOW),
        "asks_only": Book.of(e, e, *asks, NOW),
        "both": Book.of(*bids, *asks, NOW),
        "none": None,
    }[kind]
    m = LiquidationMap(p)
    m.add("long", rng.uniform(0, 1e6, 20), rng.uniform(95, 115, 20))
    m.add("short", rng.uniform(0, 1e6, 20), rng.uniform(85, 105, 20))
    hist = None
    if with_history:
        n = 12
        ts = NOW - 300.0 * (n - np.arange(n))
        oi = oi_scale * np.abs(rng.normal(1e7, 3e6, n))
        hist = OIHistory.of(
            ts,
            oi,
            np.full(n, np.nan),
            np.full(n, 101.0),
            np.full(n, 99.0),
            np.full(n, 100.0),
            rng.uniform(0, 1, n),
        )
    inp = SignalInputs(
        "X",
        NOW,
        p,
        p * 1.0005,
        NOW,
        book=book,
        positioning=PositioningRecord("c", "m", long_usd, short_usd, NOW),
        open_interest_usd=long_usd + short_usd,
        oi_history=hist,
        liq_map=None if with_history else m,
        closes=100 * np.exp(np.cumsum(rng.normal(0, 0.03, 30))),
    )
    s = compute_snapshot(inp)
    assert all(math.isfinite(x) for x in floats_in(s))
    assert -1.0 <= s.gravity <= 1.0 and 0.0 <= s.confidence <= 1.0
    assert 0.0 <= s.at_risk_share_long <= 1.0 and 0.0 <= s.at_risk_share_short <= 1.0
    assert all(0.0 <= c.liquidated_share <= 1.0 for c in s.cascade_long + s.cascade_short)
    if short_usd == 0.0 and long_usd > 0.0:
        assert s.oi_asymmetry_status == "inf" and s.oi_asymmetry is None
    if long_usd == 0.0 and short_usd == 0.0:
        assert s.oi_asymmetry_status == "undefined" and s.long_share is None
