"""Keeps each perp's signal inputs and recomputes its ``SignalSnapshot`` off the order path.

Why a runner of its own: ``gateway.signals.compute_snapshot`` is pure and takes a few ms, the
pre-trade gate must only *read* (shared/signals.md §8), and the inputs arrive on four different
threads (perp poller, market-data thread, gRPC loop, feeds). So every producer only stores its
input and marks the symbol dirty; one worker thread computes, at most every ``min_interval_s``
per symbol, and publishes the result by replacing a dict (``latest`` is a lock-free ``dict.get``
on the gate's side, never a half-built snapshot).

Inputs per perp symbol:

* perp ticker + funding history: ``on_perp_update`` (the ``PerpPoller`` callback, and the
  Kraken Futures WS ticker feed's, each marking its ``source``: "rest" or "ws"). Funding
  records are the history's *relative* rates plus the ticker's prediction (marked
  ``predicted``; from the WS feed, the latest history record takes the ticker's current
  relative rate, which is fresher); mark, index, total OI (USD at mark) and 24 h volume come
  from the ticker, and the mark's time is when we received it (the ticker has no mark
  timestamp), so the snapshot's mark age is the feed's freshness.
* the spot book of the mapped spot symbol (``perps``: perp -> spot), read on the worker; the MD
  hooks ``on_update``/``on_snapshot``/``on_integrity`` only set the dirty flag.
* positioning records: ``push_positioning`` (gRPC ``PositioningService.Push``).
* OI intervals: ``push_oi_intervals`` from feeds/backfills, and one interval per ticker poll
  (at most one per ``oi_row_min_interval_s``: see below).

Choices the brief leaves open:

* Poll-derived interval: between two polls the OI change is ``OI_now - OI_prev`` (venue OI, USD
  at mark), entered at the spot book's mid *rescaled to the mark frame* (``mid × mark/index``,
  the frame ``compute_snapshot`` compares levels in; the bare mark when the book is empty), with
  low/high spanning the two marks and the entry, and an unknown taker share (NaN: §2's estimator
  gives it no tilt). Two tickers cannot say who opened, so these intervals grow the map but never
  the asymmetry; a feed with VWAP and taker share is better, hence:
* Pushed rows are stored as OI *levels*, poll rows as OI *changes* that chain onto the latest
  level before them. A feed and the venue may disagree on the OI level (different sources,
  inverse vs linear notionals); chaining keeps that disagreement out of the interval deltas.
  While a feed has pushed a row within ``feed_priority_s``, poll rows carry a zero change (the
  feed already counts that OI; counting both would double it) but still consume the map on
  their low/high.
* The map is updated incrementally: each compute applies only the rows newer than the last one
  applied (the normal ~1 ms path). Per-side deltas come from the flow estimate over the whole
  kept history; appending rows never changes earlier deltas, so this equals a full replay. A
  backfill that lands before the last applied row rebuilds the map (cold replay, rare); a mark
  more than half the grid's half-width away from its centre re-bins it around the mark.
* Ticker rate vs OI rows: the WS feed delivers a ticker about every second, REST every poll. A
  row per WS ticker would fill ``max_oi_rows`` within hours and shorten the map's memory, so a
  ticker within ``oi_row_min_interval_s`` of the last row only updates mark/index/funding/OI (what
  the snapshot shows) and widens the pending low/high; the next due row then carries the whole
  OI change since the previous one and spans every mark seen in between. The gateway sets the
  minimum to the REST poll interval, so the map sees the same row density from either source.
  Until that row is due, snapshots see it provisionally (the history handed to
  ``compute_snapshot`` ends with the row as it would be now; the map does not take it), so the
  total OI, the flow estimate and the OI age follow every ticker.
* History is bounded (``max_oi_rows``): the oldest rows are dropped (their effect stays in the
  map); the first kept row becomes a level row so the chaining stays right.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.marketdata.book import Book as SpotBook
from gateway.signals import (
    DEFAULT_CONFIG,
    Book,
    FundingRecord,
    LiquidationMap,
    OIHistory,
    PositioningRecord,
    SignalConfig,
    SignalInputs,
    SignalSnapshot,
    compute_snapshot,
    flow_estimate,
)
from gateway.transports.kraken_futures_rest import FundingRate, PerpTicker
from gateway.transports.kraken_futures_ws import WS_SOURCE

__all__ = ["OiRow", "SignalRunner"]

log = logging.getLogger("fixgw.signals.runner")

SnapshotCallback = Callable[[SignalSnapshot], None]


@dataclass(frozen=True, slots=True)
class OiRow:
    """One OI interval as a feed gives it (``OIHistory`` columns; NaN = unknown).

    ``vwap`` NaN/<= 0 falls back to ``(H + L + C) / 3``; ``taker_buy_share`` NaN means no tilt.
    """

    ts: float
    oi_usd: float
    vwap: float
    high: float
    low: float
    close: float
    taker_buy_share: float = math.nan


@dataclass(slots=True)
class _Row:
    ts: float
    value: float  # OI level (USD) when ``level``, else the OI change since the previous poll
    level: bool
    vwap: float
    high: float
    low: float
    close: float
    taker: float


class _PerpState:
    """Everything one perp's snapshot is computed from; guarded by the runner's lock except
    ``liq_map``/``map_ts``, which only the worker thread touches."""

    def __init__(self, symbol: str, spot: str) -> None:
        self.symbol = symbol
        self.spot = spot
        self.ticker: PerpTicker | None = None
        self.ticker_at = 0.0
        self.funding: tuple[FundingRecord, ...] = ()
        self.positioning: PositioningRecord | None = None
        self.rows: list[_Row] = []
        self.anchor_oi = 0.0  # OI level before the first level row (first poll's venue OI)
        self.prev_poll_oi: float | None = None
        self.prev_poll_mark: float | None = None
        self.last_row_at = -math.inf  # wall time of the last ticker-derived OI row
        self.pending_lo = math.inf  # marks seen since that row (the next row's low/high)
        self.pending_hi = -math.inf
        self.pending_row: _Row | None = None  # what a due row would be now (provisional)
        self.ticker_source: str | None = None  # "rest" (poller) or "ws" (ticker feed)
        self.source_updates: dict[str, int] = {}
        self.last_push_ts = -math.inf  # wall time of the last pushed row's arrival
        self.rebuild = False  # a backfill landed before the last applied row
        self.liq_map: LiquidationMap | None = None
        self.map_ts = -math.inf  # ts of the last row applied to liq_map
        self.last_compute = -math.inf  # monotonic
        self.computes = 0
        self.errors = 0
        self.last_error: str | None = None


def _levels(rows: Sequence[_Row], anchor: float) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Materialize OI levels: level rows as given, change rows chained onto the latest level."""
    val = np.fromiter((r.value for r in rows), np.float64, len(rows))
    is_level = np.fromiter((r.level for r in rows), np.bool_, len(rows))
    delta = np.where(is_level, 0.0, val)
    cum = np.cumsum(delta)
    idx = np.flatnonzero(is_level)
    grp = np.cumsum(is_level)
    base = np.concatenate(([anchor], val[idx]))[grp]
    start = np.concatenate(([0.0], cum[idx]))[grp]
    out: np.ndarray[Any, np.dtype[np.float64]] = np.maximum(base + cum - start, 0.0)
    return out


