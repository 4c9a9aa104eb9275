"""Carry: basis, funding annualization and the carry vote (shared/signals.md §1).

Choices where the doc is silent (also listed in the package docstring):

* Funding interval per record = gap to the previous settlement, rounded to the minute (venue
  timestamps jitter by seconds; 3,601 s must not read as 1.0003 h). The first record borrows the
  next record's gap; a lone record uses ``default_interval_h`` (Kraken: 1 h). Prints within the
  same minute are one settlement (the later given wins); a print whose relative rate cannot be
  known (NaN/inf, absolute without a usable mark) is skipped for the rate but its time still
  sets the intervals, so the previous print is used and the funding age says how old it is.
* ``24h_mean`` annualizes every settled record in the last 24 h with its *own* interval and then
  averages, so a venue switching from 4 h to 1 h settlements mid-window is still averaged
  correctly. With no record in the window it falls back to ``last`` and says so.
* The vote compares ``carry_excess_bps(H) = carry_ann_bps(H) - baseline`` with the threshold by
  default. §1 says the vote uses ``funding_excess_bps`` while §9 T4 says the vote flips when the
  horizon shrinks to 1 d; only a vote that includes the basis term can flip with H, and at
  H = 365 d both readings agree on T1/T3. ``vote_on="funding_excess"`` gives the literal §1 rule.
* The threshold is inclusive (T1: "1095 >= 1000 -> short").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np

from gateway.signals._num import FloatArray, Num, is_price, positive_price, to_float
from gateway.signals.errors import SignalConfigError, SignalInputError
from gateway.signals.types import Direction

HOURS_PER_YEAR = 8760.0
BPS = 1e4
FundingSource: TypeAlias = Literal["last", "predicted", "24h_mean"]
ContractType: TypeAlias = Literal["linear", "inverse"]
VoteOn: TypeAlias = Literal["carry_excess", "funding_excess"]


@dataclass(frozen=True, slots=True)
class FundingRecord:
    """One funding print as the venue gave it; conversion to a relative rate happens here.

    ``absolute=True`` is Kraken's ticker ``fundingRate`` (quote currency per contract per
    interval); it needs the mark at that time (``reference_price``) to become relative.
    ``predicted=True`` marks the venue's estimate for the running interval.
    """

    ts: float
    rate: Num
    absolute: bool = False
    reference_price: Num | None = None
    predicted: bool = False


@dataclass(frozen=True, slots=True)
class FundingReading:
    """The funding figure a snapshot uses, with the facts needed to explain it."""

    rate: float
    interval_h: float
    ann_bps: float
    source: FundingSource
    as_of: float


@dataclass(frozen=True, slots=True)
class CarryReading:
    """All §1 outputs together, so a readout can show every term of the carry vote."""

    price_ref: float
    price_ref_source: Literal["impact_mid", "mark"]
    spot_index: float
    basis_bps: float
    funding_rate: float
    funding_interval_h: float
    funding_source: FundingSource
    funding_ann_bps: float
    baseline_ann_bps: float
    funding_excess_bps: float
    horizon_days: float
    carry_ann_bps: float
    carry_excess_bps: float
    vote: Direction
    vote_on: VoteOn
    threshold_bps: float
    funding_as_of: float | None


def basis_bps(price_ref: Num, spot: Num) -> float:
    """shared/signals.md §1: ``(P_ref - S) / S * 1e4``."""
    p = positive_price(price_ref, "price_ref")
    s = positive_price(spot, "spot index")
    return (p - s) / s * BPS


def intervals_per_year(interval_h: float) -> float:
    """shared/signals.md §1: ``8760 / Δh``."""
    if not interval_h > 0.0:
        raise SignalInputError(f"funding interval must be > 0 h, got {interval_h}")
    return HOURS_PER_YEAR / interval_h


def funding_ann_bps(rate: Num, interval_h: float) -> float:
    """shared/signals.md §1: simple annualization ``r * 8760/Δh * 1e4`` (T5: not compounded)."""
    return to_float(rate) * intervals_per_year(interval_h) * BPS


def funding_excess_bps(ann_bps: float, baseline_ann_bps: float = 0.0) -> float:
    """shared/signals.md §1: funding above the venue's structural interest term."""
    return ann_bps - baseline_ann_bps


def carry_ann_bps(funding_ann: float, basis: float, horizon_days: float) -> float:
    """shared/signals.md §1: ``funding_ann + basis * 365 / H`` (basis converges over H)."""
    if not horizon_days > 0.0:
        raise SignalConfigError(f"carry horizon must be > 0 days, got {horizon_days}")
    return funding_ann + basis * 365.0 / horizon_days


def relative_rate(rate: Num, price: Num | None, contract: ContractType = "linear") -> float:
    """Kraken's absolute ``fundingRate`` to a relative rate (kraken-api.md §5 via §1).

    Linear ``PF_`` contracts: ``r = fundingRate / mark``; inverse: ``r = fundingRate * mark``.
    """
    if price is None:
        raise SignalInputError("an absolute funding rate needs the mark price of its interval")
    p = positive_price(price, "funding reference price")
    f = to_float(rate)
    return f / p if contract == "linear" else f * p


def infer_intervals_h(timestamps: Sequence[float], default_h: float = 1.0) -> FloatArray:
    """Per-record funding interval in hours from settlement timestamps (epoch seconds).

    T2: ``[00:00, 04:00, 08:00] -> 4``. Gaps are rounded to the minute; the first record borrows
    the second's gap; a lone record gets ``default_h``.
    """
    ts = np.asarray(timestamps, dtype=np.float64)
    if ts.size == 0:
        return np.empty(0, dtype=np.float64)
    if ts.size == 1:
        return np.array([default_h], dtype=np.float64)
    gaps_h = np.round(np.diff(ts) / 60.0) / 60.0
    if np.any(gaps_h <= 0.0):
        raise SignalInputError("funding settlement timestamps must be strictly increasing")
    return np.concatenate((gaps_h[:1], gaps_h))


