"""§4 touch probability, gravity and key levels: T12 plus hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gateway.signals import (
    LiquidationMap,
    Tier,
    gravity,
    key_levels,
    touch_probabilities,
    touch_probability,
)
from gateway.signals.gravity import erfc

EMPTY = np.empty(0)


def test_erfc_matches_math_erfc() -> None:
    x = np.linspace(-6.0, 6.0, 4001)
    ref = np.array([math.erfc(v) for v in x])
    assert np.max(np.abs(erfc(x) - ref) / ref) < 2e-7


def test_t12_gravity_beta_zero() -> None:
    """T12: P = 100, long Q = 1 at 100·e^-0.10, short Q = 1 at 100·e^+0.05, s = 5 %, β = 0 ->
    K = 0.0455 and 0.3173 -> gravity = +0.749."""
    assert touch_probability(0.10, 0.05) == pytest.approx(0.0455, abs=5e-5)
    assert touch_probability(0.05, 0.05) == pytest.approx(0.3173, abs=5e-5)
    levels = np.array([100 * math.exp(-0.10), 100 * math.exp(0.05)])
    g = gravity(
        levels,
        np.array([1.0, 0.0]),
        np.array([0.0, 1.0]),
        100.0,
        0.05,
        bid_px=EMPTY,
        bid_qty=EMPTY,
        ask_px=EMPTY,
        ask_qty=EMPTY,
        beta=0.0,
    )
    assert g.pull_down == pytest.approx(0.0455, abs=5e-5)
    assert g.pull_up == pytest.approx(0.3173, abs=5e-5)
    assert g.gravity == pytest.approx(0.749, abs=5e-4)


def test_gravity_beta_one_hand_computed() -> None:
    """T12's clusters with books: bids 2 @ 95 (notional 190 between 90.48 and 100), asks 1 @ 102
    (notional 102 between 100 and 105.13), β = 1:
    pull_down = 0.0455003 / 190 = 2.39475e-4, pull_up = 0.3173105 / 102 = 3.110887e-3,
    gravity = (3.110887e-3 - 2.39475e-4) / 3.350362e-3 = 0.85705."""
    levels = np.array([100 * math.exp(-0.10), 100 * math.exp(0.05)])
    g = gravity(
        levels,
        np.array([1.0, 0.0]),
        np.array([0.0, 1.0]),
        100.0,
        0.05,
        bid_px=np.array([95.0, 80.0]),  # the bid at 80 lies beyond the level: not counted
        bid_qty=np.array([2.0, 50.0]),
        ask_px=np.array([102.0]),
        ask_qty=np.array([1.0]),
        beta=1.0,
    )
    assert g.pull_down == pytest.approx(2.39475e-4, rel=1e-4)
    assert g.pull_up == pytest.approx(3.110887e-3, rel=1e-4)
    assert g.gravity == pytest.approx(0.85705, abs=5e-5)


def test_gravity_zero_when_no_mass() -> None:
    z = np.zeros(3)
    g = gravity(
        np.array([90.0, 100.0, 110.0]),
        z,
        z,
        100.0,
        0.05,
        bid_px=EMPTY,
        bid_qty=EMPTY,
        ask_px=EMPTY,
        ask_qty=EMPTY,
    )
    assert g.gravity == 0.0 and g.pull_up == 0.0 and g.pull_down == 0.0


def test_touch_probabilities_vectorized_agrees() -> None:
    d = np.array([0.0, 0.01, 0.05, 0.1, 0.3])
    vec = touch_probabilities(d, 0.05)
    assert vec.tolist() == pytest.approx([touch_probability(x, 0.05) for x in d], rel=2e-7)
    assert vec[0] == pytest.approx(1.0)


def test_key_levels_single_cluster_hand_computed() -> None:
    """$1M of long liquidations in the bin of 90, P = 100, s = 5 %: one key level at ~90 with
    notional $1M, distance -10 %, ln(0.9)/0.05 = -2.107 σ, touch 2(1 - Φ(2.107)) = 0.0351."""
    m = LiquidationMap(100.0, (Tier(10, 1.0, 0.0),))
    m.add("long", 1_000_000.0, 100.0)
    sm = m.scaled(1e9, 1e9, 100.0)
    (lvl,) = key_levels(sm.centers, sm.long_usd, 100.0, 0.05, "long")
    assert lvl.side == "long"
    assert lvl.price == pytest.approx(90.0, rel=3e-4)
    assert lvl.notional_usd == pytest.approx(1_000_000.0)
    assert lvl.distance_pct == pytest.approx(-10.0, abs=0.03)
    assert lvl.distance_sigma == pytest.approx(-2.107, abs=6e-3)
    assert lvl.touch_prob == pytest.approx(0.0351, abs=3e-4)
    assert key_levels(sm.centers, sm.short_usd, 100.0, 0.05, "short") == ()


def test_key_levels_merge_close_peaks_and_rank() -> None:
    """Clusters $1M at 90 and $0.5M at 90.9 (0.2·s apart) blur into one level; $0.8M at 80 is a
    second one; a $0.01M crumb at 70 stays below the 90th percentile. Strongest first."""
    c = np.exp(np.linspace(math.log(60.0), math.log(165.0), 2000))
    mass = np.zeros_like(c)
    for px, usd in ((90.0, 1e6), (90.9, 0.5e6), (80.0, 0.8e6), (70.0, 0.01e6)):
        mass[np.argmin(np.abs(c - px))] += usd
    levels = key_levels(c, mass, 100.0, 0.05, "long")
    assert len(levels) == 2
    assert levels[0].price == pytest.approx(90.3, abs=0.4)
    assert levels[0].notional_usd == pytest.approx(1.5e6)
    assert levels[1].price == pytest.approx(80.0, rel=1e-3)
    assert abs(math.log(levels[0].price / levels[1].price)) >= 0.5 * 0.05


def test_key_levels_top_three_per_side() -> None:
    """Five similar short clusters (1.00-1.04 M) all clear the 90th percentile; the three
    strongest are reported, strongest first."""
    c = np.exp(np.linspace(math.log(60.0), math.log(165.0), 2000))
    mass = np.zeros_like(c)
    for k, px in enumerate((110.0, 120.0, 130.0, 140.0, 150.0)):
        mass[np.argmin(np.abs(c - px))] = 1e6 * (1.0 + 0.01 * k)
    levels = key_levels(c, mass, 100.0, 0.05, "short")
    assert [round(lv.price) for lv in levels] == [150, 140, 130]
    assert all(lv.distance_sigma > 0 for lv in levels)


def test_key_levels_need_the_90th_percentile() -> None:
    """Clusters 1..5 M of equal width: the 90th percentile of the smoothed non-zero bins lies
    above the 3 M peak, so only the 5 M and 4 M peaks are key levels (§4's rule, not top-3)."""
    c = np.exp(np.linspace(math.log(60.0), math.log(165.0), 2000))
    mass = np.zeros_like(c)
    for k, px in enumerate((110.0, 120.0, 130.0, 140.0, 150.0)):
        mass[np.argmin(np.abs(c - px))] = 1e6 * (k + 1)
    levels = key_levels(c, mass, 100.0, 0.05, "short")
    assert [round(lv.price) for lv in levels] == [150, 140]
