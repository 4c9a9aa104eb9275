"""The simulator's market-data feed: snapshots (W) and incrementals (X) per subscription, with
Kraken's CRC32 book checksum (5041) and a per-symbol RptSeq (83) on every incremental.

Each subscription has its own depth, so each gets the diff of *its* top-N view after every
engine call, not the raw level changes: a level that slides into the top N when a better one
is consumed is sent as a new level, and the checksum always describes exactly the book the
subscriber can hold. An L2 mirror of the engine's books, fed from BookChanged events under the
same lock that registers subscriptions and queues their snapshots, makes a snapshot and the
increments that follow it consistent and in order (no event can fall between them).

Nothing here writes to a socket: messages go to each subscriber's outbox (`fix_outbox`), whose
own thread sends them, so a subscriber that stops reading holds up neither this lock nor the
engine's.

Faults for tests (`inject`): a corrupted checksum, a dropped incremental (RptSeq gap), and a
stalled symbol (nothing published for a while).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import quickfix as fix

from gateway.marketdata.book import Book
from gateway.marketdata.fix_md import (
    NEW,
    TRADE,
    MdEntry,
    TopView,
    build_incremental,
    build_snapshot,
)
from gateway.venue_sim import engine as e


class Sink(Protocol):
    """Where a subscriber's messages go: a session's outbox. ``put`` must not block on I/O:
    it is called under the engine's and this publisher's locks."""

    def put(self, msg: fix.Message) -> None: ...


@dataclass
class Subscription:
    req_id: str
    symbols: set[str]
    depth: int
    out: Sink
    views: dict[str, TopView] = field(default_factory=dict)


@dataclass
class _Faults:
    corrupt_checksum: dict[str, int] = field(default_factory=dict)
    drop_next: dict[str, int] = field(default_factory=dict)
    stall_until: dict[str, float] = field(default_factory=dict)


class MdPublisher:
    def __init__(self, engine: e.MatchingEngine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._subs: dict[str, list[Subscription]] = {}  # client -> subscriptions
        self._faults = _Faults()
        # Clients whose session logged out: recorded without the lock (see `client_gone`).
        self._gone: set[str] = set()
        self._mirror: dict[str, Book] = {}
        for sym in engine.symbols:
            bids, asks = engine.levels(sym)
            b = Book(sym)
            b.apply_snapshot(bids, asks)
            self._mirror[sym] = b

    # ---- subscriptions -----------------------------------------------------------------------
    def subscribe(self, client: str, sub: Subscription) -> None:
        """Register (replacing the same MDReqID) and queue its snapshots.

        Queued under the lock that publishing takes, so the snapshots are on the subscriber's
        outbox before any incremental that follows them: returned and sent after the lock, an
        engine event in between reached the client first as an X with RptSeq 1, which a feed
        takes for a gap."""
        with self._lock:
            if client in self._gone:
                # Logged out since its last subscriptions: they ended with that session, even
                # if no publish has dropped them yet (a quick logout and logon).
                self._gone.discard(client)
                self._subs.pop(client, None)
            subs = self._subs.setdefault(client, [])
            subs[:] = [s for s in subs if s.req_id != sub.req_id]
            subs.append(sub)
            for sym in sorted(sub.symbols):
                sub.out.put(self._snapshot(sub, sym))

    def snapshot_once(self, sub: Subscription) -> None:
        """Queue one snapshot per symbol (SubscriptionRequestType 0: no updates follow)."""
        with self._lock:
            for sym in sorted(sub.symbols):
                sub.out.put(self._snapshot(sub, sym))

    def client_gone(self, client: str) -> None:
        """A client's MD session logged out: drop its subscriptions at the next publish, or at
        its next subscribe if that comes first.

        Called from QuickFIX's onLogout, which runs with that session's mutex held, and from an
        outbox cutting a slow subscriber off; a set.add needs no lock, so neither has to wait
        for a publisher.
        """
        self._gone.add(client)

    def unsubscribe(self, client: str, req_id: str | None = None) -> None:
        with self._lock:
            if req_id is None:
                self._subs.pop(client, None)
            else:
                self._subs[client] = [s for s in self._subs.get(client, []) if s.req_id != req_id]

    # ---- faults --------------------------------------------------------------------------------
    def inject(self, fault: str, symbol: str, count: int = 1, seconds: float = 0.0) -> None:
        if symbol not in self._mirror:
            raise ValueError(f"unknown symbol {symbol!r}")
        with self._lock:
            if fault == "corrupt_checksum":
                self._faults.corrupt_checksum[symbol] = count
            elif fault == "gap":
                self._faults.drop_next[symbol] = count
            elif fault == "stall":
                self._faults.stall_until[symbol] = time.monotonic() + seconds
            else:
                raise ValueError(f"unknown market-data fault {fault!r}")

    # ---- engine events (called under the engine lock, in engine order) ------------------------
    def on_events(self, changes: Iterable[e.BookChanged | e.TradePrinted]) -> None:
        touched: dict[str, list[MdEntry]] = {}
        with self._lock:
            for ch in changes:
                if isinstance(ch, e.BookChanged):
                    self._mirror[ch.symbol].apply_update(
                        "bid" if ch.side is e.Side.BUY else "ask", ch.price, ch.new_level_qty)
                    touched.setdefault(ch.symbol, [])
                else:
                    touched.setdefault(ch.symbol, []).append(
                        MdEntry(NEW, TRADE, ch.price, ch.qty, ch.aggressor_side.value))
            while self._gone:
                self._subs.pop(self._gone.pop(), None)
            if not self._subs:
                return
            now = time.monotonic()
            for symbol, trades in touched.items():
                if self._faults.stall_until.get(symbol, 0.0) > now:
                    continue
                for subs in self._subs.values():
                    for sub in subs:
                        if symbol in sub.symbols:
                            msg = self._incremental(sub, symbol, trades)
                            if msg is not None:
                                sub.out.put(msg)

    # ---- message building ----------------------------------------------------------------------
    def _checksum(self, symbol: str, view: TopView) -> int:
        inst = self.engine.instruments[symbol]
        value = view.checksum(inst.price_decimals, inst.qty_decimals)
        if self._faults.corrupt_checksum.get(symbol, 0) > 0:
            self._faults.corrupt_checksum[symbol] -= 1
            value ^= 0x5A5A5A5A
        return value

    def _snapshot(self, sub: Subscription, symbol: str) -> fix.Message:
        view = TopView(sub.depth)
        view.reset_from(self._mirror[symbol])
        sub.views[symbol] = view
        return build_snapshot(sub.req_id, symbol, view, self._checksum(symbol, view))

    def _incremental(self, sub: Subscription, symbol: str,
                     trades: list[MdEntry]) -> fix.Message | None:
        view = sub.views.get(symbol)
        if view is None:
            return None
        entries = view.advance(self._mirror[symbol]) + trades
        if not entries:
            return None
        view.rpt_seq += 1
        if self._faults.drop_next.get(symbol, 0) > 0:
            self._faults.drop_next[symbol] -= 1
            return None  # the subscriber will see RptSeq jump: a gap
        return build_incremental(sub.req_id, symbol, entries, view.rpt_seq,
                                 self._checksum(symbol, view))
