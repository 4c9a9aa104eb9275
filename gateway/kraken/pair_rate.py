"""The gateway's model of Kraken's per-pair trading counter (kraken-api.md §7), one per API key
for every API the key trades through.

Kraken keeps one matching-engine counter per account and pair, whatever the API: an AddOrder
over REST and an ``add_order`` over WebSocket fill the same counter, and a cancel or amend costs
by the age of the order whichever API placed it and whichever cancels it. A model that only
REST's own cancels and amends were charged to let a burst split between WS and REST through
faster than the venue takes it, and charged a cancel of a WS-placed order nothing (the REST side
had never heard of the order). So the REST client owns one model and the WS order paths charge
it too (``gateway.routing.failover``).

An order's age is counted from when the model learned its txid (the venue's acknowledgement,
over REST or WS; failing that its ``executions`` item or a lookup by ClOrdID): a little later
than the venue's own clock, so a penalty estimate errs high, never low. Until the txid is known
an order is found by the ClOrdID it was charged under, aged from the send.

Charged, not refused, for a cancel or amend (refusing a risk-reducing request on an estimate is
worse than letting the venue decide); an add is refused when it would pass the ceiling less the
headroom (the caller reports it as a local refusal). The model is a floor: FIX traffic and other
processes on the key are not seen. Thread-safe (REST calls, WS acks and the executions feed
arrive on different threads); each call is O(1).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from gateway.kraken.ratelimits import DecayingCounter, RateTier, amend_cost, cancel_cost
from gateway.kraken.symbols import parse_spot_pair

__all__ = ["RATE_LIMITED", "PairRateModel"]

#: Kraken's answer when the pair's trading counter is full (kraken-api.md §7).
RATE_LIMITED = "EOrder:Rate limit exceeded"

_V = TypeVar("_V")


class _Placed:
    """One order the model knows: its pair and when its age starts (§7: creation or last
    amend). Shared by the txid and ClOrdID indexes, so an amend restarts it for both."""

    __slots__ = ("pair", "since")

    def __init__(self, pair: str, since: float) -> None:
        self.pair = pair
        self.since = since


class PairRateModel:
    """Per-pair engine counters of one API key, and the orders whose cancel or amend they
    charge by age. Pairs are taken in any spot form (``BTC/USD``, ``XBTUSD``...)."""

    def __init__(self, tier: RateTier, *, headroom: float = 0.5,
                 clock: Callable[[], float] = time.monotonic,
                 remembered_max: int = 100_000) -> None:
        self._tier = tier
        self._headroom = headroom
        self._clock = clock
        #: Orders remembered at most, per index (oldest dropped first).
        self.remembered_max = remembered_max
        self._lock = threading.Lock()
        self._counters: dict[str, DecayingCounter] = {}
        self._by_txid: dict[str, _Placed] = {}
        self._by_clid: dict[str, _Placed] = {}
        self._txid_of: dict[str, str] = {}  # ClOrdID -> txid, once learned

    # -- adds -------------------------------------------------------------------------------

    def try_add(self, pair: str, cl_ord_id: str | None = None) -> float:
        """Charge one order add on `pair`: 0.0 when charged, else the seconds until it fits
        (nothing charged; the caller does not send). A `cl_ord_id` makes the order findable
        for a cancel before its txid is known."""
        key = parse_spot_pair(pair).pair
        with self._lock:
            c = self._counter(key)
            wait = c.wait_time(1, c.max - self._headroom)
            if wait > 0:
                return wait
            c.add(1)
            if cl_ord_id is not None and cl_ord_id not in self._txid_of:
                self._keep(self._by_clid, cl_ord_id, _Placed(key, self._clock()))
            return 0.0

    def learn(self, txid: str, cl_ord_id: str | None = None, pair: str | None = None) -> None:
        """The venue acknowledged an order as `txid`: its age starts now. Known by the
        ClOrdID it was charged under, or else by `pair` (an order the model did not see
        charged: a restart, another path); with neither, nothing is kept. Learning a txid a
        second time (the ack, then the feed's ``new``) keeps its first age."""
        with self._lock:
            if txid in self._by_txid:
                return
            placed = self._by_clid.get(cl_ord_id) if cl_ord_id is not None else None
            if placed is None:
                if pair is None:
                    return
                placed = _Placed(parse_spot_pair(pair).pair, self._clock())
                if cl_ord_id is not None:
                    self._keep(self._by_clid, cl_ord_id, placed)
            placed.since = self._clock()
            self._keep(self._by_txid, txid, placed)
            if cl_ord_id is not None:
                self._keep(self._txid_of, cl_ord_id, txid)

    def txid_of(self, cl_ord_id: str) -> str | None:
        with self._lock:
            return self._txid_of.get(cl_ord_id)

    # -- cancels and amends -------------------------------------------------------------------

    def charge_cancel(self, txid: str | None = None, cl_ord_id: str | None = None) -> None:
        """A cancel of a known order costs by its age (§7); an unknown one is not charged."""
        self._charge_by_age(txid, cl_ord_id, cancel_cost)

    def charge_amend(self, txid: str | None = None, cl_ord_id: str | None = None) -> None:
        """An amend costs +1 plus an age part (§7), charged, never refused locally."""
        self._charge_by_age(txid, cl_ord_id, amend_cost)

    def amended(self, txid: str | None = None, cl_ord_id: str | None = None) -> None:
        """§7 ages an order from its creation *or last amend*: later costs count from now."""
        with self._lock:
            placed = self._find(txid, cl_ord_id)
            if placed is not None:
                placed.since = self._clock()

    def _charge_by_age(self, txid: str | None, cl_ord_id: str | None,
                       cost: Callable[[float], int]) -> None:
        with self._lock:
            placed = self._find(txid, cl_ord_id)
            if placed is not None:
                self._counter(placed.pair).add(cost(self._clock() - placed.since))

    # -- the venue's word -----------------------------------------------------------------------

    def add_refused(self, error: str, pair: str) -> None:
        """An order add on `pair` got Kraken's `error`. ``EOrder:Rate limit exceeded`` says the
        pair's counter is full while the model disagreed (traffic it cannot see: FIX, another
        process): the model is filled, so the next add waits long enough, over REST or WS
        alike. Other errors say nothing about the counter."""
        if not error.startswith(RATE_LIMITED):
            return
        with self._lock:
            c = self._counter(parse_spot_pair(pair).pair)
            c.add(max(0.0, c.max - c.value()))

    def value(self, pair: str) -> float:
        """The modelled counter of `pair` now (metrics, tests)."""
        with self._lock:
            return self._counter(parse_spot_pair(pair).pair).value()

    # -- internals (caller holds the lock) -------------------------------------------------------

    def _counter(self, pair: str) -> DecayingCounter:
        c = self._counters.get(pair)
        if c is None:
            c = self._counters[pair] = DecayingCounter(self._tier, self._clock)
        return c

    def _find(self, txid: str | None, cl_ord_id: str | None) -> _Placed | None:
        placed = self._by_txid.get(txid) if txid is not None else None
        if placed is None and cl_ord_id is not None:
            placed = self._by_clid.get(cl_ord_id)
        return placed

    def _keep(self, memory: dict[str, _V], key: str, value: _V) -> None:
        """Bounded: past `remembered_max` the oldest entry goes (at worst an old order's
        cancel is not charged)."""
        memory[key] = value
        if len(memory) > self.remembered_max:
            memory.pop(next(iter(memory)))
