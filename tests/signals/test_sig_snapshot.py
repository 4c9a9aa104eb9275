"""compute_snapshot: composition, immutability, ages and the seed's ARB shape."""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal

import numpy as np
import pytest

from gateway.signals import (
    Book,
    FundingRecord,
    LiquidationMap,
    OIHistory,
    PositioningRecord,
    SignalConfig,
    SignalInputs,
    SignalSnapshot,
    Tier,
    compute_snapshot,
)
from tests.signals.floats import floats_in

NOW = 1_700_000_000.0
H = 3600.0


def _book(p: float, n: int = 200, step: float = 0.001, qty: float = 10.0) -> Book:
    k = np.arange(1, n + 1)
    return Book.of(
        p * np.exp(-k * step), np.full(n, qty), p * np.exp(k * step), np.full(n, qty), NOW - 2.0
    )


def _history(n: int = 48, p0: float = 100.0, seed: int = 1) -> OIHistory:
    rng = np.random.default_rng(seed)
    ts = NOW - 60.0 - (n - 1 - np.arange(n)) * 300.0
    px = p0 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    oi = 5e7 + np.cumsum(rng.normal(2e5, 5e5, n))
    return OIHistory.of(ts, oi, px, px * 1.001, px * 0.999, px, rng.uniform(0, 1, n))


def test_snapshot_composes_t1_and_t7() -> None:
    """T1 carry and T7 positioning flow through unchanged: 1088.3 bps, votes short; "9.0x by
    top_accounts"; without an OI history the side OI is long_share × total OI."""
    mark = 100.0
    fr = tuple(FundingRecord(NOW - k * H, 0.0000125) for k in range(5))
    inp = SignalInputs(
        "PF_ARBUSD",
        NOW,
        mark,
        mark / (1 - 6.7e-4),
        NOW - 1.0,
        funding=fr,
        positioning=PositioningRecord.of("top_accounts", "venue_push", 78.53e6, 8.71e6, NOW - 30),
        open_interest_usd=Decimal("100000000"),
    )
    s = compute_snapshot(inp)
    assert s.basis_bps == pytest.approx(-6.7, abs=1e-9)
    assert s.funding_interval_h == 1.0 and s.funding_source == "last"
    assert s.funding_ann_bps == pytest.approx(1095.0)
    assert s.carry_ann_bps == pytest.approx(1088.3, abs=1e-9)
    assert s.vote("carry") is not None and s.vote("carry").direction == "short"  # type: ignore[union-attr]
    assert s.oi_asymmetry == pytest.approx(9.016, abs=5e-4)
    assert s.oi_asymmetry_label == "9.0x by top_accounts"
    assert s.long_share == pytest.approx(0.9002, abs=5e-5)
    assert s.vote("positioning").direction == "short"  # type: ignore[union-attr]
    assert s.side_oi_source == "top_accounts"
    assert s.side_oi_usd_long == pytest.approx(1e8 * 78.53 / 87.24)
    assert s.age_mark_s == 1.0 and s.age_positioning_s == 30.0 and s.age_funding_s == 0.0
    assert s.age_book_s is None and s.age_oi_s is None and s.age_map_s is None
    assert s.max_age_s == 30.0
    assert s.sigma_source == "default"


