"""§6 risk figures: T17 and their degenerate cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gateway.signals import at_risk_share, liq_to_depth, map_gross_to_net

LEVELS = np.array([97.0, 92.0, 85.0])  # -3 %, -8 %, -15 % from 100
NOTIONAL = np.array([2e6, 3e6, 5e6])
BAND_10PCT = -math.log(0.9)  # the band edge sits exactly at -10 %


def test_t17_three_named_figures() -> None:
    """T17: side OI $10M; long map $2M at -3 %, $3M at -8 %, $5M at -15 %; band -10 % ->
    at_risk_share 0.50; bids within -10 % $4M -> liq_to_depth 1.25; gross $15M ->
    map_gross_to_net 1.5."""
    assert at_risk_share(LEVELS, NOTIONAL, 100.0, 10e6, BAND_10PCT, "long") == pytest.approx(0.5)
    bid_px = np.array([99.0, 95.0, 85.0])  # the 85 bid is outside the band
    bid_qty = np.array([2e6 / 99.0, 2e6 / 95.0, 1e6])
    l2d = liq_to_depth(LEVELS, NOTIONAL, 100.0, BAND_10PCT, "long", bid_px, bid_qty)
    assert l2d == pytest.approx(1.25)
    assert map_gross_to_net(15e6, 10e6) == pytest.approx(1.5)


def test_short_side_band_and_degenerate_cases() -> None:
    levels = np.array([103.0, 108.0, 115.0])
    assert at_risk_share(levels, NOTIONAL, 100.0, 10e6, 0.10, "short") == pytest.approx(0.5)
    assert at_risk_share(levels, NOTIONAL, 100.0, 0.0, 0.10, "short") == 0.0
    assert at_risk_share(levels, NOTIONAL, 100.0, 1e6, 0.10, "short") == 1.0  # clipped
    empty = np.empty(0)
    l2d = liq_to_depth(levels, NOTIONAL, 100.0, 0.10, "short", empty, empty)
    assert l2d == pytest.approx(5e6) and math.isfinite(l2d)  # $1 depth floor
    assert liq_to_depth(levels, np.zeros(3), 100.0, 0.10, "short", empty, empty) == 0.0
