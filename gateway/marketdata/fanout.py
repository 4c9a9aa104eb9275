"""Market data for OMS sessions: an OMS sends MarketDataRequest (35=V) to the gateway and gets
snapshots and incrementals of the gateway's books, fanned out from the one venue subscription.

Each OMS subscription keeps its own top-N view (`TopView`), so it can ask for less depth than
the venue feed carries, and gets its own RptSeq and checksum exactly as from the venue. After
the venue feed resyncs a book (fresh snapshot), every OMS subscription of that symbol gets a
fresh snapshot too. A logged-out OMS loses its subscriptions (it re-requests at logon) rather
than have a backlog of stale book updates replayed to it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import quickfix as fix

from gateway.fix import messages as m
from gateway.marketdata.book import Book
from gateway.marketdata.feed import MarketDataFeed
from gateway.marketdata.fix_md import (
    TRADE,
    MdEntry,
    TopView,
    build_incremental,
    build_snapshot,
    md_reject,
    request_symbols,
)

log = logging.getLogger("fixgw.marketdata.oms")

Send = Callable[[fix.Message], None]


@dataclass
class _OmsSub:
    req_id: str
    symbols: frozenset[str]
    depth: int
    send: Send
    views: dict[str, TopView] = field(default_factory=dict)


class OmsMarketData:
    def __init__(self, feed: MarketDataFeed) -> None:
        self.feed = feed
        self._lock = threading.Lock()
        self._subs: dict[str, dict[str, _OmsSub]] = {}  # oms key -> req id -> subscription
        self._gone: set[str] = set()  # OMS sessions logged out, recorded without the lock
        feed.listeners.append(self)

    # ---- OMS requests --------------------------------------------------------------------------
    def on_request(self, msg: fix.Message, oms_key: str, send: Send) -> None:
        req_id = msg.getField(m.MD_REQ_ID)
        sub_type = msg.getField(m.SUBSCRIPTION_REQUEST_TYPE)
        if sub_type == "2":
            with self._lock:
                self._subs.get(oms_key, {}).pop(req_id, None)
            return
        symbols = request_symbols(msg)
        unknown = [s for s in symbols if s not in self.feed.books]
        if unknown or not symbols:
            text = (f"unknown symbol(s) {', '.join(unknown)}: the gateway carries "
                    f"{', '.join(self.feed.books)}" if unknown else "no symbols requested")
            send(md_reject(req_id, "0", text))
            return
        depth = int(m.get(msg, m.MARKET_DEPTH) or "0")
        depth = self.feed.depth if depth <= 0 else min(depth, self.feed.depth)
        sub = _OmsSub(req_id, frozenset(symbols), depth, send)
        with self._lock:
            if oms_key in self._gone:  # logged out since: its old subscriptions are over
                self._gone.discard(oms_key)
                self._subs.pop(oms_key, None)
            if sub_type == "1":
                self._subs.setdefault(oms_key, {})[req_id] = sub
            for symbol in sorted(sub.symbols):
                send(self._snapshot(sub, symbol, self.feed.books[symbol]))

    def drop(self, oms_key: str) -> None:
        """The OMS logged out. Called from QuickFIX's onLogout, which holds that session's mutex,
        so no lock here: `on_update` holds our lock while sending on that same session."""
        self._gone.add(oms_key)

    def subscriber_count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._subs.values())

    # ---- venue feed listener ---------------------------------------------------------------
    def on_snapshot(self, symbol: str, book: Book) -> None:
        with self._lock:
            for sub in self._matching(symbol):
                sub.send(self._snapshot(sub, symbol, book))

    def on_update(self, symbol: str, book: Book, entries: Sequence[MdEntry]) -> None:
        with self._lock:
            subs = self._matching(symbol)
            if not subs:
                return
            trades = [e for e in entries if e.entry_type == TRADE]
            for sub in subs:
                view = sub.views[symbol]
                out = view.advance(book) + trades
                if not out:
                    continue
                view.rpt_seq += 1
                sub.send(build_incremental(sub.req_id, symbol, out, view.rpt_seq,
                                           self._checksum(symbol, view)))

    def on_integrity(self, symbol: str, reason: str) -> None:
        pass  # the venue feed resubscribes; its fresh snapshot reaches on_snapshot

    # ---- internals -----------------------------------------------------------------------------
    def _matching(self, symbol: str) -> list[_OmsSub]:
        while self._gone:
            self._subs.pop(self._gone.pop(), None)
        return [s for subs in self._subs.values() for s in subs.values() if symbol in s.symbols]

    def _checksum(self, symbol: str, view: TopView) -> int | None:
        inst = self.feed.instruments.get(symbol)
        return None if inst is None else view.checksum(inst.price_decimals, inst.qty_decimals)

    def _snapshot(self, sub: _OmsSub, symbol: str, book: Book) -> fix.Message:
        view = TopView(sub.depth)
        view.reset_from(book)
        sub.views[symbol] = view
        return build_snapshot(sub.req_id, symbol, view, self._checksum(symbol, view))
