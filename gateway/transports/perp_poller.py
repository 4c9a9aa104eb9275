"""Polls Kraken Futures for perp tickers and funding history and hands them to the signal side.

Why polling REST (and not only the WS ticker feed): the REST tickers carry everything the carry
and OI figures need in one call for all perps, funding *history* is REST-only, and a poller is
trivially restartable. Its contract with the rest of the gateway:

* ``on_update(ticker, funding_history)`` is called once per symbol per successful cycle, from the
  poller's daemon thread; ``funding_history`` is the latest successfully fetched history (possibly
  from an earlier cycle, and empty until the first fetch succeeds);
* tickers are fetched every ``interval_s``; funding history every ``funding_every`` cycles (it
  changes once per settlement, hourly), and again on the next cycle after a failed fetch;
* nothing raises out of the thread: a failed cycle is logged and the next one waits with
  exponential backoff and jitter (capped at ``max_backoff_s``), so a venue outage neither kills
  the poller nor hammers the venue when it comes back;
* ``last_update(symbol)`` is the wall-clock time of the last update delivered *and accepted* by
  ``on_update`` (a callback that raises does not count), which is what staleness checks need:
  "the signal side last got fresh data at t".

Next to the WS ticker feed (``gateway.transports.kraken_futures_ws``), ``live_elsewhere(symbol)``
says which symbols the feed currently carries: for those the poller keeps fetching funding
history (REST-only, and what the feed delivers with each ticker through ``funding_history``) but
delivers no REST ticker, and when every symbol is live it skips the tickers call altogether. A
symbol whose feed goes quiet is polled again on the next cycle; ``wake()`` runs that cycle at once
(the feed calls it on a disconnect), so with a long ``interval_s`` the REST fallback still starts
within one HTTP round trip.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from gateway.transports.kraken_futures_rest import FundingRate, PerpTicker

__all__ = ["PerpPoller", "PerpSource"]

log = logging.getLogger("fixgw.transports.perp_poller")


class PerpSource(Protocol):
    """What the poller needs from a client (``KrakenFuturesRest`` satisfies it)."""

    def tickers(self) -> dict[str, PerpTicker]: ...

    def historical_funding(self, symbol: str) -> list[FundingRate]: ...


class PerpPoller:
    """Daemon-thread poller of perp tickers and funding history (see module docstring)."""

    def __init__(
        self,
        client: PerpSource,
        symbols: Sequence[str],
        interval_s: float,
        on_update: Callable[[PerpTicker, list[FundingRate]], None],
        *,
        funding_every: int = 10,
        max_backoff_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        name: str = "perp-poller",
        live_elsewhere: Callable[[str], bool] | None = None,
    ) -> None:
        if not symbols:
            raise ValueError("PerpPoller needs at least one symbol")
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        if funding_every < 1:
            raise ValueError("funding_every must be >= 1")
        self.client = client
        self.symbols: tuple[str, ...] = tuple(dict.fromkeys(s.upper() for s in symbols))
        self.interval_s = float(interval_s)
        self.on_update = on_update
        self.funding_every = funding_every
        self.max_backoff_s = max(float(max_backoff_s), self.interval_s)
        self._clock = clock
        self._name = name
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.live_elsewhere = live_elsewhere
        self.skipped = 0  # ticker deliveries left to another feed (live_elsewhere)
        self._thread: threading.Thread | None = None
        self._funding: dict[str, list[FundingRate]] = {}
        self._funding_due: set[str] = set(self.symbols)
        self._last_update: dict[str, float] = {}
        self._last_funding: dict[str, float] = {}
        self._failures = 0
        self._last_error: str | None = None
        self._cycles = 0

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start polling (the first cycle runs at once). Idempotent; restartable after stop."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Run the next cycle now instead of after the interval (e.g. the WS feed went down)."""
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the thread to finish and wait up to ``timeout_s`` (an in-flight HTTP call may run
        to its own timeout; the thread is a daemon, so it never blocks interpreter exit)."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    # -- observations ------------------------------------------------------------------------

    def last_update(self, symbol: str) -> float | None:
        """Epoch seconds of the last update of ``symbol`` accepted by ``on_update``."""
        with self._lock:
            return self._last_update.get(symbol)

    def last_updates(self) -> dict[str, float]:
        """All symbols' last accepted update times (a copy)."""
        with self._lock:
            return dict(self._last_update)

    def funding_history(self, symbol: str) -> list[FundingRate]:
        """The latest successfully fetched funding history of ``symbol`` (empty until one)."""
        with self._lock:
            return list(self._funding.get(symbol.upper(), ()))

    def last_funding_update(self, symbol: str) -> float | None:
        """Epoch seconds of the last successful funding-history fetch of ``symbol``."""
        with self._lock:
            return self._last_funding.get(symbol)

    @property
    def consecutive_failures(self) -> int:
        """Failed cycles in a row (0 after any good cycle)."""
        with self._lock:
            return self._failures

    @property
    def last_error(self) -> str | None:
        """The most recent failure's description (kept after recovery, for diagnostics)."""
        with self._lock:
            return self._last_error

    @property
    def cycles(self) -> int:
        """Cycles started, good or bad."""
        with self._lock:
            return self._cycles

    # -- work --------------------------------------------------------------------------------

    def poll_once(self) -> int:
        """Run one cycle in the caller's thread; returns how many symbols were delivered.

        Raises if the tickers cannot be fetched (the thread loop turns that into backoff).
        """
        with self._lock:
            cycle = self._cycles
            self._cycles += 1
        if cycle % self.funding_every == 0:
            with self._lock:
                self._funding_due.update(self.symbols)
        live = self.live_elsewhere
        elsewhere = {s for s in self.symbols if live is not None and live(s)}
        tickers = self.client.tickers() if len(elsewhere) < len(self.symbols) else {}
        delivered = 0
        for symbol in self.symbols:
            if symbol in elsewhere:
                self._refresh_funding(symbol)  # the other feed delivers it with its tickers
                with self._lock:
                    self.skipped += 1
                continue
            ticker = tickers.get(symbol)
            if ticker is None:
                log.warning("perp poller: %s not in the venue's tickers", symbol)
                continue
            history = self._refresh_funding(symbol)
            try:
                self.on_update(ticker, history)
            except Exception:
                log.exception("perp poller: on_update failed for %s", symbol)
                continue
            with self._lock:
                self._last_update[symbol] = self._clock()
            delivered += 1
        return delivered

    def _refresh_funding(self, symbol: str) -> list[FundingRate]:
        with self._lock:
            due = symbol in self._funding_due
        if due:
            try:
                history = self.client.historical_funding(symbol)
            except Exception as exc:  # keep the last good history; retry next cycle
                log.warning("perp poller: funding history for %s failed: %s", symbol, exc)
                with self._lock:
                    self._last_error = f"{symbol} funding: {exc}"
            else:
                with self._lock:
                    self._funding[symbol] = history
                    self._funding_due.discard(symbol)
                    self._last_funding[symbol] = self._clock()
        with self._lock:
            return list(self._funding.get(symbol, ()))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:
                with self._lock:
                    self._failures += 1
                    failures = self._failures
                    self._last_error = str(exc)
                backoff = min(self.interval_s * 2.0 ** min(failures, 16), self.max_backoff_s)
                delay = random.uniform(backoff / 2.0, backoff)  # jitter: no synchronized retries
                log.warning("perp poller: cycle failed (%d in a row), next try in %.2fs: %s",
                            failures, delay, exc)
            else:
                with self._lock:
                    if self._failures:
                        log.info("perp poller: recovered after %d failed cycles", self._failures)
                    self._failures = 0
                delay = self.interval_s
            self._wake.wait(delay)
            self._wake.clear()
