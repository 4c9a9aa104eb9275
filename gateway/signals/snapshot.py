"""One immutable, explainable reading of every signal for one symbol.

``compute_snapshot`` is a pure function of ``SignalInputs``: it composes §1-§7 and returns a
frozen, slotted ``SignalSnapshot`` of plain floats, strings and tuples, so the pre-trade gate
(§8) only *reads* precomputed fields and never computes on the order path. Every figure sits
next to what produced it (cohort, method, horizon, sources) and every input's age in seconds,
so a client can explain any decision from the snapshot alone.

Choices where shared/signals.md is silent:

* Price frame: the spot book is rescaled by ``mark / index`` before depth is measured, so book
  prices and liquidation levels (which live in mark terms) are compared in one frame.
* σ_d: the ``sigma_d`` input if given, else realized σ of the closes, else
  ``config.default_sigma_d`` (a σ_d that is not in ``(0, 10]`` is not used);
  ``sigma_source`` says which. ``s = max(σ_d √h, s_floor)``.
* Side OI for map scaling: when an OI history is present, the flow estimate that built the map
  (so ``map_gross_to_net`` compares like with like); else the positioning record's long share
  times the total OI; else an even split. ``side_oi_source`` says which.
* Total OI: last OI of the history, else ``open_interest_usd`` (NaN/inf: not given), else the
  record's long + short.
* The reported positioning is the pushed record when there is one, else the flow estimate.
* Cascade ``V_d``: ``daily_volume_base`` when given, else the total OI in base units.
* Ages are ``now - as_of`` in seconds; ``None`` when the input is absent or its time is not a
  number; ``max_age_s`` is the oldest present input (the mark is always present: a NaN/inf
  ``now`` or ``mark_as_of`` is a ``SignalInputError``, never an age of 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeGuard

import numpy as np

from gateway.signals._num import FloatArray, positive_price, to_array, to_float
from gateway.signals.carry import FundingSource, VoteOn, compute_carry, select_funding
from gateway.signals.cascade import CascadeResult, run_cascades
from gateway.signals.config import SignalConfig
from gateway.signals.errors import SignalInputError
from gateway.signals.gravity import KeyLevel, gravity, key_levels
from gateway.signals.inputs import Book, SignalInputs
from gateway.signals.liquidation_map import LiquidationMap, ScaledMap
from gateway.signals.positioning import (
    AsymmetryStatus,
    FlowEstimate,
    PositioningRecord,
    asymmetry,
    flow_estimate,
    long_share,
)
from gateway.signals.regime import (
    Regime,
    TrendState,
    VolBucket,
    Vote,
    cascade_vote,
    classify_regime,
    combine_votes,
    gravity_vote,
    momentum_vote,
    positioning_vote,
    realized_vol,
)
from gateway.signals.risk_figures import at_risk_share, liq_to_depth
from gateway.signals.types import Direction, Side


@dataclass(frozen=True, slots=True)
class SignalSnapshot:
    """Every signal component of one symbol at ``as_of``; read-only plain data."""

    symbol: str
    as_of: float
    price: float
    spot_index: float
    # input ages (seconds; None = input absent)
    age_mark_s: float
    age_book_s: float | None
    age_funding_s: float | None
    age_positioning_s: float | None
    age_oi_s: float | None
    age_closes_s: float | None
    age_map_s: float | None
    max_age_s: float
    # §1 carry
    price_ref: float
    price_ref_source: str
    basis_bps: float
    funding_rate: float
    funding_interval_h: float
    funding_source: FundingSource
    funding_ann_bps: float
    baseline_ann_bps: float
    funding_excess_bps: float
    carry_horizon_days: float
    carry_ann_bps: float
    carry_excess_bps: float
    carry_vote_on: VoteOn
    carry_threshold_bps: float
    # §2 positioning
    positioning_cohort: str
    positioning_method: str
    long_usd: float
    short_usd: float
    long_share: float | None
    oi_asymmetry: float | None
    oi_asymmetry_status: AsymmetryStatus
    oi_asymmetry_label: str
    aggressor_weight: float
    # volatility and horizon
    sigma_d: float
    sigma_source: str
    horizon_days: float
    s: float
    # §3 map
    open_interest_usd: float
    side_oi_usd_long: float
    side_oi_usd_short: float
    side_oi_source: str
    map_gross_usd_long: float
    map_gross_usd_short: float
    map_net_usd_long: float
    map_net_usd_short: float
    map_gross_to_net_long: float
    map_gross_to_net_short: float
    # §4 gravity
    beta: float
    pull_up: float
    pull_down: float
    gravity: float
    key_levels_long: tuple[KeyLevel, ...]
    key_levels_short: tuple[KeyLevel, ...]
    # §6 risk figures
    risk_band: float
    at_risk_share_long: float
    at_risk_share_short: float
    liq_to_depth_long: float
    liq_to_depth_short: float
    # §5 cascades (one per haircut, in config order)
    mark_transmission: float
    cascade_long: tuple[CascadeResult, ...]
    cascade_short: tuple[CascadeResult, ...]
    # §7 regime and votes
    efficiency_ratio: float | None
    trend: TrendState
    trend_direction: Direction
    vol_percentile: float | None
    vol_bucket: VolBucket
    votes: tuple[Vote, ...]
    bias: Direction
    vote_score: float
    agreement: float
    confidence: float
    divergence: bool
    divergent_signals: tuple[str, ...]

    def vote(self, name: str) -> Vote | None:
        """The named sub-signal's vote (``carry``, ``positioning``, ``gravity``, ...)."""
        return next((v for v in self.votes if v.name == name), None)

    def cascade(self, side: Side, haircut: float) -> CascadeResult | None:
        """The cascade of one side under one depth haircut, if it was simulated."""
        runs = self.cascade_long if side == "long" else self.cascade_short
        return next((r for r in runs if r.haircut == haircut), None)