class SignalRunner:
    """Per-perp inputs, a worker that recomputes snapshots, lock-free ``latest`` (see module doc).

    ``spot_books``: the gateway's live books by spot symbol (read, never written); ``perps``:
    perp symbol -> spot symbol. The ``on_snapshot`` argument gets every new snapshot on the
    worker thread (the *method* of that name is the MD hook for spot book snapshots).
    ``clock`` is wall-clock epoch seconds (snapshot and input times); ``book_depth`` is how many
    levels per side of the spot book the signals see.
    """

    def __init__(
        self,
        spot_books: Mapping[str, SpotBook],
        perps: Mapping[str, str],
        config: SignalConfig | None = None,
        min_interval_s: float = 0.5,
        on_snapshot: SnapshotCallback | None = None,
        *,
        book_depth: int = 1000,
        max_oi_rows: int = 20_000,
        feed_priority_s: float = 900.0,
        oi_row_min_interval_s: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if min_interval_s < 0:
            raise ValueError("min_interval_s must be >= 0")
        if book_depth < 1 or max_oi_rows < 2:
            raise ValueError("book_depth must be >= 1 and max_oi_rows >= 2")
        self.spot_books = spot_books
        self.config = config or DEFAULT_CONFIG
        self.min_interval_s = float(min_interval_s)
        # Not ``self.on_snapshot``: that name is the MD listener hook (spot book snapshots).
        self._publish = on_snapshot
        self.book_depth = book_depth
        self.max_oi_rows = max_oi_rows
        self.feed_priority_s = feed_priority_s
        self.oi_row_min_interval_s = max(float(oi_row_min_interval_s), 0.0)
        self._clock = clock
        self._states = {p.upper(): _PerpState(p.upper(), s) for p, s in perps.items()}
        self._by_spot: dict[str, tuple[str, ...]] = {}
        for p, s in perps.items():
            self._by_spot[s] = (*self._by_spot.get(s, ()), p.upper())
        # Pre-filled so a dirty mark is a plain store to an existing key (no resize, no lock).
        self._dirty: dict[str, bool] = dict.fromkeys(self._states, False)
        self._latest: dict[str, SignalSnapshot] = {}
        self._listeners: tuple[SnapshotCallback, ...] = ()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def symbols(self) -> tuple[str, ...]:
        """The perp symbols this runner computes."""
        return tuple(self._states)

    def spot_symbol(self, perp: str) -> str | None:
        """The spot symbol a perp is mapped to."""
        st = self._states.get(perp.upper())
        return st.spot if st is not None else None

    def perps_for_spot(self, spot: str) -> tuple[str, ...]:
        """The perps mapped to a spot symbol."""
        return self._by_spot.get(spot, ())

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="fixgw-signals", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the worker and wait for the snapshot in progress (if any)."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    # -- reads (any thread, lock-free) -------------------------------------------------------

    def latest(self, symbol: str) -> SignalSnapshot | None:
        """The newest snapshot of a perp symbol; a plain dict read (the gate's path)."""
        return self._latest.get(symbol)

    def latest_all(self) -> dict[str, SignalSnapshot]:
        """Every symbol's newest snapshot (the dict itself is never mutated after publish)."""
        return self._latest

    def add_listener(self, fn: SnapshotCallback) -> Callable[[], None]:
        """Also call ``fn`` with each new snapshot (worker thread); returns the remover."""
        with self._lock:
            self._listeners = (*self._listeners, fn)

        def remove() -> None:
            with self._lock:
                self._listeners = tuple(f for f in self._listeners if f is not fn)

        return remove

    def oi_history(self, symbol: str) -> OIHistory | None:
        """The kept OI intervals with materialized levels (diagnostics, replay checks)."""
        st = self._state(symbol)
        with self._lock:
            rows, anchor = list(st.rows), st.anchor_oi
        return self._history(rows, anchor)

    def liquidation_map(self, symbol: str) -> LiquidationMap | None:
        """A copy of the symbol's incrementally kept map (it may be mid-update on the worker;
        the copy is of numpy arrays the worker replaces or updates in place, so call this for
        diagnostics, not on a hot path)."""
        m = self._state(symbol).liq_map
        return m.copy() if m is not None else None

    def stats(self, symbol: str) -> dict[str, object]:
        """Counters for diagnostics: computes, errors, last error, OI rows kept."""
        st = self._state(symbol)
        with self._lock:
            return {"computes": st.computes, "errors": st.errors, "last_error": st.last_error,
                    "oi_rows": len(st.rows), "has_ticker": st.ticker is not None,
                    "ticker_source": st.ticker_source, "ticker_at": st.ticker_at,
                    "source_updates": dict(st.source_updates)}

    def ticker_source(self, symbol: str) -> str | None:
        """Which feed delivered the perp's current ticker ("rest", "ws"; None before any)."""
        st = self._state(symbol)
        with self._lock:
            return st.ticker_source

    # -- MD listener (MD thread: flag only) --------------------------------------------------

    def on_update(self, symbol: str, book: SpotBook, entries: Sequence[object]) -> None:
        """MD hook: the spot book moved; mark its perps dirty (never computes here)."""
        self._mark_spot(symbol)

    def on_snapshot(self, symbol: str, book: SpotBook) -> None:
        """MD hook: a full book arrived; mark its perps dirty."""
        self._mark_spot(symbol)

    def on_integrity(self, symbol: str, reason: str) -> None:
        """MD hook: the book was found broken (it will be rebuilt); mark its perps dirty."""
        self._mark_spot(symbol)

    def _mark_spot(self, spot: str) -> None:
        perps = self._by_spot.get(spot)
        if perps:
            for p in perps:
                self._dirty[p] = True
            self._wake.set()

    def _mark(self, perp: str) -> None:
        self._dirty[perp] = True
        self._wake.set()

    # -- producers ---------------------------------------------------------------------------

    def on_perp_update(self, ticker: PerpTicker, funding: Sequence[FundingRate], *,
                       source: str = "rest") -> None:
        """``PerpPoller`` and WS feed callback: store ticker and funding (noting ``source``),
        append an OI interval when one is due (module docstring)."""
        st = self._states.get(ticker.symbol.upper())
        if st is None:
            return
        now = self._clock()
        mark = float(ticker.mark_price)
        index = float(ticker.index_price)
        oi = float(ticker.open_interest_usd)
        records = [FundingRecord(f.epoch_s, float(f.funding_rate_rel)) for f in funding]
        if source == WS_SOURCE and records:
            # The feed's relative_funding_rate is the venue's own figure for the running
            # period, the same quantity as the history's latest relativeFundingRate, and
            # seconds old where the (REST-only) history may be a poll interval old.
            records[-1] = FundingRecord(records[-1].ts, float(ticker.funding_rate_rel))
        pred = ticker.funding_rate_prediction_rel
        if pred is not None:
            records.append(FundingRecord(now, float(pred), predicted=True))
        entry = self._entry_price(st.spot, mark, index)
        with self._lock:
            st.ticker, st.ticker_at, st.funding = ticker, now, tuple(records)
            switched = st.ticker_source is not None and st.ticker_source != source
            previous, st.ticker_source = st.ticker_source, source
            st.source_updates[source] = st.source_updates.get(source, 0) + 1
            st.pending_lo, st.pending_hi = min(st.pending_lo, mark), max(st.pending_hi, mark)
            due = (st.prev_poll_oi is None
                   or now - st.last_row_at >= self.oi_row_min_interval_s)
            prev_oi, prev_mark = st.prev_poll_oi, st.prev_poll_mark
            row: _Row | None = None
            if prev_oi is not None or not st.rows:
                feed_live = now - st.last_push_ts < self.feed_priority_s
                change = 0.0 if prev_oi is None or feed_live else oi - prev_oi
                lo = min(st.pending_lo, entry, prev_mark if prev_mark is not None else mark)
                hi = max(st.pending_hi, entry, prev_mark if prev_mark is not None else mark)
                row = _Row(now, change, False, entry, hi, lo, mark, math.nan)
            if due:
                st.prev_poll_oi, st.prev_poll_mark = oi, mark
                st.pending_lo, st.pending_hi = math.inf, -math.inf
                st.pending_row = None
                if not st.rows and prev_oi is None:
                    st.anchor_oi = oi
                if row is not None:
                    st.last_row_at = now
                    self._insert(st, [row])
            else:
                st.pending_row = row  # shown in snapshots, not yet in the map (module doc)
        if switched:
            log.info("perp inputs of %s now from %s (were %s)", st.symbol, source, previous)
        self._mark(st.symbol)

    def push_positioning(self, symbol: str, record: PositioningRecord) -> None:
        """Store a cohort's record (replaces the previous one: a snapshot shows one cohort)."""
        st = self._state(symbol)
        with self._lock:
            st.positioning = record
        self._mark(st.symbol)

    def push_oi_intervals(self, symbol: str, rows: Iterable[OiRow]) -> int:
        """Merge a feed's or backfill's intervals (OI levels); returns how many were taken.

        A row with the same ``ts`` as a kept one replaces it; rows older than the last one
        already in the liquidation map make the worker rebuild the map.
        """
        st = self._state(symbol)
        new = [_Row(float(r.ts), max(float(r.oi_usd), 0.0), True, float(r.vwap), float(r.high),
                    float(r.low), float(r.close), float(r.taker_buy_share)) for r in rows]
        if not new:
            return 0
        with self._lock:
            st.last_push_ts = self._clock()
            self._insert(st, new)
        self._mark(st.symbol)
        return len(new)

    def _state(self, symbol: str) -> _PerpState:
        st = self._states.get(symbol.upper())
        if st is None:
            raise KeyError(f"unknown perp symbol {symbol!r}; configured: "
                           f"{', '.join(self._states) or '(none)'}")
        return st

    def _entry_price(self, spot: str, mark: float, index: float) -> float:
        book = self.spot_books.get(spot)
        mid = book.mid() if book is not None else None
        if mid is None or mid <= 0 or index <= 0:
            return mark
        return float(mid) * mark / index

    def _insert(self, st: _PerpState, new: list[_Row]) -> None:
        """Merge rows by ts (caller holds the lock); flags a rebuild for backfills."""
        rows = st.rows
        for r in sorted(new, key=lambda x: x.ts):
            if rows and r.ts > rows[-1].ts:
                rows.append(r)
                continue
            i = bisect.bisect_left(rows, r.ts, key=lambda x: x.ts)
            if i < len(rows) and rows[i].ts == r.ts:
                rows[i] = r
            else:
                rows.insert(i, r)
            if r.ts <= st.map_ts:
                st.rebuild = True
        if len(rows) > self.max_oi_rows:
            drop = len(rows) - self.max_oi_rows + self.max_oi_rows // 10
            levels = _levels(rows, st.anchor_oi)
            first = rows[drop]
            rows[drop] = _Row(first.ts, float(levels[drop]), True, first.vwap, first.high,
                              first.low, first.close, first.taker)
            del rows[:drop]

    # -- worker ------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            timeout = self._cycle(time.monotonic())
            self._wake.wait(timeout)
            self._wake.clear()
            # Re-check after clearing: a mark between wait() and clear() would otherwise wait
            # for the next one; _cycle reads the flags, so nothing is lost either way.

    def _cycle(self, now_m: float) -> float | None:
        """Compute every dirty, due symbol; returns how long to sleep (None: until woken)."""
        wait: float | None = None
        for sym, st in self._states.items():
            if not self._dirty[sym]:
                continue
            due_in = st.last_compute + self.min_interval_s - now_m
            if due_in > 0:
                wait = due_in if wait is None else min(wait, due_in)
                continue
            self._dirty[sym] = False
            st.last_compute = now_m
            self.compute(sym)
        return wait

    def compute(self, symbol: str) -> SignalSnapshot | None:
        """Compute and publish one symbol now (the worker's step; tests may call it directly,
        but never concurrently with a running worker)."""
        st = self._state(symbol)
        try:
            snap = self._compute(st)
        except Exception as exc:
            with self._lock:
                st.errors += 1
                st.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("signal snapshot of %s failed", st.symbol)
            return None
        if snap is None:
            return None
        latest = dict(self._latest)
        latest[st.symbol] = snap
        self._latest = latest  # one reference swap: readers see the old or the new dict
        with self._lock:
            st.computes += 1
        for fn in (self._publish, *self._listeners):
            if fn is None:
                continue
            try:
                fn(snap)
            except Exception:
                log.exception("signal snapshot listener failed for %s", st.symbol)
        return snap

    def _compute(self, st: _PerpState) -> SignalSnapshot | None:
        cfg = self.config
        with self._lock:
            ticker, ticker_at, funding = st.ticker, st.ticker_at, st.funding
            positioning = st.positioning
            rows = list(st.rows)
            anchor = st.anchor_oi
            rebuild, st.rebuild = st.rebuild, False
            tail = st.pending_row
        if ticker is None:
            return None  # no mark yet: nothing can be computed
        now = self._clock()
        mark = float(ticker.mark_price)
        hist = self._history(rows, anchor)
        self._update_map(st, hist, mark, rebuild, now)
        if tail is not None and (not rows or tail.ts > rows[-1].ts):
            hist = self._history([*rows, tail], anchor)  # current OI, flow and OI age
        return compute_snapshot(
            SignalInputs(
                st.symbol,
                now,
                mark,
                float(ticker.index_price),
                ticker_at,
                book=self._book(st.spot, ticker_at),
                funding=funding,
                positioning=positioning,
                oi_history=hist,
                open_interest_usd=float(ticker.open_interest_usd),
                daily_volume_base=float(ticker.vol24h) if ticker.contract == "linear" else None,
                liq_map=st.liq_map,
                config=cfg,
            )
        )

    @staticmethod
    def _history(rows: Sequence[_Row], anchor: float) -> OIHistory | None:
        if not rows:
            return None
        n = len(rows)
        cols = np.array([(r.ts, r.vwap, r.high, r.low, r.close, r.taker) for r in rows],
                        dtype=np.float64).reshape(n, 6)
        ts, vwap, high, low, close, taker = cols.T
        return OIHistory.of(ts, _levels(rows, anchor), vwap, high, low, close, taker)

    def _update_map(
        self, st: _PerpState, hist: OIHistory | None, mark: float, rebuild: bool, now: float
    ) -> None:
        """Apply the rows the map has not seen (worker thread only; see module doc)."""
        cfg = self.config
        m = st.liq_map
        if m is None or rebuild:
            start = float(hist.ts[0]) if hist is not None and hist.ts.size else now
            m = LiquidationMap(mark, cfg.tiers, n_bins=cfg.n_bins, half_width=cfg.grid_half_width,
                               half_life_h=cfg.half_life_h, max_leverage=cfg.max_leverage,
                               as_of=start)
            st.map_ts = -math.inf
        elif abs(math.log(mark / m.grid.center)) > 0.5 * m.grid.half_width:
            m = m.recentered(mark)
        if hist is not None and hist.ts.size:
            new = np.flatnonzero(hist.ts > st.map_ts)
            if new.size:
                flow = flow_estimate(hist.oi_usd, hist.taker_buy_share, as_of=float(hist.ts[-1]),
                                     alpha=cfg.aggressor_weight,
                                     initial_long_share=cfg.initial_long_share)
                entries = hist.entry_prices()
                i0 = int(new[0])
                m.replay(hist.ts[i0:], flow.long_delta[i0:], flow.short_delta[i0:],
                         entries[i0:], hist.low[i0:], hist.high[i0:])
                st.map_ts = float(hist.ts[-1])
        st.liq_map = m

    def _book(self, spot: str, fallback_as_of: float) -> Book | None:
        book = self.spot_books.get(spot)
        if book is None:
            return None
        depth = book.depth(self.book_depth)
        if not depth.bids and not depth.asks:
            return None
        stamp = book.last_update
        as_of = stamp.wall_ns / 1e9 if stamp is not None else fallback_as_of
        return Book.of(
            [float(lv.price) for lv in depth.bids],
            [float(lv.qty) for lv in depth.bids],
            [float(lv.price) for lv in depth.asks],
            [float(lv.qty) for lv in depth.asks],
            as_of,
        )
