"""Kraken spot rate limits (shared/kraken-api.md §7): the REST call counter per API key and the
matching-engine counter per pair, by verification tier, and the cancel penalty by order age.

Venue facts, so they live here once: the simulator enforces them and the gateway's REST client
models them to slow down before the venue refuses.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
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
#: Amend penalty by order age (on top of the fixed +1), same shape as ``CANCEL_AGE_COST``.
AMEND_AGE_COST: tuple[tuple[float, int], ...] = ((5.0, 3), (10.0, 2), (15.0, 1))
#: REST methods that do not touch the REST call counter (they use the engine counter instead).
ENGINE_COUNTED = frozenset({"AddOrder", "CancelOrder"})


def _age_part(table: tuple[tuple[float, int], ...], age_s: float) -> int:
    """The penalty `table` gives an order ``age_s`` seconds old (0 past its last bound)."""
    for bound, cost in table:
        if age_s < bound:
            return cost
    return 0


def cancel_cost(age_s: float) -> int:
    """Engine-counter cost of cancelling an order ``age_s`` seconds old."""
    return _age_part(CANCEL_AGE_COST, age_s)


def amend_cost(age_s: float) -> int:
    """Engine-counter cost of amending an order ``age_s`` seconds old: +1 fixed plus the age
    part (kraken-api.md §7)."""
    return 1 + _age_part(AMEND_AGE_COST, age_s)


class DecayingCounter:
    """Kraken's leaky counter: value decays linearly to 0; ``try_add`` refuses above ``max``.

    Shared by the simulator (which refuses) and the gateway client (which waits or refuses
    first), so both sides model exactly the same arithmetic. Floats are fine here: this is a
    rate estimate, not money. Not thread-safe on its own; callers hold a lock.
    """

    __slots__ = ("_clock", "_t", "_v", "decay", "max")

    def __init__(self, tier: RateTier, clock: Callable[[], float] = time.monotonic) -> None:
        self.max = float(tier.max)
        self.decay = float(tier.decay_per_s)
        self._clock = clock
        self._v = 0.0
        self._t = clock()

    def value(self) -> float:
        now = self._clock()
        self._v = max(0.0, self._v - (now - self._t) * self.decay)
        self._t = now
        return self._v

    def try_add(self, cost: float, limit: float | None = None) -> bool:
        """Charge ``cost`` unless that would exceed ``limit`` (default ``max``)."""
        ceiling = self.max if limit is None else limit
        if self.value() + cost > ceiling + 1e-9:
            return False
        self._v += cost
        return True

    def add(self, cost: float) -> None:
        """Charge unconditionally (a cost the venue takes even when it refuses)."""
        self.value()
        self._v += cost

    def wait_time(self, cost: float, limit: float | None = None) -> float:
        """Seconds until ``cost`` fits under ``limit`` (0 if it fits now)."""
        ceiling = self.max if limit is None else limit
        excess = self.value() + cost - ceiling
        return 0.0 if excess <= 1e-9 else excess / self.decay