def _age(now: float, as_of: float | None) -> float | None:
    """How old an input is; None (missing: the stale policy decides) when its time is absent
    or not a number. ``max(0.0, nan)`` is 0.0: a NaN time would read as perfectly fresh."""
    if as_of is None or not math.isfinite(as_of):
        return None
    return max(0.0, now - as_of)


MAX_SIGMA_D = 10.0
"""A daily σ above 1000 % is not a volatility (e^(2s) bands overflowed): it is not used."""


def _usable_sigma(x: float | None) -> TypeGuard[float]:
    return x is not None and math.isfinite(x) and 0.0 < x <= MAX_SIGMA_D


def _sigma(inp: SignalInputs, cfg: SignalConfig) -> tuple[float, str]:
    if _usable_sigma(inp.sigma_d):
        return float(inp.sigma_d), "input"
    if inp.closes is not None:
        rv = realized_vol(inp.closes, cfg.vol_window, cfg.closes_per_day)
        if _usable_sigma(rv):
            return rv, "closes"
    return cfg.default_sigma_d, "default"


def _flow(inp: SignalInputs, cfg: SignalConfig) -> FlowEstimate | None:
    h = inp.oi_history
    if h is None or h.ts.size == 0:
        return None
    return flow_estimate(
        h.oi_usd,
        h.taker_buy_share,
        as_of=float(h.ts[-1]),
        alpha=cfg.aggressor_weight,
        initial_long_share=cfg.initial_long_share,
    )


def build_map(inp: SignalInputs, flow: FlowEstimate | None, price: float) -> LiquidationMap:
    """The map from the OI history when the caller keeps none (replay over intervals)."""
    cfg = inp.config
    h = inp.oi_history
    start = float(h.ts[0]) if h is not None and h.ts.size else inp.now
    m = LiquidationMap(
        price,
        cfg.tiers,
        n_bins=cfg.n_bins,
        half_width=cfg.grid_half_width,
        half_life_h=cfg.half_life_h,
        max_leverage=cfg.max_leverage,
        as_of=start,
    )
    if h is not None and flow is not None and h.ts.size:
        m.replay(h.ts, flow.long_delta, flow.short_delta, h.entry_prices(), h.low, h.high)
    return m


