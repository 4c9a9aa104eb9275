"""§5 cascade simulation: T13, T14, T15 and hand-computed cases."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.signals import SignalConfigError, SignalInputError, run_cascades, simulate_cascade
from gateway.signals.cascade import CascadeResult

BID_PX = [99.5, 99.0, 98.0, 97.0, 95.0]
BID_QTY = [200.0, 300.0, 500.0, 1000.0, 5000.0]
CL_PX = [99.0, 98.0, 96.0]
CL_QTY = [900.0, 600.0, 2000.0]


def _long(bid_qty: list[float], **kw: Any) -> CascadeResult:
    args: dict[str, Any] = {"sigma_d": 0.05, "daily_volume": 1e6, "shock_price": 99.0}
    args.update(kw)
    return simulate_cascade(
        "long", BID_PX, bid_qty, CL_PX, CL_QTY, price=100.0, side_oi=10_000.0, **args
    )


def test_t13_two_waves() -> None:
    """T13: wave 1 (900) ends at 98, wave 2 (600) ends at 97, 96 not reached -> 1,500 (15 %),
    end 97, 2 steps, amplification 1.67."""
    r = _long(BID_QTY)
    assert r.liquidated_qty == pytest.approx(1500.0)
    assert r.liquidated_share == pytest.approx(0.15)
    assert r.end_price == pytest.approx(97.0)
    assert r.steps == 2
    assert r.stop_reason == "no further level reached"
    assert r.amplification == pytest.approx(1.67, abs=5e-3)
    assert r.wave_sizes == (900.0, 600.0)
    assert r.step_ratios == pytest.approx((600.0 / 900.0,))
    assert not r.self_sustaining and not r.book_exhausted


def test_t14_thin_bid_at_97() -> None:
    """T14: T13 with 300 bid at 97 -> 3,500 (35 %), end 95, 3 steps, amplification 3.89."""
    r = _long([200.0, 300.0, 500.0, 300.0, 5000.0])
    assert r.liquidated_qty == pytest.approx(3500.0)
    assert r.liquidated_share == pytest.approx(0.35)
    assert r.end_price == pytest.approx(95.0)
    assert r.steps == 3
    assert r.amplification == pytest.approx(3.89, abs=5e-3)
    # ratios 0.667 and 3.333: median 2.0 >= 1
    assert r.self_sustaining


def test_t15_every_bid_halved() -> None:
    """T15: T13 with every bid halved -> 3,500, end 95, 3 steps."""
    r = _long([q / 2 for q in BID_QTY])
    assert r.liquidated_qty == pytest.approx(3500.0)
    assert r.end_price == pytest.approx(95.0)
    assert r.steps == 3


def test_haircuts_0_50_90_hand_computed() -> None:
    """run_cascades on T13 with σ_d = 5 %, V_d = 10,000:
    0 % = T13; 50 % = T15 (3,500 at 95); 90 %: bids 20/30/50/100/500 = 700, so wave 1 (900)
    exhausts the book: rest 200, Δx/x = 0.7·0.05·sqrt(200/10,000) = 0.0049497 from the last
    level 95 -> 94.5298; that fires 98 and 96 (2,600): rest 2,800,
    Δx/x = 0.035·sqrt(0.28) = 0.0185203 -> 95·(1 - 0.0185203) = 93.2406; nothing left."""
    runs = run_cascades(
        "long",
        BID_PX,
        BID_QTY,
        CL_PX,
        CL_QTY,
        price=100.0,
        side_oi=10_000.0,
        sigma_d=0.05,
        daily_volume=10_000.0,
        delta=0.01,
    )
    assert [r.haircut for r in runs] == [0.0, 0.5, 0.9]
    assert runs[0].liquidated_qty == pytest.approx(1500.0) and runs[0].end_price == 97.0
    assert runs[1].liquidated_qty == pytest.approx(3500.0) and runs[1].end_price == 95.0
    r90 = runs[2]
    assert r90.book_exhausted and r90.steps == 2
    assert r90.wave_sizes == pytest.approx((900.0, 2600.0))
    assert r90.end_price == pytest.approx(93.2406, abs=5e-4)


def test_book_exhausted_single_wave_hand_computed() -> None:
    """Bid 100 @ 99, cluster 300 @ 99, σ_d = 5 %, V_d = 1,000, OI 1,000: 100 fills, 200 rest,
    Δx/x = 0.7·0.05·sqrt(0.2) = 0.0156525 -> end 99·(1 - 0.0156525) = 97.4504."""
    r = simulate_cascade(
        "long",
        [99.0],
        [100.0],
        [99.0],
        [300.0],
        price=100.0,
        side_oi=1_000.0,
        sigma_d=0.05,
        daily_volume=1_000.0,
        shock_price=99.0,
    )
    assert r.book_exhausted
    assert r.end_price == pytest.approx(97.4504, abs=5e-4)
    assert r.liquidated_share == pytest.approx(0.3)
    assert r.amplification == 1.0 and r.step_ratios == () and not r.self_sustaining


def test_mark_transmission_half_hand_computed() -> None:
    """T13 with τ = 0.5: wave 1 sweeps the book to 98, the trigger moves half way in log price:
    99·(98/99)^0.5 = sqrt(9702) = 98.4987; the 98 cluster is not reached -> 900 only."""
    r = _long(BID_QTY, mark_transmission=0.5)
    assert r.end_price == pytest.approx(math.sqrt(9702.0), abs=1e-9)
    assert r.book_end_price == pytest.approx(98.0)
    assert r.liquidated_qty == pytest.approx(900.0) and r.steps == 1
    frozen = _long(BID_QTY, mark_transmission=0.0)
    assert frozen.end_price == 99.0 and frozen.steps == 1


def test_short_mirror_of_t13() -> None:
    """T13 mirrored around 100: asks 100.5:200, 101:300, 102:500, 103:1000, 105:5000; short
    clusters 101:900, 102:600, 104:2000; shock to 101 -> 1,500, end 103, 2 steps."""
    r = simulate_cascade(
        "short",
        [105.0, 100.5, 103.0, 101.0, 102.0],  # any order
        [5000.0, 200.0, 1000.0, 300.0, 500.0],
        [104.0, 101.0, 102.0],
        [2000.0, 900.0, 600.0],
        price=100.0,
        side_oi=10_000.0,
        sigma_d=0.05,
        daily_volume=1e6,
        shock_price=101.0,
    )
    assert r.side == "short"
    assert r.liquidated_qty == pytest.approx(1500.0)
    assert r.end_price == pytest.approx(103.0)
    assert r.steps == 2


def test_default_shock_is_further_of_delta_and_nearest_cluster() -> None:
    """x <- min(P·e^-δ, nearest cluster): δ = 0.01 -> 99.005; nearest cluster 97 -> x = 97."""
    r = simulate_cascade(
        "long",
        BID_PX,
        BID_QTY,
        [97.0],
        [10.0],
        price=100.0,
        side_oi=1e4,
        sigma_d=0.05,
        daily_volume=1e6,
        delta=0.01,
    )
    assert r.shock_price == 97.0 and r.steps == 1
    r2 = simulate_cascade(
        "long",
        BID_PX,
        BID_QTY,
        [99.5],
        [10.0],
        price=100.0,
        side_oi=1e4,
        sigma_d=0.05,
        daily_volume=1e6,
        delta=0.01,
    )
    assert r2.shock_price == pytest.approx(100 * math.exp(-0.01))
    none = simulate_cascade(
        "long",
        BID_PX,
        BID_QTY,
        [],
        [],
        price=100.0,
        side_oi=1e4,
        sigma_d=0.05,
        daily_volume=1e6,
    )
    assert none.steps == 0 and none.amplification == 0.0 and none.liquidated_share == 0.0


def test_max_steps_and_q_min() -> None:
    """A chain: bids of 1 at 99.0, 98.9, ...; a cluster of 1.001 at each; every wave eats just
    past the next level and fires exactly one more cluster, forever -> stops at 50 steps with
    all ratios 1 (self-sustaining). T14 with max_steps = 2 stops after 1,500."""
    px = [round(99.0 - 0.1 * k, 1) for k in range(80)]
    r = simulate_cascade(
        "long",
        px,
        [1.0] * 80,
        px,
        [1.001] * 80,
        price=100.0,
        side_oi=1e3,
        sigma_d=0.05,
        daily_volume=1e6,
        shock_price=99.0,
    )
    assert r.steps == 50 and r.stop_reason == "max_steps"
    assert r.self_sustaining and r.liquidated_qty == pytest.approx(50 * 1.001)
    short = _long([200.0, 300.0, 500.0, 300.0, 5000.0], max_steps=2)
    assert short.stop_reason == "max_steps" and short.liquidated_qty == pytest.approx(1500.0)
    small = _long(BID_QTY, q_min=700.0)  # wave 2 (600) is below q_min
    assert small.steps == 1 and small.stop_reason == "no further level reached"


def test_invalid_parameters() -> None:
    with pytest.raises(SignalConfigError):
        _long(BID_QTY, mark_transmission=1.5)
    with pytest.raises(SignalConfigError):
        _long(BID_QTY, haircut=-0.1)


@settings(max_examples=200, deadline=None)
@given(
    levels=st.lists(st.integers(1, 50), min_size=2, max_size=6),
    k=st.integers(1, 5),
    data=st.data(),
)
def test_a_wave_that_exactly_fills_levels_stops_at_the_last_one(
    levels: list[int], k: int, data: st.DataObject
) -> None:
    """Selling exactly the first k levels' size touches level k, not k+1: float dust (0.1 + 0.2
    > 0.3) swept one level deeper, fired the cluster resting there and could turn one wave
    into a crash. Sizes are decimal tenths split into differently grouped pieces."""
    k = min(k, len(levels) - 1)
    units = sum(levels[:k])
    cuts = sorted(data.draw(st.lists(st.integers(1, units - 1), max_size=4, unique=True))) if (
        units > 1) else []
    pieces = [b - a for a, b in zip([0, *cuts], [*cuts, units], strict=True)]
    px = [99.0 - i for i in range(len(levels))]
    r = simulate_cascade(
        "long",
        px,
        [u * 0.1 for u in levels],
        [99.0] * len(pieces) + [px[k]],
        [u * 0.1 for u in pieces] + [1e6],
        price=100.0,
        side_oi=1e9,
        sigma_d=0.04,
        daily_volume=1e9,
        shock_price=99.0,
    )
    assert r.steps == 1 and r.end_price == px[k - 1], (r.wave_sizes, r.end_price)


@settings(max_examples=200, deadline=None)
@given(
    side=st.sampled_from(["long", "short"]),
    first=st.integers(1, 2000),
    gap=st.integers(1, 2000),
)
def test_full_transmission_moves_the_trigger_exactly_to_the_last_level(
    side: str, first: int, gap: int
) -> None:
    """τ = 1 is §5's ``x <- price of the last level touched``; ``x · (b/x)^1`` rounded below
    an ask (115.67 -> 115.66999999999999) in about one case in ten, so the cluster resting at
    that ask did not fire and the cascade stopped early."""
    sgn = -1 if side == "long" else 1
    x = 100.0 + sgn * first / 100.0
    b = round(x + sgn * gap / 100.0, 2)
    r = simulate_cascade(
        "long" if side == "long" else "short",
        [x, b, 100.0 * (1 + sgn * 0.9)],
        [1.0, 1.0, 1e9],
        [x, b],
        [1.5, 7.0],
        price=100.0,
        side_oi=1e6,
        sigma_d=0.04,
        daily_volume=1e9,
        shock_price=x,
    )
    assert r.wave_sizes == (1.5, 7.0), (x, b, r.end_price)
    assert r.end_price == 100.0 * (1 + sgn * 0.9)


def test_overflowing_quantities_or_shock_are_an_input_error_not_nan() -> None:
    """Cluster sizes summing past float64 made every wave NaN, liquidated_share 1.0
    (``min(1, nan)``) and 50 NaN steps; a shock of e^800 raised a bare OverflowError."""
    with pytest.raises(SignalInputError, match="overflow"):
        simulate_cascade("long", [99.0], [1.0], [99.0, 98.0], [1e308, 1e308], price=100.0,
                         side_oi=1e6, sigma_d=0.04, daily_volume=1e3)
    with pytest.raises(SignalInputError, match="overflow"):
        simulate_cascade("long", [99.0, 98.0], [1e308, 1e308], [99.0], [1.0], price=100.0,
                         side_oi=1e6, sigma_d=0.04, daily_volume=1e3)
    with pytest.raises(SignalInputError, match="overflow"):
        simulate_cascade("short", [101.0], [1.0], [101.0], [1.0], price=100.0, side_oi=1e6,
                         sigma_d=800.0, daily_volume=1e3)
