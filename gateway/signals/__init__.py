"""Structural market signals (carry, positioning, liquidation gravity, cascade simulation,
regime and votes) computed with numpy, as defined in shared/signals.md.

May import: numpy and the standard library only; signals are computed off the order path.

Layout (one job per module): ``carry`` (§1), ``positioning`` (§2), ``liquidation_map`` (§3),
``gravity`` (§4), ``cascade`` (§5), ``risk_figures`` (§6), ``regime`` (§7), ``config`` (every
tunable, validated), ``inputs`` (plain immutable inputs) and ``snapshot`` (the pure
``compute_snapshot`` and the frozen ``SignalSnapshot`` the gate reads).

Only ``LiquidationMap`` holds state (it accumulates OI over days); a caller owns one per symbol
and passes it in ``SignalInputs.liq_map``; snapshots only read it through copies.

Where the doc leaves a choice, the choice is documented in the docstring of the module that
makes it; the main ones: the carry vote includes the basis term at horizon H (so §9 T4's vote
flips with H), the flow estimate keeps ``long + short = OI``, ratios of notionals floor their
denominator at $1 (finite on empty books and zero-OI sides), ``map_gross_to_net`` is
``max(1, gross / side OI)``, cascades consume the book across waves and never move the trigger
back, and the asymmetry's "inf"/"undefined" cases are a status string, never an inf/NaN float.
"""

from gateway.signals.carry import (
    CarryReading,
    FundingReading,
    FundingRecord,
    basis_bps,
    carry_ann_bps,
    carry_vote,
    compute_carry,
    funding_ann_bps,
    funding_excess_bps,
    infer_intervals_h,
    intervals_per_year,
    relative_rate,
    select_funding,
)
from gateway.signals.cascade import CascadeResult, run_cascades, simulate_cascade
from gateway.signals.config import DEFAULT_CONFIG, SignalConfig
from gateway.signals.errors import SignalConfigError, SignalInputError
from gateway.signals.gravity import (
    GravityReading,
    KeyLevel,
    gravity,
    key_levels,
    touch_probabilities,
    touch_probability,
)
from gateway.signals.inputs import Book, OIHistory, SignalInputs
from gateway.signals.liquidation_map import (
    DEFAULT_TIERS,
    LiquidationMap,
    LogGrid,
    ScaledMap,
    Tier,
    long_liq_price,
    short_liq_price,
    validate_tiers,
)
from gateway.signals.positioning import (
    Asymmetry,
    FlowEstimate,
    PositioningRecord,
    asymmetry,
    flow_estimate,
    long_share,
    oi_asymmetry,
)
from gateway.signals.regime import Consensus, Regime, Vote, classify_regime, combine_votes
from gateway.signals.risk_figures import at_risk_share, liq_to_depth, map_gross_to_net
from gateway.signals.snapshot import SignalSnapshot, build_map, compute_snapshot
from gateway.signals.types import Direction, Side

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_TIERS",
    "Asymmetry",
    "Book",
    "CarryReading",
    "CascadeResult",
    "Consensus",
    "Direction",
    "FlowEstimate",
    "FundingReading",
    "FundingRecord",
    "GravityReading",
    "KeyLevel",
    "LiquidationMap",
    "LogGrid",
    "OIHistory",
    "PositioningRecord",
    "Regime",
    "ScaledMap",
    "Side",
    "SignalConfig",
    "SignalConfigError",
    "SignalInputError",
    "SignalInputs",
    "SignalSnapshot",
    "Tier",
    "Vote",
    "asymmetry",
    "at_risk_share",
    "basis_bps",
    "build_map",
    "carry_ann_bps",
    "carry_vote",
    "classify_regime",
    "combine_votes",
    "compute_carry",
    "compute_snapshot",
    "flow_estimate",
    "funding_ann_bps",
    "funding_excess_bps",
    "gravity",
    "infer_intervals_h",
    "intervals_per_year",
    "key_levels",
    "liq_to_depth",
    "long_liq_price",
    "long_share",
    "map_gross_to_net",
    "oi_asymmetry",
    "relative_rate",
    "run_cascades",
    "select_funding",
    "short_liq_price",
    "simulate_cascade",
    "touch_probabilities",
    "touch_probability",
    "validate_tiers",
]
