"""§1 carry: shared/signals.md §9 T1-T5 and the funding-selection rules."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.signals import (
    FundingRecord,
    SignalConfigError,
    SignalInputError,
    basis_bps,
    carry_ann_bps,
    compute_carry,
    funding_ann_bps,
    infer_intervals_h,
    relative_rate,
    select_funding,
)
from gateway.signals.carry import FundingReading

H = 3600.0
R_T1 = 0.0000125


def _t1_funding() -> FundingReading:
    return FundingReading(R_T1, 1.0, funding_ann_bps(R_T1, 1.0), "last", 0.0)


def _t1_spot_for_basis(basis: float, mark: float = 100.0) -> float:
    """Spot such that (mark - S) / S * 1e4 == basis."""
    return mark / (1.0 + basis / 1e4)


def test_t1_carry_funding_basis_vote() -> None:
    """T1: r = 0.0000125 per 1 h -> 1095.0; basis -6.7 -> carry(365 d) 1088.3; votes short."""
    assert funding_ann_bps(R_T1, 1.0) == pytest.approx(1095.0, abs=1e-9)
    spot = _t1_spot_for_basis(-6.7)
    reading = compute_carry(mark=100.0, spot_index=spot, funding=_t1_funding())
    assert reading.basis_bps == pytest.approx(-6.7, abs=1e-9)
    assert reading.carry_ann_bps == pytest.approx(1088.3, abs=1e-9)
    assert reading.funding_excess_bps == pytest.approx(1095.0, abs=1e-9)
    assert reading.vote == "short"
    literal = compute_carry(
        mark=100.0, spot_index=spot, funding=_t1_funding(), vote_on="funding_excess"
    )
    assert literal.vote == "short"


def test_t2_interval_annualization_and_inference() -> None:
    """T2: r = 0.0001 per 8 h -> 1095; per 4 h -> 2190; per 1 h -> 8760; 00/04/08 h -> 4 h."""
    assert funding_ann_bps(0.0001, 8.0) == pytest.approx(1095.0, abs=1e-9)
    assert funding_ann_bps(0.0001, 4.0) == pytest.approx(2190.0, abs=1e-9)
    assert funding_ann_bps(0.0001, 1.0) == pytest.approx(8760.0, abs=1e-9)
    assert infer_intervals_h([0.0, 4 * H, 8 * H]).tolist() == [4.0, 4.0, 4.0]


def test_t3_baseline_makes_excess_zero_and_neutral() -> None:
    """T3: baseline 1095 with T1's r -> excess 0 -> neutral."""
    r = compute_carry(
        mark=100.0,
        spot_index=_t1_spot_for_basis(-6.7),
        funding=_t1_funding(),
        baseline_ann_bps=1095.0,
    )
    assert r.funding_excess_bps == pytest.approx(0.0, abs=1e-9)
    assert r.vote == "neutral"


def test_t4_horizon_changes_carry_and_flips_vote() -> None:
    """T4: H = 1 d -> 1095 - 6.7*365 = -1350.5 (vote flips to long); H = 7 d -> 745.64."""
    assert carry_ann_bps(1095.0, -6.7, 1.0) == pytest.approx(-1350.5, abs=1e-9)
    assert carry_ann_bps(1095.0, -6.7, 7.0) == pytest.approx(745.64, abs=5e-3)
    spot = _t1_spot_for_basis(-6.7)
    one_day = compute_carry(mark=100.0, spot_index=spot, funding=_t1_funding(), horizon_days=1.0)
    assert one_day.carry_ann_bps == pytest.approx(-1350.5, abs=1e-9)
    assert one_day.vote == "long"
    week = compute_carry(mark=100.0, spot_index=spot, funding=_t1_funding(), horizon_days=7.0)
    assert week.vote == "neutral"


def test_t5_simple_not_compounded() -> None:
    """T5: (1 + 0.0000125)^8760 - 1 = 11.57 % is not the output; 10.95 % is."""
    compounded_bps = ((1.0 + R_T1) ** 8760 - 1.0) * 1e4
    assert compounded_bps == pytest.approx(1157.0, abs=1.0)
    assert funding_ann_bps(R_T1, 1.0) == pytest.approx(1095.0, abs=1e-9)
    assert funding_ann_bps(R_T1, 1.0) != pytest.approx(compounded_bps, abs=1.0)


def test_interval_rounding_and_edges() -> None:
    """Jittered settlements read as whole minutes; a lone record uses the default interval."""
    assert infer_intervals_h([0.0, 3601.0, 7199.0]).tolist() == [1.0, 1.0, 1.0]
    assert infer_intervals_h([5.0], default_h=8.0).tolist() == [8.0]
    assert infer_intervals_h([]).size == 0
    with pytest.raises(SignalInputError):
        infer_intervals_h([0.0, 0.0])


def test_absolute_rate_conversion_kraken() -> None:
    """Kraken absolute fundingRate 0.00125 USD at mark 100 -> relative 0.0000125 (linear)."""
    assert relative_rate(Decimal("0.00125"), Decimal("100"), "linear") == pytest.approx(R_T1)
    assert relative_rate(0.000000125, 100.0, "inverse") == pytest.approx(R_T1)
    with pytest.raises(SignalInputError):
        relative_rate(0.1, None)


def test_select_funding_sources() -> None:
    """last, predicted and 24h_mean, each with its own per-record interval."""
    now = 100 * H
    recs = (
        FundingRecord(now - 9 * H, 0.0004),  # 4 h interval (older regime)
        FundingRecord(now - 5 * H, 0.0004),
        FundingRecord(now - 1 * H, 0.0001),  # 4 h gap again
        FundingRecord(now, 0.0001),  # 1 h interval now
        FundingRecord(
            now + 1, Decimal("0.004"), absolute=True, reference_price=200.0, predicted=True
        ),
    )
    last = select_funding(recs, now, "last")
    assert last is not None and last.source == "last" and last.interval_h == 1.0
    assert last.ann_bps == pytest.approx(8760.0)
    pred = select_funding(recs, now, "predicted")
    assert pred is not None and pred.source == "predicted"
    assert pred.rate == pytest.approx(0.00002) and pred.ann_bps == pytest.approx(1752.0)
    mean = select_funding(recs, now, "24h_mean")
    # per-record annualized: 0.0004*2190*1e4=8760 (x2), 0.0001*2190*1e4=2190, 8760 -> mean 7117.5
    assert mean is not None and mean.ann_bps == pytest.approx(7117.5)
    stale = select_funding(recs[:1], now + 48 * H, "24h_mean", default_interval_h=4.0)
    assert stale is not None and stale.source == "last"
    assert select_funding((), now) is None


def test_missing_funding_is_zero_and_bad_inputs_raise() -> None:
    r = compute_carry(mark=100.0, spot_index=100.0, funding=None)
    assert r.funding_ann_bps == 0.0 and r.funding_as_of is None and r.vote == "neutral"
    im = compute_carry(mark=100.0, spot_index=100.0, funding=None, impact_mid=Decimal("100.1"))
    assert im.price_ref_source == "impact_mid" and im.basis_bps == pytest.approx(10.0)
    with pytest.raises(SignalInputError):
        basis_bps(0.0, 1.0)
    with pytest.raises(SignalConfigError):
        carry_ann_bps(1.0, 1.0, 0.0)
