"""Liquidation cascade simulation against a visible book (shared/signals.md §5).

Each wave fires every untriggered cluster at or past the trigger price, sells (longs) or buys
(shorts) that quantity into the book from the touch, and moves the trigger to the last level
touched. Waves are a Python loop (≤ ``max_steps``); inside a wave everything is two
``searchsorted`` calls on precomputed cumulative sums, so a wave costs O(log n).

Choices where §5 is silent:

* The book is consumed across waves (a bid hit by wave 1 is gone for wave 2).
* The trigger never moves back toward the price: if a wave's sweep ends short of the trigger
  (the shock already took the mark further), the trigger stays.
* ``mark_transmission`` τ moves the trigger a fraction of the way in log price from where it is
  to where the sweep ended: ``x <- x (b/x)^τ`` (τ = 1: ``x <- b`` as in §5; τ = 0: nothing
  beyond the shock fires).
* Past the book's last level, the *cumulative* unfilled quantity is priced from that level by
  the square-root law ``Δx/x = 0.7 σ_d sqrt(Q_rest/V_d)`` (cumulative, so splitting a flow into
  waves does not inflate its impact); the move is capped at ``max_impact`` (99 %) so a price
  never reaches 0; ``V_d <= 0`` means "no volume known" and takes the cap. An empty book is
  priced from the reference price.
* A wave fires only when ``Q > 0`` and ``Q >= q_min``. ``max_steps`` stops before a 51st wave
  that would still fire. Step ratios are ``wave[i+1] / wave[i]`` between waves that fired (the
  terminal "nothing fired" is not a ratio); with fewer than two waves there is no ratio and the
  cascade is not self-sustaining. Amplification is 0 when no wave fired.
* ``liquidated_share = min(1, liquidated / side OI)``; with no OI it is 0 if nothing fired and 1
  otherwise (clusters then describe positions the OI no longer has).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np

from gateway.signals._num import ArrayIn, Num, positive_price, to_array, to_float
from gateway.signals.errors import SignalConfigError, SignalInputError
from gateway.signals.types import Side

StopReason: TypeAlias = Literal["no further level reached", "max_steps"]
DEFAULT_HAIRCUTS: tuple[float, ...] = (0.0, 0.5, 0.9)


@dataclass(frozen=True, slots=True)
class CascadeResult:
    """Everything §5 asks a simulation to report, plus the scenario that produced it."""

    side: Side
    haircut: float
    mark_transmission: float
    shock_price: float
    liquidated_qty: float
    liquidated_share: float
    end_price: float
    book_end_price: float
    steps: int
    stop_reason: StopReason
    amplification: float
    wave_sizes: tuple[float, ...]
    step_ratios: tuple[float, ...]
    self_sustaining: bool
    book_exhausted: bool


def simulate_cascade(
    side: Side,
    book_px: ArrayIn,
    book_qty: ArrayIn,
    cluster_px: ArrayIn,
    cluster_qty: ArrayIn,
    *,
    price: Num,
    side_oi: Num,
    sigma_d: float,
    daily_volume: Num,
    shock_price: Num | None = None,
    delta: float | None = None,
    q_min: float = 0.0,
    max_steps: int = 50,
    haircut: float = 0.0,
    mark_transmission: float = 1.0,
    impact_coef: float = 0.7,
    max_impact: float = 0.99,
) -> CascadeResult:
    """Simulate one side's cascade (§5). ``book_*``: bids for longs, asks for shorts; base units.

    The shock is ``shock_price`` when given, else the further of ``price·e^∓δ`` (δ defaults to
    ``sigma_d``, i.e. 1·s at h = 1 d) and the nearest cluster beyond the price.
    """
    if not 0.0 <= haircut <= 1.0:
        raise SignalConfigError(f"depth haircut must be in [0, 1], got {haircut}")
    if not 0.0 <= mark_transmission <= 1.0:
        raise SignalConfigError(f"mark_transmission τ must be in [0, 1], got {mark_transmission}")
    if max_steps < 1:
        raise SignalConfigError(f"max_steps must be >= 1, got {max_steps}")
    sgn = -1.0 if side == "long" else 1.0  # direction the price moves in this cascade
    p = positive_price(price, "price")
    oi = max(to_float(side_oi), 0.0)
    vol_d = to_float(daily_volume)

    bpx, bq = to_array(book_px), to_array(book_qty)
    cpx, cq = to_array(cluster_px), to_array(cluster_qty)
    if bpx.shape != bq.shape or cpx.shape != cq.shape:
        raise SignalInputError("price and quantity arrays must have equal lengths")
    keep_b = (bq > 0.0) & (bpx > 0.0) & np.isfinite(bq) & np.isfinite(bpx)
    bpx, bq = bpx[keep_b], bq[keep_b] * (1.0 - haircut)
    order = np.argsort(sgn * bpx, kind="stable")  # sweep order: from the touch outward
    with np.errstate(over="ignore"):
        bpx, cum_b = bpx[order], np.cumsum(bq[order])
    book_total = float(cum_b[-1]) if cum_b.size else 0.0

    keep_c = (cq > 0.0) & (cpx > 0.0) & np.isfinite(cq) & np.isfinite(cpx)
    cpx, cq = cpx[keep_c], cq[keep_c]
    c_order = np.argsort(sgn * cpx, kind="stable")  # firing order: nearest first
    c_key = sgn * cpx[c_order]  # ascending; "at or past x" is c_key <= sgn*x
    with np.errstate(over="ignore"):
        cum_c = np.concatenate(([0.0], np.cumsum(cq[c_order])))
    if not (math.isfinite(book_total) and math.isfinite(float(cum_c[-1]))):
        # inf - inf waves were NaN: every step NaN, liquidated_share min(1, nan) = 1.0.
        raise SignalInputError("book or cluster quantities overflow float64")

    if shock_price is not None:
        x = positive_price(shock_price, "shock price")
    else:
        d = sigma_d if delta is None else delta
        try:
            x = p * math.exp(sgn * d)
        except OverflowError:
            msg = f"shock e^{d:g} overflows float64 (sigma_d {sigma_d:g})"
            raise SignalInputError(msg) from None
        beyond = np.flatnonzero(c_key > sgn * p)
        if beyond.size:
            nearest = float(cpx[c_order][beyond[0]])
            if sgn * nearest > sgn * x:
                x = nearest
    shock = x

    waves: list[float] = []
    fired = 0
    sold = 0.0
    exhausted = False
    book_end = p
    stop: StopReason = "no further level reached"
    while True:
        ptr = int(np.searchsorted(c_key, sgn * x, side="right"))
        q = float(cum_c[ptr] - cum_c[fired])
        if q <= 0.0 or q < q_min:
            break
        if len(waves) >= max_steps:
            stop = "max_steps"
            break
        fired = ptr
        waves.append(q)
        sold += q
        rest = sold - book_total
        dust = 1e-12 * max(book_total, 1.0)
        if bpx.size and rest <= dust:  # float dust is not exhaustion
            # Nor is it the next level: a sale that exactly fills levels 1..k in decimals can
            # exceed their float cumsum (0.1 + 0.2 > 0.3) and swept level k+1 with its clusters.
            i = min(int(np.searchsorted(cum_b, sold - dust, side="left")), bpx.size - 1)
            b = float(bpx[i])
        else:
            exhausted = True
            anchor = float(bpx[-1]) if bpx.size else p
            impact = impact_coef * sigma_d * math.sqrt(rest / vol_d) if vol_d > 0.0 else math.inf
            b = anchor * (1.0 + sgn * min(impact, max_impact))
        book_end = b
        if sgn * b > sgn * x:
            # τ = 1 is exactly "x <- the last level touched": x·(b/x)^1 can round past b and
            # leave the clusters resting at b unfired.
            x = b if mark_transmission == 1.0 else x * (b / x) ** mark_transmission

    total = math.fsum(waves)
    ratios = tuple(waves[i + 1] / waves[i] for i in range(len(waves) - 1))
    share = min(1.0, total / oi) if oi > 0.0 else (0.0 if total == 0.0 else 1.0)
    return CascadeResult(
        side=side,
        haircut=haircut,
        mark_transmission=mark_transmission,
        shock_price=shock,
        liquidated_qty=total,
        liquidated_share=share,
        end_price=x,
        book_end_price=book_end,
        steps=len(waves),
        stop_reason=stop,
        amplification=total / waves[0] if waves else 0.0,
        wave_sizes=tuple(waves),
        step_ratios=ratios,
        self_sustaining=bool(ratios) and statistics.median(ratios) >= 1.0,
        book_exhausted=exhausted,
    )


def run_cascades(
    side: Side,
    book_px: ArrayIn,
    book_qty: ArrayIn,
    cluster_px: ArrayIn,
    cluster_qty: ArrayIn,
    *,
    price: Num,
    side_oi: Num,
    sigma_d: float,
    daily_volume: Num,
    haircuts: Sequence[float] = DEFAULT_HAIRCUTS,
    delta: float | None = None,
    q_min: float = 0.0,
    max_steps: int = 50,
    mark_transmission: float = 1.0,
) -> tuple[CascadeResult, ...]:
    """§5: the same cascade under each depth haircut (default 0, 50 and 90 % of the book)."""
    bpx, bq, cpx, cq = (to_array(a) for a in (book_px, book_qty, cluster_px, cluster_qty))
    return tuple(
        simulate_cascade(
            side,
            bpx,
            bq,
            cpx,
            cq,
            price=price,
            side_oi=side_oi,
            sigma_d=sigma_d,
            daily_volume=daily_volume,
            delta=delta,
            q_min=q_min,
            max_steps=max_steps,
            haircut=h,
            mark_transmission=mark_transmission,
        )
        for h in haircuts
    )