def _book_in_mark_frame(book: Book | None, scale: float) -> tuple[FloatArray, ...]:
    if book is None:
        e = np.empty(0, dtype=np.float64)
        return e, e, e, e
    return book.bid_px * scale, book.bid_qty, book.ask_px * scale, book.ask_qty


def compute_snapshot(inputs: SignalInputs) -> SignalSnapshot:
    """Compose shared/signals.md §1-§7 for one symbol from plain inputs (pure; no I/O)."""
    inp, cfg, now = inputs, inputs.config, float(inputs.now)
    # Every age is measured from now and the mark's age is never absent: a NaN time would read
    # as a perfectly fresh input (max(0.0, nan) is 0.0), so neither may be unknown.
    for name, t in (("now", now), ("mark_as_of", float(inp.mark_as_of))):
        if not math.isfinite(t):
            raise SignalInputError(f"{name} must be a finite epoch time, got {t!r}")
    p = positive_price(inp.mark, "mark")
    spot = positive_price(inp.index, "spot index")

    # §1 carry
    funding = select_funding(
        inp.funding, now, cfg.funding_source, cfg.default_funding_interval_h, cfg.contract
    )
    carry = compute_carry(
        mark=p,
        spot_index=spot,
        funding=funding,
        impact_mid=inp.impact_mid,
        baseline_ann_bps=cfg.baseline_ann_bps,
        horizon_days=cfg.carry_horizon_days,
        threshold_bps=cfg.carry_threshold_bps,
        vote_on=cfg.carry_vote_on,
    )

    # §2 positioning
    flow = _flow(inp, cfg)
    if inp.positioning is not None:
        record: PositioningRecord | None = inp.positioning
    else:
        record = flow.record if flow is not None else None
    shown = record or PositioningRecord("none", "none", 0.0, 0.0, now)
    asym = asymmetry(shown)
    share = long_share(shown.long_usd, shown.short_usd)

    # total and side OI
    if inp.oi_history is not None and inp.oi_history.ts.size:
        total_oi = max(float(inp.oi_history.oi_usd[-1]), 0.0)
    elif inp.open_interest_usd is not None and math.isfinite(to_float(inp.open_interest_usd)):
        total_oi = max(to_float(inp.open_interest_usd), 0.0)
    else:
        total_oi = shown.long_usd + shown.short_usd
    if flow is not None:
        oi_long, oi_short, oi_src = flow.record.long_usd, flow.record.short_usd, "flow_estimate"
    elif record is not None and share is not None:
        oi_long, oi_short = total_oi * share, total_oi * (1.0 - share)
        oi_src = record.cohort
    else:
        oi_long, oi_short, oi_src = total_oi / 2.0, total_oi / 2.0, "even_split"

    # §3 map (the caller's map is only read: scaled() copies)
    liq_map = inp.liq_map if inp.liq_map is not None else build_map(inp, flow, p)
    sm: ScaledMap = liq_map.scaled(oi_long, oi_short, p, now)

    # vol and horizon
    sigma_d, sigma_src = _sigma(inp, cfg)
    s = max(sigma_d * math.sqrt(cfg.horizon_days), cfg.s_floor)

    # §4 gravity and key levels, book in the mark frame
    bid_px, bid_qty, ask_px, ask_qty = _book_in_mark_frame(inp.book, p / spot)
    grav = gravity(
        sm.centers,
        sm.long_usd,
        sm.short_usd,
        p,
        s,
        bid_px=bid_px,
        bid_qty=bid_qty,
        ask_px=ask_px,
        ask_qty=ask_qty,
        beta=cfg.beta,
    )
    kl_long = key_levels(
        sm.centers,
        sm.long_usd,
        p,
        s,
        "long",
        top=cfg.key_levels_top,
        percentile=cfg.key_level_percentile,
    )
    kl_short = key_levels(
        sm.centers,
        sm.short_usd,
        p,
        s,
        "short",
        top=cfg.key_levels_top,
        percentile=cfg.key_level_percentile,
    )

    # §6 risk figures
    band = cfg.risk_band_sigmas * s
    ars_long = at_risk_share(sm.centers, sm.long_usd, p, sm.side_oi_usd_long, band, "long")
    ars_short = at_risk_share(sm.centers, sm.short_usd, p, sm.side_oi_usd_short, band, "short")
    l2d_long = liq_to_depth(sm.centers, sm.long_usd, p, band, "long", bid_px, bid_qty)
    l2d_short = liq_to_depth(sm.centers, sm.short_usd, p, band, "short", ask_px, ask_qty)

    # §5 cascades (base units)
    vol_d = to_float(inp.daily_volume_base) if inp.daily_volume_base is not None else total_oi / p

    def cascades(
        side: Side, bpx: FloatArray, bq: FloatArray, base: FloatArray, oi: float
    ) -> tuple[CascadeResult, ...]:
        nz = base > 0.0
        return run_cascades(
            side,
            bpx,
            bq,
            sm.centers[nz],
            base[nz],
            price=p,
            side_oi=oi / p,
            sigma_d=sigma_d,
            daily_volume=vol_d,
            haircuts=cfg.haircuts,
            delta=cfg.shock_sigmas * s,
            q_min=cfg.q_min,
            max_steps=cfg.max_steps,
            mark_transmission=cfg.mark_transmission,
        )

    casc_long = cascades("long", bid_px, bid_qty, sm.long_base, sm.side_oi_usd_long)
    casc_short = cascades("short", ask_px, ask_qty, sm.short_base, sm.side_oi_usd_short)

    # §7 regime and votes
    regime: Regime = classify_regime(
        inp.closes if inp.closes is not None else to_array(None),
        er_window=cfg.er_window,
        er_trend_threshold=cfg.er_trend_threshold,
        vol_window=cfg.vol_window,
        periods_per_day=cfg.closes_per_day,
    )
    c_long = next(r for r in casc_long if r.haircut == cfg.cascade_vote_haircut)
    c_short = next(r for r in casc_short if r.haircut == cfg.cascade_vote_haircut)
    carry_figure = (
        carry.carry_excess_bps if carry.vote_on == "carry_excess" else (carry.funding_excess_bps)
    )
    share_txt = "undefined" if share is None else f"{share:.3f}"
    votes = (
        Vote(
            "carry",
            carry.vote,
            cfg.weight_carry,
            f"{carry.vote_on} {carry_figure:.1f} bps vs ±{carry.threshold_bps:.0f}",
        ),
        Vote(
            "positioning",
            positioning_vote(share, cfg.positioning_crowded_share),
            cfg.weight_positioning,
            f"long_share {share_txt} by {shown.cohort}",
        ),
        Vote(
            "gravity",
            gravity_vote(grav.gravity, cfg.gravity_vote_threshold),
            cfg.weight_gravity,
            f"gravity {grav.gravity:+.3f}",
        ),
        Vote(
            "cascade",
            cascade_vote(
                c_long.liquidated_share, c_short.liquidated_share, cfg.cascade_vote_threshold
            ),
            cfg.weight_cascade,
            f"liquidated_share long {c_long.liquidated_share:.3f} short "
            f"{c_short.liquidated_share:.3f} at {cfg.cascade_vote_haircut:.0%} haircut",
        ),
        Vote(
            "momentum",
            momentum_vote(regime),
            cfg.weight_momentum,
            f"{regime.trend} {regime.trend_direction}",
        ),
    )
    consensus = combine_votes(votes)

    ages = {
        "mark": _age(now, inp.mark_as_of),
        "book": _age(now, inp.book.as_of) if inp.book is not None else None,
        "funding": _age(now, carry.funding_as_of),
        "positioning": _age(now, record.as_of) if record is not None else None,
        "oi": _age(now, inp.oi_history.as_of) if inp.oi_history is not None else None,
        "closes": _age(now, inp.closes_as_of),
        "map": _age(now, liq_map.as_of) if (inp.liq_map is not None or flow is not None) else None,
    }
    age_mark = ages["mark"] = ages["mark"] or 0.0  # finite (checked above); None never
    return SignalSnapshot(
        symbol=inp.symbol,
        as_of=now,
        price=p,
        spot_index=spot,
        age_mark_s=age_mark,
        age_book_s=ages["book"],
        age_funding_s=ages["funding"],
        age_positioning_s=ages["positioning"],
        age_oi_s=ages["oi"],
        age_closes_s=ages["closes"],
        age_map_s=ages["map"],
        max_age_s=max(a for a in ages.values() if a is not None),
        price_ref=carry.price_ref,
        price_ref_source=carry.price_ref_source,
        basis_bps=carry.basis_bps,
        funding_rate=carry.funding_rate,
        funding_interval_h=carry.funding_interval_h,
        funding_source=carry.funding_source,
        funding_ann_bps=carry.funding_ann_bps,
        baseline_ann_bps=carry.baseline_ann_bps,
        funding_excess_bps=carry.funding_excess_bps,
        carry_horizon_days=carry.horizon_days,
        carry_ann_bps=carry.carry_ann_bps,
        carry_excess_bps=carry.carry_excess_bps,
        carry_vote_on=carry.vote_on,
        carry_threshold_bps=carry.threshold_bps,
        positioning_cohort=shown.cohort,
        positioning_method=shown.method,
        long_usd=shown.long_usd,
        short_usd=shown.short_usd,
        long_share=share,
        oi_asymmetry=asym.value,
        oi_asymmetry_status=asym.status,
        oi_asymmetry_label=asym.label,
        aggressor_weight=cfg.aggressor_weight,
        sigma_d=sigma_d,
        sigma_source=sigma_src,
        horizon_days=cfg.horizon_days,
        s=s,
        open_interest_usd=total_oi,
        side_oi_usd_long=sm.side_oi_usd_long,
        side_oi_usd_short=sm.side_oi_usd_short,
        side_oi_source=oi_src,
        map_gross_usd_long=sm.gross_usd_long,
        map_gross_usd_short=sm.gross_usd_short,
        map_net_usd_long=sm.net_usd_long,
        map_net_usd_short=sm.net_usd_short,
        map_gross_to_net_long=sm.gross_to_net_long,
        map_gross_to_net_short=sm.gross_to_net_short,
        beta=grav.beta,
        pull_up=grav.pull_up,
        pull_down=grav.pull_down,
        gravity=grav.gravity,
        key_levels_long=kl_long,
        key_levels_short=kl_short,
        risk_band=band,
        at_risk_share_long=ars_long,
        at_risk_share_short=ars_short,
        liq_to_depth_long=l2d_long,
        liq_to_depth_short=l2d_short,
        mark_transmission=cfg.mark_transmission,
        cascade_long=casc_long,
        cascade_short=casc_short,
        efficiency_ratio=regime.efficiency_ratio,
        trend=regime.trend,
        trend_direction=regime.trend_direction,
        vol_percentile=regime.vol_percentile,
        vol_bucket=regime.vol_bucket,
        votes=votes,
        bias=consensus.bias,
        vote_score=consensus.score,
        agreement=consensus.agreement,
        confidence=consensus.confidence,
        divergence=consensus.divergence,
        divergent_signals=consensus.divergent,
    )