def test_snapshot_is_frozen_slotted_plain_data() -> None:
    s = compute_snapshot(SignalInputs("X", NOW, 100.0, 100.0, NOW))
    assert not hasattr(s, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.gravity = 1.0  # type: ignore[misc]
    plain = (float, int, str, bool, type(None), tuple)
    for f in dataclasses.fields(SignalSnapshot):
        assert isinstance(getattr(s, f.name), plain), f.name
    assert s.gravity == 0.0 and s.bias == "neutral" and s.oi_asymmetry_status == "undefined"


def test_snapshot_from_history_and_from_map_agree_and_map_is_not_mutated() -> None:
    """Replaying the OI history inside compute_snapshot gives the same figures as passing the
    same map built outside; the caller's map is only read."""
    hist = _history()
    p = float(hist.close[-1])
    base = SignalInputs(
        "PF_XBTUSD",
        NOW,
        p,
        p,
        NOW - 1,
        book=_book(p),
        oi_history=hist,
        closes=100 * np.exp(np.cumsum(np.full(40, 0.01) * np.tile([1, -1], 20))),
        closes_as_of=NOW - 86400,
    )
    s1 = compute_snapshot(base)
    assert s1.side_oi_source == "flow_estimate" and s1.positioning_method == "flow_estimate"
    assert s1.age_oi_s == pytest.approx(60.0) and s1.age_map_s == pytest.approx(60.0)
    assert s1.age_closes_s == 86400 and s1.sigma_source == "closes"
    from gateway.signals.positioning import flow_estimate
    from gateway.signals.snapshot import build_map

    flow = flow_estimate(hist.oi_usd, hist.taker_buy_share, as_of=float(hist.ts[-1]))
    m = build_map(base, flow, p)
    before = (m.usd("long").copy(), m.usd("short").copy(), m.as_of)
    s2 = compute_snapshot(dataclasses.replace(base, liq_map=m))
    assert np.array_equal(m.usd("long"), before[0]) and np.array_equal(m.usd("short"), before[1])
    assert m.as_of == before[2]
    assert s2.gravity == pytest.approx(s1.gravity)
    assert s2.map_gross_usd_long == pytest.approx(s1.map_gross_usd_long)
    assert s2.cascade_long == s1.cascade_long
    assert len(s1.cascade_long) == 3 and [c.haircut for c in s1.cascade_long] == [0.0, 0.5, 0.9]
    assert s1.cascade("long", 0.5) is s1.cascade_long[1]
    assert all(math.isfinite(f) for f in floats_in(s1))


def test_decimal_inputs_accepted() -> None:
    book = Book.of([Decimal("99.5")], [Decimal("3")], [Decimal("100.5")], [Decimal("2")], NOW)
    s = compute_snapshot(
        SignalInputs(
            "X", NOW, Decimal("100"), Decimal("99.9"), NOW, book=book, impact_mid=Decimal("100.02")
        )
    )
    assert s.price_ref_source == "impact_mid"
    assert s.basis_bps == pytest.approx((100.02 - 99.9) / 99.9 * 1e4)


def test_seed_arb_shape_downward_gravity_and_support_at_009() -> None:
    """The seed's ARB readout: price 0.111, dense long liquidations near 0.09 -> downward
    gravity and key support 0.09. 5x longs (m = 0.1) entered 0.1005-0.102 liquidate at
    0.8889 × entry = 0.0893-0.0907; a few late longs sit just under the price; shorts are light."""
    rng = np.random.default_rng(0)
    p = 0.111
    m = LiquidationMap(p, (Tier(5, 1.0),), as_of=NOW - H)
    m.add("long", np.full(50, 8e6 / 50), rng.uniform(0.1005, 0.102, 50))
    m.add("long", np.full(50, 1e6 / 50), rng.uniform(0.113, 0.125, 50))
    m.add("short", np.full(20, 0.5e6 / 20), rng.uniform(0.105, 0.112, 20))
    inp = SignalInputs(
        "PF_ARBUSD",
        NOW,
        p,
        p,
        NOW,
        book=_book(p, 400, 0.001, 2e5),
        positioning=PositioningRecord("taker_flow", "flow_estimate", 18e6, 2e6, NOW),
        open_interest_usd=20e6,
        liq_map=m,
        sigma_d=0.06,
        config=SignalConfig(tiers=(Tier(5, 1.0),)),
    )
    s = compute_snapshot(inp)
    assert s.gravity < -0.5 and s.vote("gravity").direction == "short"  # type: ignore[union-attr]
    assert s.key_levels_long[0].price == pytest.approx(0.09, rel=0.01)
    assert s.key_levels_long[0].notional_usd > 5e6
    assert s.oi_asymmetry_label == "9.0x by taker_flow"


def test_an_input_time_that_is_not_a_number_is_missing_not_fresh() -> None:
    """max(0.0, nan) is 0.0: a NaN time would make the input read as perfectly fresh and a
    rule judge on it; it is missing, and the stale policy decides."""
    s = compute_snapshot(SignalInputs("X", NOW, 100.0, 100.0, NOW,
                                      funding=(FundingRecord(math.nan, 0.0001),)))
    assert s.age_funding_s is None
    s = compute_snapshot(SignalInputs("X", NOW, 100.0, 100.0, NOW - 2.0))
    assert s.age_mark_s == 2.0