def _rel(rec: FundingRecord, contract: ContractType) -> float | None:
    """The record's relative rate, or ``None`` when it cannot be known (a NaN/inf rate, an
    absolute rate without a usable mark): such a print is skipped, never a NaN carry."""
    try:
        r = relative_rate(rec.rate, rec.reference_price, contract) if rec.absolute else (
            to_float(rec.rate))
    except SignalInputError:
        return None
    return r if math.isfinite(r) else None


def _settlements(records: Sequence[FundingRecord]) -> list[FundingRecord]:
    """Settled records by time, one per settlement: prints whose times round to the same
    minute (the interval inference's resolution) are one settlement, the later given wins."""
    by_minute: dict[float, FundingRecord] = {}
    for r in records:
        if not r.predicted and math.isfinite(r.ts):
            by_minute[round(r.ts / 60.0)] = r
    return sorted(by_minute.values(), key=lambda r: r.ts)


def select_funding(
    records: Sequence[FundingRecord],
    now: float,
    source: FundingSource = "last",
    default_interval_h: float = 1.0,
    contract: ContractType = "linear",
) -> FundingReading | None:
    """Pick the funding figure named by ``source``; fall back to ``last`` and say so.

    Prints whose rate cannot be known are skipped (their settlement times still set the
    intervals); ``None`` when no usable print is left.
    """
    settled = _settlements(records)
    intervals = infer_intervals_h([r.ts for r in settled], default_interval_h)
    last_interval = float(intervals[-1]) if intervals.size else default_interval_h
    rates = [_rel(r, contract) for r in settled]
    usable = [i for i, r in enumerate(rates) if r is not None]
    predicted = [
        (r, rate)
        for r in records
        if r.predicted and math.isfinite(r.ts) and (rate := _rel(r, contract)) is not None
    ]
    if predicted and (source == "predicted" or not usable):
        # Only a prediction exists: using it is more honest than reporting nothing.
        rec, rate = max(predicted, key=lambda x: x[0].ts)
        return FundingReading(
            rate, last_interval, funding_ann_bps(rate, last_interval), "predicted", rec.ts
        )
    if not usable:
        return None
    if source == "24h_mean":
        idx = [i for i in usable if settled[i].ts > now - 86400.0]
        if idx:
            window = np.array([rates[i] for i in idx], dtype=np.float64)
            anns = window * (HOURS_PER_YEAR / intervals[idx]) * BPS
            mean_ann = float(np.mean(anns))
            # The equivalent per-interval rate at the latest interval keeps rate/ann consistent.
            rate = mean_ann / (intervals_per_year(last_interval) * BPS)
            return FundingReading(rate, last_interval, mean_ann, "24h_mean", settled[idx[-1]].ts)
    i = usable[-1]
    rate_i = rates[i]
    assert rate_i is not None
    iv = float(intervals[i])
    return FundingReading(rate_i, iv, funding_ann_bps(rate_i, iv), "last", settled[i].ts)


def carry_vote(excess_bps: float, threshold_bps: float = 1000.0) -> Direction:
    """shared/signals.md §1: positive funding pays shorts, so rich carry votes short."""
    if threshold_bps < 0.0 or not math.isfinite(threshold_bps):
        raise SignalConfigError(f"carry threshold must be finite and >= 0, got {threshold_bps}")
    if excess_bps >= threshold_bps:
        return "short"
    if excess_bps <= -threshold_bps:
        return "long"
    return "neutral"


def compute_carry(
    *,
    mark: Num,
    spot_index: Num,
    funding: FundingReading | None,
    impact_mid: Num | None = None,
    baseline_ann_bps: float = 0.0,
    horizon_days: float = 365.0,
    threshold_bps: float = 1000.0,
    vote_on: VoteOn = "carry_excess",
) -> CarryReading:
    """All of §1 from plain inputs; missing funding counts as 0 and the reading says so."""
    im = math.nan if impact_mid is None else to_float(impact_mid)
    if is_price(im):  # §1: "impact mid if available" (NaN/<= 0: it is not)
        p_ref, p_src = im, "impact_mid"
    else:
        p_ref, p_src = positive_price(mark, "mark"), "mark"
    s = positive_price(spot_index, "spot index")
    b = basis_bps(p_ref, s)
    if funding is None:
        funding = FundingReading(0.0, 1.0, 0.0, "last", 0.0)
        funding_as_of: float | None = None
    else:
        funding_as_of = funding.as_of
    excess = funding_excess_bps(funding.ann_bps, baseline_ann_bps)
    carry = carry_ann_bps(funding.ann_bps, b, horizon_days)
    carry_excess = carry - baseline_ann_bps
    vote = carry_vote(carry_excess if vote_on == "carry_excess" else excess, threshold_bps)
    return CarryReading(
        price_ref=p_ref,
        price_ref_source="impact_mid" if p_src == "impact_mid" else "mark",
        spot_index=s,
        basis_bps=b,
        funding_rate=funding.rate,
        funding_interval_h=funding.interval_h,
        funding_source=funding.source,
        funding_ann_bps=funding.ann_bps,
        baseline_ann_bps=baseline_ann_bps,
        funding_excess_bps=excess,
        horizon_days=horizon_days,
        carry_ann_bps=carry,
        carry_excess_bps=carry_excess,
        vote=vote,
        vote_on=vote_on,
        threshold_bps=threshold_bps,
        funding_as_of=funding_as_of,
    )
