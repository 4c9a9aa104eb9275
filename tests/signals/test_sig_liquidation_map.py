"""§3 liquidation map: T8, T10, T11 and the map's bookkeeping rules."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from gateway.signals import (
    DEFAULT_TIERS,
    LiquidationMap,
    LogGrid,
    SignalConfig,
    SignalConfigError,
    Tier,
    long_liq_price,
    map_gross_to_net,
    short_liq_price,
    validate_tiers,
)

T11_TIERS = (Tier(5, 0.5, 0.0), Tier(10, 0.5, 0.0))


def test_t8_liquidation_prices() -> None:
    """T8: p = 100, L = 10, m = 0.005 -> long 90.452, short 109.453."""
    assert long_liq_price(100.0, 10.0, 0.005) == pytest.approx(90.452, abs=5e-4)
    assert short_liq_price(100.0, 10.0, 0.005) == pytest.approx(109.453, abs=5e-4)


def test_t10_margin_not_below_one_over_leverage_is_rejected() -> None:
    """T10: L = 100 with m = 0.01 is rejected by config validation (m must be < 1/L)."""
    with pytest.raises(SignalConfigError, match=r"m < 1/L"):
        Tier(100, 1.0, 0.01)
    with pytest.raises(SignalConfigError, match=r"m < 1/L"):
        SignalConfig(tiers=(Tier(100, 1.0, 0.01),), max_leverage=100)


def test_tier_defaults_and_set_validation() -> None:
    assert Tier(10, 1.0).m == pytest.approx(0.05)  # Kraken: maintenance = initial / 2
    assert sum(t.weight for t in DEFAULT_TIERS) == pytest.approx(1.0)
    with pytest.raises(SignalConfigError, match="max leverage"):
        validate_tiers((Tier(100, 1.0),), max_leverage=50)
    with pytest.raises(SignalConfigError, match="sum to 1"):
        validate_tiers((Tier(2, 0.5),))
    with pytest.raises(SignalConfigError):
        validate_tiers(())


def test_grid_is_log_spaced_over_plus_minus_r() -> None:
    g = LogGrid(100.0)
    assert g.n_bins == 2000 and g.centers.size == 2000
    assert g.edges[0] == pytest.approx(100 * np.exp(-0.5))
    assert g.edges[-1] == pytest.approx(100 * np.exp(0.5))
    assert np.allclose(np.diff(np.log(g.edges)), 0.0005)


def test_t11_add_consume_remove() -> None:
    """T11: long +$1M at 100, {5x: .5, 10x: .5}, m = 0 -> $500k at 80 and at 90; mark 89.9
    consumes 90; then long -$200k removes 40 % of the rest -> $300k at 80."""
    m = LiquidationMap(100.0, T11_TIERS)
    m.add("long", 1_000_000.0, 100.0)
    assert m.usd_at("long", 80.0) == pytest.approx(500_000.0)
    assert m.usd_at("long", 90.0) == pytest.approx(500_000.0)
    assert m.total_usd("short") == 0.0
    consumed = m.consume(89.9)
    assert consumed[0] == pytest.approx(500_000.0)
    assert m.usd_at("long", 90.0) == 0.0
    removed = m.remove("long", 200_000.0)
    assert removed == pytest.approx(200_000.0)
    assert m.usd_at("long", 80.0) == pytest.approx(300_000.0)
    assert m.total_usd("long") == pytest.approx(300_000.0)
    # base quantity follows the notional: 300k of entries at 100 is 3,000 units
    assert m.base("long").sum() == pytest.approx(3_000.0)


def test_short_side_mirror() -> None:
    """Short +$1M at 100 with the T11 tiers: liq at 100·1.2 = 120 and 100·1.1 = 110; the mark's
    high 110.5 consumes the 110 bucket only."""
    m = LiquidationMap(Decimal("100"), T11_TIERS)
    m.add("short", Decimal("1000000"), Decimal("100"))
    assert m.usd_at("short", 110.0) == pytest.approx(500_000.0)
    assert m.usd_at("short", 120.0) == pytest.approx(500_000.0)
    m.consume(low=100.0, high=110.5)
    assert m.usd_at("short", 110.0) == 0.0 and m.usd_at("short", 120.0) == pytest.approx(5e5)


def test_half_life_decay() -> None:
    """72 h half-life: after 72 h half the mass is left, after 144 h a quarter."""
    m = LiquidationMap(100.0, T11_TIERS, as_of=0.0)
    m.add("long", 1_000.0, 100.0)
    m.decay_to(72 * 3600.0)
    assert m.total_usd("long") == pytest.approx(500.0)
    m.decay_to(144 * 3600.0)
    assert m.total_usd("long") == pytest.approx(250.0)
    m.decay_to(0.0)  # never rewinds
    assert m.total_usd("long") == pytest.approx(250.0) and m.as_of == 144 * 3600.0


def test_apply_interval_nets_consumed_against_falling_oi() -> None:
    """T11's map, then one interval with low 89.9 and long ΔOI -$600k: consumption already
    removed $500k, so only $100k more is closed proportionally: 500k - 100k = $400k at 80."""
    m = LiquidationMap(100.0, T11_TIERS, as_of=0.0)
    m.add("long", 1_000_000.0, 100.0)
    m.apply_interval(0.0, -600_000.0, 0.0, 100.0, 89.9, 100.0)
    assert m.usd_at("long", 80.0) == pytest.approx(400_000.0)


def test_apply_interval_adds_after_consuming() -> None:
    m = LiquidationMap(100.0, T11_TIERS, as_of=0.0)
    m.apply_interval(0.0, 1_000.0, 2_000.0, 100.0, 50.0, 150.0)
    assert m.total_usd("long") == pytest.approx(1_000.0)
    assert m.total_usd("short") == pytest.approx(2_000.0)


def test_off_grid_mass_is_counted_as_dropped() -> None:
    """A 2x long at 100 with m = 0 liquidates at 50, below 100·e^-0.5 = 60.65: not stored."""
    m = LiquidationMap(100.0, (Tier(2, 1.0, 0.0),))
    m.add("long", 1_000.0, 100.0)
    assert m.total_usd("long") == 0.0 and m.dropped_usd[0] == pytest.approx(1_000.0)


def test_scaled_view_scales_to_side_oi_and_does_not_mutate() -> None:
    """Gross long $1M vs side OI $400k -> scaled to 400k, map_gross_to_net 2.5; short side
    below its OI is not scaled up (ratio 1)."""
    m = LiquidationMap(100.0, T11_TIERS)
    m.add("long", 1_000_000.0, 100.0)
    m.add("short", 100_000.0, 100.0)
    sm = m.scaled(400_000.0, 1_000_000.0, 100.0)
    assert sm.gross_usd_long == pytest.approx(1e6) and sm.net_usd_long == pytest.approx(4e5)
    assert sm.long_usd.sum() == pytest.approx(4e5)
    assert sm.gross_to_net_long == pytest.approx(2.5)
    assert sm.gross_to_net_short == 1.0 and sm.short_usd.sum() == pytest.approx(1e5)
    assert m.total_usd("long") == pytest.approx(1e6)  # the caller's map is untouched
    with pytest.raises(ValueError):
        sm.long_usd[0] = 1.0
    # mark 89.9: the 90 bucket is consumed in the view only
    assert m.scaled(1e7, 1e7, 89.9).gross_usd_long == pytest.approx(5e5)
    assert m.usd_at("long", 90.0) == pytest.approx(5e5)


def test_gross_to_net_edges() -> None:
    assert map_gross_to_net(15e6, 10e6) == pytest.approx(1.5)
    assert map_gross_to_net(5e6, 10e6) == 1.0
    assert map_gross_to_net(0.0, 0.0) == 1.0
    assert map_gross_to_net(5e6, 0.0) == pytest.approx(5e6)  # finite, ≫ 1


def test_recentered_keeps_mass() -> None:
    m = LiquidationMap(100.0, T11_TIERS)
    m.add("long", 1_000.0, 100.0)
    r = m.recentered(85.0)
    assert r.total_usd("long") == pytest.approx(1_000.0)
    assert r.usd_at("long", 80.0) == pytest.approx(500.0)
    far = m.recentered(300.0)  # 80 and 90 fall off a grid around 300
    assert far.total_usd("long") == 0.0 and far.dropped_usd[0] == pytest.approx(1_000.0)


def test_batch_add_matches_single_adds() -> None:
    rng = np.random.default_rng(3)
    entries = rng.uniform(90, 110, 50)
    sizes = rng.uniform(0, 1e5, 50)
    a = LiquidationMap(100.0)
    a.add("long", sizes, entries)
    b = LiquidationMap(100.0)
    for s, e in zip(sizes, entries, strict=True):
        b.add("long", float(s), float(e))
    assert np.allclose(a.usd("long"), b.usd("long"))
    with pytest.raises(ValueError):
        a.add("long", -1.0, 100.0)
