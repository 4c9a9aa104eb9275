"""Audit regressions: unusable market-data values (NaN, inf, zero/negative levels, missing or
duplicated records) must neither poison a figure silently nor fail a whole snapshot; what
leaves the numpy math toward the gate is finite, or NaN the gate reports as "not a number"."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.signals import (
    Book,
    FundingRecord,
    LiquidationMap,
    OIHistory,
    PositioningRecord,
    SignalConfig,
    SignalConfigError,
    SignalInputError,
    SignalInputs,
    at_risk_share,
    compute_snapshot,
    flow_estimate,
    gravity,
    long_share,
    oi_asymmetry,
    select_funding,
)
from gateway.signals.gravity import depth_between
from gateway.signals.liquidation_map import LogGrid
from tests.signals.floats import floats_in

NOW = 1_700_000_000.0
P = 100.0


def _book(n: int = 100, step: float = 0.001, qty: float = 10.0) -> Book:
    k = np.arange(1, n + 1)
    return Book.of(
        P * np.exp(-k * step), np.full(n, qty), P * np.exp(k * step), np.full(n, qty), NOW - 2.0
    )


def _history(n: int = 48, seed: int = 1) -> OIHistory:
    rng = np.random.default_rng(seed)
    ts = NOW - 60.0 - (n - 1 - np.arange(n)) * 300.0
    px = P * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    oi = 5e7 + np.cumsum(rng.normal(2e5, 5e5, n))
    return OIHistory.of(ts, oi, px, px * 1.001, px * 0.999, px, rng.uniform(0, 1, n))


def _inputs(**kw: object) -> SignalInputs:
    base: dict[str, object] = dict(
        symbol="X", now=NOW, mark=P, index=P, mark_as_of=NOW - 1.0, book=_book(),
        oi_history=_history(),
    )
    base.update(kw)
    return SignalInputs(**base)  # type: ignore[arg-type]


bad_value = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -5.0])


@settings(max_examples=60, deadline=None)
@given(
    side=st.sampled_from(["bid", "ask"]),
    field=st.sampled_from(["px", "qty"]),
    where=st.lists(st.integers(0, 99), min_size=1, max_size=5, unique=True),
    value=bad_value,
)
def test_unusable_book_levels_are_ignored_not_propagated(
    side: str, field: str, where: list[int], value: float
) -> None:
    """A level with a NaN/inf/non-positive price or size is no liquidity: gravity and
    liq_to_depth equal those of the book without it. (A NaN size made the pulls NaN, gravity
    read 0.0 and liq_to_depth NaN.)"""
    good = _book()
    cols = {"bid_px": good.bid_px.copy(), "bid_qty": good.bid_qty.copy(),
            "ask_px": good.ask_px.copy(), "ask_qty": good.ask_qty.copy()}
    cols[f"{side}_{field}"][where] = value
    bad = Book.of(cols["bid_px"], cols["bid_qty"], cols["ask_px"], cols["ask_qty"], good.as_of)
    keep = np.ones(100, dtype=bool)
    keep[where] = False
    other = "ask" if side == "bid" else "bid"
    pruned_cols = {f"{side}_px": good.bid_px[keep] if side == "bid" else good.ask_px[keep],
                   f"{side}_qty": good.bid_qty[keep] if side == "bid" else good.ask_qty[keep],
                   f"{other}_px": good.ask_px if side == "bid" else good.bid_px,
                   f"{other}_qty": good.ask_qty if side == "bid" else good.bid_qty}
    pruned = Book.of(pruned_cols["bid_px"], pruned_cols["bid_qty"], pruned_cols["ask_px"],
                     pruned_cols["ask_qty"], good.as_of)
    s_bad = compute_snapshot(_inputs(book=bad))
    s_ref = compute_snapshot(_inputs(book=pruned))
    assert all(math.isfinite(x) for x in floats_in(s_bad))
    for f in ("gravity", "pull_up", "pull_down", "liq_to_depth_long", "liq_to_depth_short"):
        assert getattr(s_bad, f) == getattr(s_ref, f), f
    for a, b in zip(s_bad.cascade_long + s_bad.cascade_short,
                    s_ref.cascade_long + s_ref.cascade_short, strict=True):
        assert a == b


def test_depth_between_ignores_overflowing_notional() -> None:
    """px × qty overflowing to inf is not depth (inf - inf made every range NaN)."""
    px = np.array([99.0, 98.0, 97.0])
    qty = np.array([1.0, 1e307, 2.0])
    d = depth_between(np.array([96.0, 98.5]), P, px, qty)
    assert np.all(np.isfinite(d))
    assert d[1] == 99.0


def test_gravity_with_an_infinite_pull_is_nan_not_clamped() -> None:
    """inf/inf is NaN and ``min(1, max(-1, nan))`` read -1.0: full downward gravity from a
    broken cluster size."""
    e = np.empty(0)
    g = gravity(np.array([95.0, 105.0]), np.array([math.inf, 0.0]), np.array([0.0, 1.0]), P,
                0.05, bid_px=e, bid_qty=e, ask_px=e, ask_qty=e, beta=0.0)
    assert math.isnan(g.gravity)


@settings(max_examples=40, deadline=None)
@given(
    where=st.lists(st.integers(0, 47), min_size=1, max_size=4, unique=True),
    value=st.sampled_from([math.nan, math.inf, -math.inf]),
)
def test_unknown_oi_samples_carry_the_last_known_level(where: list[int], value: float) -> None:
    """A NaN/inf OI sample is unknown, i.e. no change: the snapshot equals that of the
    history with the previous level repeated (the first known level before any). A NaN last OI
    made total and side OI NaN and at_risk_share 1.0 on both sides."""
    h = _history()
    bad_oi = h.oi_usd.copy()
    bad_oi[where] = value
    ref_oi = bad_oi.copy()
    known = np.flatnonzero(np.isfinite(ref_oi))
    for i in range(ref_oi.size):
        if not math.isfinite(ref_oi[i]):
            before = known[known < i]
            ref_oi[i] = ref_oi[before[-1]] if before.size else ref_oi[known[0]]
    cols = (h.vwap, h.high, h.low, h.close, h.taker_buy_share)
    s_bad = compute_snapshot(_inputs(oi_history=OIHistory.of(h.ts, bad_oi, *cols)))
    s_ref = compute_snapshot(_inputs(oi_history=OIHistory.of(h.ts, ref_oi, *cols)))
    assert all(math.isfinite(x) for x in floats_in(s_bad))
    assert s_bad.open_interest_usd == s_ref.open_interest_usd
    assert s_bad.at_risk_share_long == s_ref.at_risk_share_long < 1.0
    assert s_bad.at_risk_share_short == s_ref.at_risk_share_short < 1.0
    assert s_bad.map_net_usd_long == s_ref.map_net_usd_long


def test_history_without_any_known_oi_reads_zero_oi() -> None:
    h = _history(4)
    nan = np.full(4, math.nan)
    bad = OIHistory.of(h.ts, nan, h.vwap, h.high, h.low, h.close, h.taker_buy_share)
    assert np.all(bad.oi_usd == 0.0)
    s = compute_snapshot(_inputs(oi_history=bad))
    assert all(math.isfinite(x) for x in floats_in(s))
    assert s.at_risk_share_long == 0.0 and s.open_interest_usd == 0.0


@settings(max_examples=10, deadline=None)
@given(value=st.sampled_from([math.nan, math.inf, -math.inf]))
def test_unknown_open_interest_is_absent(value: float) -> None:
    """``open_interest_usd`` NaN/inf counts as not given (the record's sides are the OI); NaN
    made at_risk_share 1.0."""
    rec = PositioningRecord.of("c", "m", 6e6, 4e6, NOW - 5.0)
    s_bad = compute_snapshot(_inputs(oi_history=None, positioning=rec, open_interest_usd=value))
    s_ref = compute_snapshot(_inputs(oi_history=None, positioning=rec))
    assert s_bad.open_interest_usd == s_ref.open_interest_usd == 1e7
    assert s_bad.at_risk_share_long == s_ref.at_risk_share_long


def test_at_risk_share_of_an_unknown_side_oi_is_nan_not_one() -> None:
    """``min(1.0, x / nan)`` is 1.0 in Python: an unknown OI must not read as "all at risk"."""
    lv, usd = np.array([99.0]), np.array([1e6])
    assert math.isnan(at_risk_share(lv, usd, P, math.nan, 0.1, "long"))
    fe = flow_estimate([1e6, math.nan, 2e6], [0.5, 0.5, 1.0], as_of=NOW)
    assert np.all(np.isfinite(fe.long_usd)) and fe.record.long_usd == 1.5e6


@settings(max_examples=30, deadline=None)
@given(bad=st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.0]),
       which=st.sampled_from(["low", "high", "both"]))
def test_consume_ignores_an_unknown_bound(bad: float, which: str) -> None:
    """An unknown bar low/high consumes nothing on its side: ``searchsorted(centres, nan)``
    is the end of the grid, so a NaN high wiped every short bin."""
    m = LiquidationMap(P)
    m.add("long", [1e6, 1e6], [100.0, 110.0])
    m.add("short", [1e6, 1e6], [100.0, 90.0])
    before = (m.total_usd("long"), m.total_usd("short"))
    lo = bad if which in ("low", "both") else 99.0
    hi = bad if which in ("high", "both") else 101.0
    m.consume(lo, hi)
    ref = LiquidationMap(P)
    ref.add("long", [1e6, 1e6], [100.0, 110.0])
    ref.add("short", [1e6, 1e6], [100.0, 90.0])
    ref.consume(99.0 if which == "high" else 1e-300, 101.0 if which == "low" else 1e300)
    if which != "high":
        assert m.total_usd("long") == before[0]
    else:
        assert m.total_usd("long") == ref.total_usd("long")
    if which != "low":
        assert m.total_usd("short") == before[1]
    else:
        assert m.total_usd("short") == ref.total_usd("short")


def test_interval_without_any_price_drops_its_new_oi_visibly() -> None:
    """No VWAP, high, low or close: new OI has no entry, so it is counted in ``dropped_usd``
    instead of failing the whole snapshot ("entry prices must be positive and finite")."""
    h = _history()
    vwap, high, low, close = (c.copy() for c in (h.vwap, h.high, h.low, h.close))
    oi = h.oi_usd.copy()
    oi[-3] = oi[-4] + 1e6  # rising OI in the unpriced interval
    for c in (vwap, high, low, close):
        c[-3] = math.nan
    bad = OIHistory.of(h.ts, oi, vwap, high, low, close, h.taker_buy_share)
    entries = bad.entry_prices()
    assert math.isnan(entries[-3]) and np.all(np.isfinite(np.delete(entries, -3)))
    s = compute_snapshot(_inputs(oi_history=bad))
    assert all(math.isfinite(x) for x in floats_in(s))
    m = LiquidationMap(P)
    m.apply_interval(NOW, 1e6, 0.0, math.nan, math.nan, math.nan)
    assert m.total_usd("long") == 0.0 and m.dropped_usd[0] == 1e6


def test_entry_falls_back_to_close_when_high_or_low_is_unknown() -> None:
    h = OIHistory.of([NOW], [1e6], [math.nan], [math.nan], [99.0], [100.0], [0.5])
    assert h.entry_prices()[0] == 100.0
    h = OIHistory.of([NOW], [1e6], [math.nan], [101.0], [-1.0], [100.0], [0.5])
    assert h.entry_prices()[0] == 100.0


@settings(max_examples=10, deadline=None)
@given(t=st.sampled_from([math.nan, math.inf, -math.inf]))
def test_a_mark_of_unknown_time_is_rejected_not_fresh(t: float) -> None:
    """``mark_as_of`` NaN read as age 0.0 (``None or 0.0``): a perfectly fresh mark to every
    stale-input check. The mark is the one input every figure needs, so the snapshot fails
    (the runner keeps the previous one, which ages out at the gate)."""
    with pytest.raises(SignalInputError, match="mark_as_of"):
        compute_snapshot(_inputs(mark_as_of=t))
    with pytest.raises(SignalInputError, match="now"):
        compute_snapshot(_inputs(now=t))


H = 3600.0
R = 0.0000125


def _hourly(n: int = 5) -> list[FundingRecord]:
    return [FundingRecord(NOW - k * H, R) for k in range(n, 0, -1)]


@settings(max_examples=30, deadline=None)
@given(
    bad=st.sampled_from(
        [
            FundingRecord(NOW, math.nan),
            FundingRecord(NOW, math.inf),
            FundingRecord(NOW, -math.inf),
            FundingRecord(NOW, 0.00125, absolute=True, reference_price=None),
            FundingRecord(NOW, 0.00125, absolute=True, reference_price=math.nan),
            FundingRecord(NOW, 0.00125, absolute=True, reference_price=0.0),
        ]
    ),
    source=st.sampled_from(["last", "24h_mean", "predicted"]),
)
def test_an_unusable_funding_print_is_skipped(bad: FundingRecord, source: str) -> None:
    """A print whose relative rate cannot be known is no print: the previous one is used, with
    its own interval and time (so the funding age says how old it is). A NaN rate made every
    carry figure NaN and the carry vote a silent "neutral"; an absolute rate without a usable
    mark failed the whole snapshot."""
    recs = (*_hourly(), bad)
    got = select_funding(recs, NOW, source)  # type: ignore[arg-type]
    ref = select_funding(tuple(_hourly()), NOW, source)  # type: ignore[arg-type]
    assert got is not None and ref is not None
    assert got.ann_bps == pytest.approx(1095.0) and got.interval_h == 1.0
    assert got.as_of == ref.as_of == NOW - H
    s = compute_snapshot(_inputs(funding=recs))
    assert s.funding_ann_bps == pytest.approx(1095.0) and s.age_funding_s == pytest.approx(H)
    assert s.vote("carry") is not None and s.vote("carry").direction == "short"  # type: ignore[union-attr]


def test_an_unusable_prediction_falls_back_and_nothing_usable_is_missing() -> None:
    recs = (*_hourly(), FundingRecord(NOW, math.nan, predicted=True))
    got = select_funding(recs, NOW, "predicted")
    assert got is not None and got.source == "last" and got.ann_bps == pytest.approx(1095.0)
    assert select_funding((FundingRecord(NOW, math.nan),), NOW) is None
    s = compute_snapshot(_inputs(funding=(FundingRecord(NOW, math.nan),)))
    assert s.age_funding_s is None and s.funding_ann_bps == 0.0


def test_a_repeated_funding_print_does_not_fail_the_snapshot() -> None:
    """The same settlement twice (history and feed overlapping) is one print, the later given
    wins; it raised "timestamps must be strictly increasing" and failed the snapshot."""
    recs = (*_hourly(), FundingRecord(NOW - H, 2 * R))
    got = select_funding(recs, NOW, "last")
    assert got is not None and got.interval_h == 1.0 and got.ann_bps == pytest.approx(2190.0)
    s = compute_snapshot(_inputs(funding=recs))
    assert s.funding_ann_bps == pytest.approx(2190.0)


@settings(max_examples=20, deadline=None)
@given(v=st.sampled_from([math.inf, math.nan, -1.0]), long_side=st.booleans())
def test_positioning_record_sides_must_be_finite(v: float, long_side: bool) -> None:
    """An inf side (a pushed "1e400" is a finite Decimal but an inf float) passed ``>= 0``:
    long_share read NaN, the asymmetry "finite" inf, and at_risk_share 1.0."""
    lo, sh = (v, 1e6) if long_side else (1e6, v)
    with pytest.raises(SignalInputError):
        PositioningRecord.of("c", "m", lo, sh, NOW)
    with pytest.raises(SignalInputError):
        PositioningRecord("c", "m", lo, sh, NOW)


def test_asymmetry_and_share_survive_extreme_finite_sides() -> None:
    """``1e300 / 1e-300`` overflows: that is "inf", not a "finite" inf; ``1e308 + 1e308`` is
    inf, so the share read 0.0 instead of 0.5."""
    assert oi_asymmetry(1e300, 1e-300) == (None, "inf")
    assert long_share(1e308, 1e308) == 0.5
    assert long_share(1e308, 0.0) == 1.0


@settings(max_examples=60, deadline=None)
@given(
    center=st.floats(min_value=1e-6, max_value=1e6),
    k=st.integers(0, 1999),
    nudge=st.sampled_from([-1, 0, 1]),
)
def test_grid_bins_follow_their_edges(center: float, k: int, nudge: int) -> None:
    """A price on (or one ulp around) an edge lands in the bin whose ``[edge_k, edge_k+1)``
    holds it: the log/step arithmetic put about half the exact edges one bin low."""
    g = LogGrid(center, 2000, 0.5)
    p = float(g.edges[k])
    for _ in range(abs(nudge)):
        p = math.nextafter(p, math.inf if nudge > 0 else -math.inf)
    idx, ok = g.index_of(np.array([p]))
    inside = g.edges[0] <= p < g.edges[-1]
    assert bool(ok[0]) == inside
    if inside:
        i = int(idx[0])
        assert g.edges[i] <= p < g.edges[i + 1]


@settings(max_examples=10, deadline=None)
@given(im=st.sampled_from([math.nan, math.inf, 0.0, -1.0]))
def test_an_unusable_impact_mid_falls_back_to_the_mark(im: float) -> None:
    """§1: P_ref is the impact mid *if available*, else the mark; an impact mid that is not a
    price is not available. It failed the whole snapshot."""
    s = compute_snapshot(_inputs(impact_mid=im, index=P * 0.999))
    assert s.price_ref_source == "mark" and s.price_ref == P
    assert s.basis_bps == pytest.approx((P - P * 0.999) / (P * 0.999) * 1e4)


@settings(max_examples=10, deadline=None)
@given(sig=st.sampled_from([1e300, 1e3, 11.0]))
def test_an_absurd_sigma_is_not_used(sig: float) -> None:
    """A finite but absurd σ_d input (above 1000 %/day) is not a volatility: it made the risk
    band e^(2s) overflow (a bare OverflowError failed the snapshot). It is ignored and
    ``sigma_source`` says what was used instead."""
    s = compute_snapshot(_inputs(sigma_d=sig))
    assert s.sigma_source == "default" and s.sigma_d == 0.04
    assert all(math.isfinite(x) for x in floats_in(s))
    assert compute_snapshot(_inputs(sigma_d=10.0)).sigma_source == "input"
    with pytest.raises(SignalConfigError, match="default_sigma_d"):
        SignalConfig(default_sigma_d=50.0)


junk = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.0, 1e-300, 1e300])


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**20), n_junk=st.integers(0, 12), with_map=st.booleans(),
       data=st.data())
def test_snapshot_is_finite_whatever_junk_the_feeds_send(
    seed: int, n_junk: int, with_map: bool, data: st.DataObject
) -> None:
    """NaN, ±inf, 0, negative and extreme values sprinkled over the book, the OI history, the
    closes, the funding prints, the total OI, σ_d and the daily volume: the snapshot is either
    a SignalInputError or finite in every float (nothing non-finite reaches the gate)."""
    rng = np.random.default_rng(seed)
    n = 30
    k = np.arange(1, 51)
    book = {"bid_px": P * np.exp(-k * 0.002), "bid_qty": rng.uniform(0, 50, 50),
            "ask_px": P * np.exp(k * 0.002), "ask_qty": rng.uniform(0, 50, 50)}
    px = P * np.exp(np.cumsum(rng.normal(0, 0.003, n)))
    hist = {"oi": 5e7 + np.cumsum(rng.normal(0, 5e5, n)), "vwap": px.copy(), "high": px * 1.002,
            "low": px * 0.998, "close": px.copy(), "taker": rng.uniform(0, 1, n)}
    closes = P * np.exp(np.cumsum(rng.normal(0, 0.02, 40)))
    funding = [FundingRecord(NOW - j * H, float(rng.normal(1e-5, 1e-5))) for j in range(6)]
    for _ in range(n_junk):
        where = data.draw(st.sampled_from(["book", "hist", "closes", "funding"]))
        v = data.draw(junk)
        if where == "book":
            book[data.draw(st.sampled_from(sorted(book)))][data.draw(st.integers(0, 49))] = v
        elif where == "hist":
            hist[data.draw(st.sampled_from(sorted(hist)))][data.draw(st.integers(0, n - 1))] = v
        elif where == "closes":
            closes[data.draw(st.integers(0, 39))] = v
        else:
            i = data.draw(st.integers(0, 5))
            funding[i] = FundingRecord(funding[i].ts, v)
    extra: dict[str, object] = {}
    if with_map:
        m = LiquidationMap(P, as_of=NOW - 60.0)
        m.add("long", rng.uniform(0, 1e6, 20), rng.uniform(95, 115, 20))
        m.add("short", rng.uniform(0, 1e6, 20), rng.uniform(85, 105, 20))
        extra = {"liq_map": m, "oi_history": None,
                 "positioning": PositioningRecord.of("c", "m", float(rng.uniform(0, 1e7)),
                                                     float(rng.uniform(0, 1e7)), NOW - 5.0)}
    else:
        ts = NOW - 300.0 * (n - np.arange(n))
        extra = {"oi_history": OIHistory.of(ts, hist["oi"], hist["vwap"], hist["high"],
                                            hist["low"], hist["close"], hist["taker"])}
    inp = _inputs(
        book=Book.of(book["bid_px"], book["bid_qty"], book["ask_px"], book["ask_qty"], NOW - 1),
        funding=tuple(funding),
        closes=closes,
        closes_as_of=NOW,
        open_interest_usd=data.draw(st.one_of(junk, st.just(1e7))),
        sigma_d=data.draw(st.one_of(junk, st.just(0.03), st.none())),
        daily_volume_base=data.draw(st.one_of(junk, st.just(1e5))),
        index=P * 1.0003,
        **extra,
    )
    try:
        s = compute_snapshot(inp)
    except SignalInputError:
        return
    bad = [x for x in floats_in(s) if not math.isfinite(x)]
    assert not bad
    assert -1.0 <= s.gravity <= 1.0
    assert 0.0 <= s.at_risk_share_long <= 1.0 and 0.0 <= s.at_risk_share_short <= 1.0


@settings(max_examples=20, deadline=None)
@given(v=st.sampled_from([math.inf, -math.inf]), i=st.integers(1, 4))
def test_an_infinite_taker_share_is_unknown_like_nan(v: float, i: int) -> None:
    """§2's estimator: a missing taker share gives no tilt; ±inf was clipped to 1/0, i.e.
    read as "every taker bought/sold" and tilted the split."""
    oi = [1e6, 1.2e6, 1.5e6, 1.4e6, 1.8e6]
    f = [0.5, 0.6, 0.4, 0.5, 0.7]
    junk_f, nan_f = list(f), list(f)
    junk_f[i], nan_f[i] = v, math.nan
    a = flow_estimate(oi, junk_f, as_of=NOW)
    b = flow_estimate(oi, nan_f, as_of=NOW)
    assert np.array_equal(a.long_usd, b.long_usd)
