"""§2 positioning: T7 and the flow_estimate estimator."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gateway.signals import (
    PositioningRecord,
    SignalConfigError,
    asymmetry,
    flow_estimate,
    long_share,
    oi_asymmetry,
)


def test_t7_asymmetry_and_long_share() -> None:
    """T7: 78.53e6 / 8.71e6 -> 9.016 ("9.0x"), long_share 0.9002; short 0 -> inf; both 0 ->
    undefined; no exception, no NaN."""
    value, status = oi_asymmetry(78.53e6, 8.71e6)
    assert status == "finite" and value == pytest.approx(9.016, abs=5e-4)
    assert long_share(78.53e6, 8.71e6) == pytest.approx(0.9002, abs=5e-5)
    rec = PositioningRecord.of("top_accounts", "venue_push", 78.53e6, 8.71e6, 0.0)
    assert asymmetry(rec).label == "9.0x by top_accounts"
    assert oi_asymmetry(5.0, 0.0) == (None, "inf")
    assert oi_asymmetry(0.0, 0.0) == (None, "undefined")
    assert long_share(0.0, 0.0) is None
    assert long_share(5.0, 0.0) == 1.0
    inf = asymmetry(PositioningRecord("c", "m", 5.0, 0.0, 0.0))
    assert inf.label == "inf by c" and inf.value is None


def test_flow_estimate_hand_computed() -> None:
    """OI 100 -> 200 -> 150, taker-buy share f = 1.0 then 0.2, start 50/50.

    α = 1: +100 with f = 1 goes all to longs (150/50); -50 with f = 0.2 takes
    α(1-f) + (1-α)f = 0.8 from longs: long 150 - 40 = 110, short 40 -> 2.75x, share 0.7333.
    α = 0.75: +100 gives longs 0.75·1 + 0.25·0 = 0.75 -> 125/75; -50 takes
    0.75·0.8 + 0.25·0.2 = 0.65 from longs -> 125 - 32.5 = 92.5, short 57.5.
    """
    est = flow_estimate([100.0, 200.0, 150.0], [0.5, 1.0, 0.2], as_of=9.0, alpha=1.0)
    assert est.long_usd.tolist() == pytest.approx([50.0, 150.0, 110.0])
    assert est.short_usd.tolist() == pytest.approx([50.0, 50.0, 40.0])
    assert est.long_delta.tolist() == pytest.approx([0.0, 100.0, -40.0])
    assert est.short_delta.tolist() == pytest.approx([0.0, 0.0, -10.0])
    assert est.record.method == "flow_estimate" and est.record.as_of == 9.0
    assert asymmetry(est.record).value == pytest.approx(2.75)
    est75 = flow_estimate([100.0, 200.0, 150.0], [0.5, 1.0, 0.2], as_of=9.0, alpha=0.75)
    assert est75.long_usd.tolist() == pytest.approx([50.0, 125.0, 92.5])
    assert est75.short_usd.tolist() == pytest.approx([50.0, 75.0, 57.5])


def test_flow_estimate_alpha_half_cannot_create_asymmetry() -> None:
    rng = np.random.default_rng(7)
    oi = np.abs(1e6 + np.cumsum(rng.normal(0, 1e5, 200)))
    est = flow_estimate(oi, rng.uniform(0, 1, 200), as_of=0.0, alpha=0.5)
    assert np.allclose(est.long_usd, est.short_usd)


def test_flow_estimate_clamps_sides_to_oi() -> None:
    """OI 100 -> 20 with every taker selling (f = 0), α = 1: longs would go 50 - 80 = -30;
    clamped to 0, shorts take the rest (20). Effective deltas: long -50, short -30."""
    est = flow_estimate([100.0, 20.0], [0.5, 0.0], as_of=0.0)
    assert est.long_usd.tolist() == [50.0, 0.0]
    assert est.short_usd.tolist() == [50.0, 20.0]
    assert est.long_delta.tolist() == [0.0, -50.0]
    assert est.short_delta.tolist() == [0.0, -30.0]
    assert np.all(est.long_usd >= 0) and np.all(est.long_usd <= np.array([100.0, 20.0]))


def test_flow_estimate_edges() -> None:
    empty = flow_estimate([], [], as_of=1.0)
    assert empty.record.long_usd == 0.0 and asymmetry(empty.record).status == "undefined"
    nan_share = flow_estimate([10.0, 20.0], [0.5, math.nan], as_of=0.0)
    assert nan_share.long_usd[-1] == pytest.approx(10.0)  # α=1, f=0.5 -> 0.5 of +10
    with pytest.raises(SignalConfigError):
        flow_estimate([1.0], [0.5], as_of=0.0, alpha=1.5)
