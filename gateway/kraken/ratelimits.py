"""Kraken spot rate limits (shared/kraken-api.md §7): the REST call counter per API key and the
matching-engine counter per pair, by verification tier, and the cancel penalty by order age.

Venue facts, so they live here once: the simulator enforces them and the gateway's REST client
models them to slow down before the venue refuses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class RateTier:
    """A leaky counter's ceiling and decay per second."""

    max: Decimal
    decay_per_s: Decimal


#: REST call counter per API key, by verification tier.
REST_TIERS: Mapping[str, RateTier] = {
    "starter": RateTier(Decimal(15), Decimal("0.33")),
    "intermediate": RateTier(Decimal(20), Decimal("0.5")),
    "pro": RateTier(Decimal(20), Decimal(1)),
}
#: Matching-engine counter per pair, by tier.
ENGINE_TIERS: Mapping[str, RateTier] = {
    "starter": RateTier(Decimal(60), Decimal(1)),
    "intermediate": RateTier(Decimal(125), Decimal("2.34")),
    "pro": RateTier(Decimal(180), Decimal("3.75")),
}
#: Cancel penalty by order age: (age upper bound in seconds, cost); older than the last is free.
CANCEL_AGE_COST: tuple[tuple[float, int], ...] = (
    (5.0, 8), (10.0, 6), (15.0, 5), (45.0, 4), (90.0, 2), (300.0, 1),
)
#: REST methods that do not touch the REST call counter (they use the engine counter instead).
ENGINE_COUNTED = frozenset({"AddOrder", "CancelOrder"})


def cancel_cost(age_s: float) -> int:
    """Engine-counter cost of cancelling an order ``age_s`` seconds old."""
    for bound, cost in CANCEL_AGE_COST:
        if age_s < bound:
            return cost
    return 0
