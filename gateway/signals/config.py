"""Every tunable of shared/signals.md in one validated, immutable object.

Validation happens at construction so a bad value (T10: ``m >= 1/L``) fails when the config is
loaded, not in the middle of a snapshot. Defaults are the doc's where it gives one; the others
are this module's choices, explained where they are used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gateway.signals.carry import ContractType, FundingSource, VoteOn
from gateway.signals.cascade import DEFAULT_HAIRCUTS
from gateway.signals.errors import SignalConfigError
from gateway.signals.liquidation_map import DEFAULT_TIERS, Tier, validate_tiers


@dataclass(frozen=True, slots=True)
class SignalConfig:
    """Signal parameters; field names follow shared/signals.md where it names them."""

    # §1 carry
    carry_horizon_days: float = 365.0
    baseline_ann_bps: float = 0.0
    carry_threshold_bps: float = 1000.0
    carry_vote_on: VoteOn = "carry_excess"
    funding_source: FundingSource = "last"
    default_funding_interval_h: float = 1.0
    contract: ContractType = "linear"
    # §2 positioning
    aggressor_weight: float = 1.0
    initial_long_share: float = 0.5
    # §3 map
    tiers: tuple[Tier, ...] = field(default=DEFAULT_TIERS)
    max_leverage: float = 50.0
    n_bins: int = 2000
    grid_half_width: float = 0.5
    half_life_h: float = 72.0
    # §4 gravity / horizon
    horizon_days: float = 1.0
    beta: float = 1.0
    default_sigma_d: float = 0.04
    s_floor: float = 1e-4
    key_levels_top: int = 3
    key_level_percentile: float = 90.0
    # §5 cascade
    shock_sigmas: float = 1.0
    q_min: float = 0.0
    max_steps: int = 50
    haircuts: tuple[float, ...] = DEFAULT_HAIRCUTS
    mark_transmission: float = 1.0
    # §6 risk
    risk_band_sigmas: float = 2.0
    # §7 regime and votes
    er_window: int = 20
    er_trend_threshold: float = 0.30
    vol_window: int = 20
    closes_per_day: float = 1.0
    positioning_crowded_share: float = 0.65
    gravity_vote_threshold: float = 0.25
    cascade_vote_threshold: float = 0.05
    cascade_vote_haircut: float = 0.5
    weight_carry: float = 1.0
    weight_positioning: float = 1.0
    weight_gravity: float = 1.0
    weight_cascade: float = 1.0
    weight_momentum: float = 1.0

    def __post_init__(self) -> None:
        validate_tiers(self.tiers, self.max_leverage)
        positive = {
            "carry_horizon_days": self.carry_horizon_days,
            "default_funding_interval_h": self.default_funding_interval_h,
            "grid_half_width": self.grid_half_width,
            "half_life_h": self.half_life_h,
            "horizon_days": self.horizon_days,
            "default_sigma_d": self.default_sigma_d,
            "s_floor": self.s_floor,
            "risk_band_sigmas": self.risk_band_sigmas,
            "closes_per_day": self.closes_per_day,
        }
        for name, v in positive.items():
            if not (math.isfinite(v) and v > 0.0):
                raise SignalConfigError(f"{name} must be a finite number > 0, got {v}")
        if self.default_sigma_d > 10.0:
            raise SignalConfigError(
                f"default_sigma_d is a daily σ, at most 10 (1000 %/day), got {self.default_sigma_d}"
            )
        unit = {
            "aggressor_weight": self.aggressor_weight,
            "initial_long_share": self.initial_long_share,
            "mark_transmission": self.mark_transmission,
            "er_trend_threshold": self.er_trend_threshold,
        }
        for name, v in unit.items():
            if not 0.0 <= v <= 1.0:
                raise SignalConfigError(f"{name} must be in [0, 1], got {v}")
        if not 0.5 < self.positioning_crowded_share <= 1.0:
            raise SignalConfigError("positioning_crowded_share must be in (0.5, 1]")
        if any(not 0.0 <= h < 1.0 for h in self.haircuts) or not self.haircuts:
            raise SignalConfigError(f"haircuts must be non-empty, each in [0, 1): {self.haircuts}")
        if self.cascade_vote_haircut not in self.haircuts:
            raise SignalConfigError("cascade_vote_haircut must be one of the simulated haircuts")
        if self.n_bins < 16 or self.max_steps < 1 or self.key_levels_top < 1:
            raise SignalConfigError("n_bins >= 16, max_steps >= 1 and key_levels_top >= 1")
        if self.er_window < 2 or self.vol_window < 2:
            raise SignalConfigError("er_window and vol_window must be >= 2")
        if not 0.0 < self.key_level_percentile < 100.0:
            raise SignalConfigError("key_level_percentile must be in (0, 100)")
        if self.beta < 0.0 or self.shock_sigmas < 0.0 or self.q_min < 0.0:
            raise SignalConfigError("beta, shock_sigmas and q_min must be >= 0")
        weights = (
            self.weight_carry,
            self.weight_positioning,
            self.weight_gravity,
            self.weight_cascade,
            self.weight_momentum,
        )
        if any(not (math.isfinite(w) and w >= 0.0) for w in weights):
            raise SignalConfigError(f"vote weights must be finite and >= 0, got {weights}")


DEFAULT_CONFIG = SignalConfig()
