"""Market data for OMS sessions: an OMS sends MarketDataRequest (35=V) to the gateway and gets
snapshots and incrementals of the gateway's books, fanned out from the one venue subscription.

Each OMS subscription keeps its own top-N view (`TopView`), so it can ask for less depth than
the venue feed carries, and gets its own RptSeq and checksum exactly as from the venue. After
the venue feed resyncs a book (fresh snapshot), every OMS subscription of that symbol gets a
fresh snapshot too. A logged-out OMS loses its subscriptions (it re-requests at logon) rather
than have a backlog of stale book updates replayed to it. A subscription gets the MDEntryTypes
(267) it asked for (all three when it lists none). Refused with 35=Y: unknown symbols (281=0),
an MDReqID that a live subscription of the session already has (281=1: the live one stays), a
MarketDepth beyond the levels the gateway carries (281=5; 0 is all of them), a subscription for
full refreshes only (265=0, 281=6: every update is sent as an incremental), an MDEntryType
other than bid, offer and trade (281=8), and an unsubscribe (263=2) of an MDReqID that no live
subscription of the session has (no 281: FIX 4.4 has no code for it; the Text says it).

Nothing here sends. The feed calls us on the venue connection's QuickFIX thread, under its own
lock, and a send to an OMS that stops reading blocks; so every message (snapshots answering a
request included, so that a snapshot always precedes its incrementals) goes into that OMS
session's ``Outbox`` under our lock, and the outbox's thread sends it. An OMS whose outbox
overflows gets no more updates until it reads again, then a fresh snapshot per subscription
(``_resync``): see ``gateway.marketdata.outbox``.

A book the feed reports broken or lost (``on_integrity``) is withdrawn: its subscribers get an
empty snapshot (no entries) at once and nothing more until the feed's fresh snapshot, which they
get as a W; a new subscriber (and a 263=0 request) meanwhile gets the empty one, never the last
levels from before. FIX 4.4 has no "book invalid" signal; a full refresh with no entries is one
that every W/X consumer already handles. "Lost" is the feed's ``SOURCE_LOST``: the venue MD
session logged out or stopped answering, or the books changed source (``MarketDataFeed``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import quickfix as fix

from gateway.fix import messages as m
from gateway.marketdata.book import Book
from gateway.marketdata.feed import STALE, MarketDataFeed
from gateway.marketdata.fix_md import (
    BID,
    OFFER,
    TRADE,
    MdEntry,
    TopView,
    build_incremental,
    build_snapshot,
    group_values,
    md_reject,
    request_symbols,
)
from gateway.marketdata.outbox import DEFAULT_LIMIT, Outbox, Send

log = logging.getLogger("fixgw.marketdata.oms")

ENTRY_TYPES = frozenset((BID, OFFER, TRADE))  #: the MDEntryTypes (269) the gateway carries


def requested_entry_types(msg: fix.Message) -> list[str]:
    """The MDEntryTypes of a MarketDataRequest (267 group); none listed: all we carry."""
    return group_values(msg, m.NO_MD_ENTRY_TYPES, m.MD_ENTRY_TYPE) or sorted(ENTRY_TYPES)


@dataclass
class _OmsSub:
    req_id: str
    symbols: frozenset[str]
    depth: int
    outbox: Outbox
    entry_types: frozenset[str] = ENTRY_TYPES  # 267: what it asked for
    views: dict[str, TopView] = field(default_factory=dict)


class OmsMarketData:
    def __init__(self, feed: MarketDataFeed, outbox_limit: int = DEFAULT_LIMIT) -> None:
        self.feed = feed
        self.outbox_limit = outbox_limit
        self._lock = threading.Lock()
        self._subs: dict[str, dict[str, _OmsSub]] = {}  # oms key -> req id -> subscription
        self._gone: set[str] = set()  # OMS sessions logged out, recorded without the lock
        # One per OMS session that ever asked; created under the lock, read by `drop` without.
        self._outboxes: dict[str, Outbox] = {}
        self._closed = False
        # Symbols whose book the feed cannot vouch for (integrity failure, source lost) until
        # its fresh snapshot: their subscribers, old and new, hold an empty book and get no
        # updates.
        self._dead: set[str] = set()
        feed.listeners.append(self)

    # ---- OMS requests --------------------------------------------------------------------------
    def on_request(self, msg: fix.Message, oms_key: str, send: Send) -> None:
        req_id = msg.getField(m.MD_REQ_ID)
        sub_type = msg.getField(m.SUBSCRIPTION_REQUEST_TYPE)
        if sub_type == "2":
            with self._lock:
                if self._closed:
                    return
                self._forget_gone()
                if self._subs.get(oms_key, {}).pop(req_id, None) is None:
                    # Silence would leave the OMS believing it stopped a feed it never had
                    # under that id (a typo: the one it meant goes on). FIX 4.4 has no
                    # MDReqRejReason for it: the Text says what is wrong.
                    self._outbox(oms_key, send).put(md_reject(
                        req_id, None, f"no live subscription has MDReqID {req_id}: nothing "
                        f"unsubscribed"), book=False)
            return
        symbols = request_symbols(msg)
        unknown = [s for s in symbols if s not in self.feed.books]
        depth = int(m.get(msg, m.MARKET_DEPTH) or "0")
        entry_types = requested_entry_types(msg)
        with self._lock:
            if self._closed:
                return  # the gateway is stopping
            self._forget_gone()  # logged out since: its old subscriptions are over
            outbox = self._outbox(oms_key, send)
            refused = self._refusal(msg, oms_key, req_id, sub_type, symbols, unknown, depth,
                                    entry_types)
            if refused is not None:
                outbox.put(md_reject(req_id, *refused), book=False)
                return
            sub = _OmsSub(req_id, frozenset(symbols), depth or self.feed.depth, outbox,
                          frozenset(entry_types))
            if sub_type == "1":
                self._subs.setdefault(oms_key, {})[req_id] = sub
            for symbol in sorted(sub.symbols):
                outbox.put(self._snapshot(sub, symbol, self.feed.books[symbol]), book=False)

    def drop(self, oms_key: str) -> None:
        """The OMS logged out. Called from QuickFIX's onLogout, which holds that session's mutex,
        so without our lock (the lock rule in gateway.fix.application): its subscriptions go at
        the next look under the lock (`_forget_gone`), what its outbox holds at once."""
        self._gone.add(oms_key)
        outbox = self._outboxes.get(oms_key)
        if outbox is not None:
            outbox.clear()

    def close(self, timeout: float = 2.0) -> None:
        """The gateway is stopping: the sender threads end (a send still blocked on an OMS that
        does not read ends when the engines close its socket)."""
        with self._lock:
            self._closed = True
            outboxes = list(self._outboxes.values())
        for outbox in outboxes:
            outbox.close()
        for outbox in outboxes:
            if not outbox.join(timeout / max(1, len(outboxes))):
                log.warning("market data to %s: sender still blocked in a send at stop",
                            outbox.name)

    def drained(self, timeout: float) -> bool:
        """Every outbox has sent what it holds (for tests and tools)."""
        with self._lock:
            outboxes = list(self._outboxes.values())
        return all(o.idle(timeout) for o in outboxes)

    def subscriber_count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._subs.values())

    # ---- venue feed listener ---------------------------------------------------------------
    def on_snapshot(self, symbol: str, book: Book) -> None:
        with self._lock:
            self._dead.discard(symbol)
            for sub in self._matching(symbol):
                sub.outbox.put(self._snapshot(sub, symbol, book))

    def on_update(self, symbol: str, book: Book, entries: Sequence[MdEntry]) -> None:
        with self._lock:
            subs = self._matching(symbol)
            if not subs or symbol in self._dead:
                return
            trades = [e for e in entries if e.entry_type == TRADE]
            for sub in subs:
                view = sub.views[symbol]
                out = view.advance(book) + (trades if TRADE in sub.entry_types else [])
                if not out:
                    continue
                view.rpt_seq += 1
                sub.outbox.put(build_incremental(sub.req_id, symbol, out, view.rpt_seq,
                                                 self._checksum(symbol, view)))

    def on_integrity(self, symbol: str, reason: str) -> None:
        """The feed found `symbol`'s book broken (checksum, RptSeq gap, crossed, refused
        by the venue) or its source lost (the MD session logged out or leaves a resubscribe
        unanswered, see the feed's ``SOURCE_LOST``), and is rebuilding it. Left alone, an OMS
        would keep the last book it was sent and could not tell it from a quiet market; so
        each subscriber gets a snapshot with no entries (268=0, the full refresh of an empty
        book) and no updates until the feed's fresh snapshot reaches `on_snapshot`, which it
        gets as a W.

        Not for a staleness resync (``STALE``): the levels were verified and are only old (a
        quiet market goes stale every `md_stale_after_s`), and on a live session the fresh
        snapshot follows in milliseconds; withdrawing would flash an empty book at the OMS each
        time. A session that does not answer it is reported as a lost source
        `md_stale_after_s` later, and withdrawn then."""
        if reason.startswith(STALE):
            return
        with self._lock:
            if symbol in self._dead:
                return  # already told
            self._dead.add(symbol)
            for sub in self._matching(symbol):
                sub.outbox.put(self._snapshot(sub, symbol, self.feed.books[symbol]))

    # ---- internals -----------------------------------------------------------------------------
    def _refusal(self, msg: fix.Message, oms_key: str, req_id: str, sub_type: str,
                 symbols: Sequence[str], unknown: Sequence[str], depth: int,
                 entry_types: Sequence[str]) -> tuple[str, str] | None:
        """(MDReqRejReason, Text) for a request we do not serve, else None. Under the lock.

        A reused MDReqID would replace the live subscription that has it and leave the OMS's
        first book frozen without a word, so it is refused and the live one stays. Full refresh
        only (265=0) is refused rather than served as incrementals it did not ask for. So are
        a MarketDepth beyond the levels the gateway carries (281=5: served cut to ours, the
        desk took our last level for the end of the book) and MDEntryTypes other than bid,
        offer and trade (281=8)."""
        if unknown or not symbols:
            return "0", (f"unknown symbol(s) {', '.join(unknown)}: the gateway carries "
                         f"{', '.join(self.feed.books)}" if unknown else "no symbols requested")
        live = self._subs.get(oms_key, {}).get(req_id)
        if live is not None:
            return "1", (f"MDReqID {req_id} is in use by your live subscription to "
                         f"{', '.join(sorted(live.symbols))}; unsubscribe it (263=2) first or "
                         f"use another MDReqID")
        if depth < 0 or depth > self.feed.depth:
            return "5", (f"MarketDepth (264) {depth} is not supported: the gateway carries "
                         f"{self.feed.depth} levels per side; ask for 1 to {self.feed.depth}, "
                         f"or 0 for all of them")
        unsupported = sorted(set(entry_types) - ENTRY_TYPES)
        if unsupported:
            return "8", (f"MDEntryType (269) {', '.join(unsupported)} not supported: the gateway "
                         f"carries 0 (bid), 1 (offer) and 2 (trade)")
        if sub_type == "1" and m.get(msg, m.MD_UPDATE_TYPE) == "0":
            return "6", ("MDUpdateType (265) 0 (full refresh) is not supported: subscribe with "
                         "265=1 (incremental refresh), or ask for a snapshot alone with 263=0")
        return None

    def _forget_gone(self) -> None:
        while self._gone:
            key = self._gone.pop()
            self._subs.pop(key, None)
            outbox = self._outboxes.get(key)
            if outbox is not None:
                outbox.reset()

    def _matching(self, symbol: str) -> list[_OmsSub]:
        """The live subscriptions to `symbol` whose OMS reads (no resync pending)."""
        self._forget_gone()
        return [s for subs in self._subs.values() for s in subs.values()
                if symbol in s.symbols and not s.outbox.resyncing]

    def _outbox(self, oms_key: str, send: Send) -> Outbox:
        outbox = self._outboxes.get(oms_key)
        if outbox is None:
            outbox = self._outboxes[oms_key] = Outbox(oms_key, send, self._resync,
                                                      self.outbox_limit)
        outbox.send = send
        return outbox

    def _resync(self, outbox: Outbox) -> None:
        """On the outbox's thread, once an overflowed OMS reads again: a fresh snapshot of each
        of its subscriptions, queued before any update that follows."""
        with self._lock:
            self._forget_gone()
            if not outbox.resyncing:
                return  # logged out meanwhile
            subs = list(self._subs.get(outbox.name, {}).values())
            for sub in subs:
                for symbol in sorted(sub.symbols):
                    outbox.put(self._snapshot(sub, symbol, self.feed.books[symbol]), book=False)
            outbox.end_resync()  # after the snapshots: never seen idle between the two
        log.info("market data to %s: reading again; %d subscription(s) resynchronised with "
                 "fresh snapshots", outbox.name, len(subs))

    def _checksum(self, symbol: str, view: TopView) -> int | None:
        """The 5041 of `view`, or None (sent without): precision unknown, or a level finer than
        it (a venue message without a checksum of its own can bring one). Never an exception:
        the caller has moved the view already, and an update not sent would leave the OMS's
        book behind ours with no gap in its RptSeq to tell it."""
        inst = self.feed.instruments.get(symbol)
        if inst is None:
            return None
        try:
            return view.checksum(inst.price_decimals, inst.qty_decimals)
        except ValueError as exc:
            log.debug("market data %s to the OMS without a checksum: %s", symbol, exc)
            return None

    def _snapshot(self, sub: _OmsSub, symbol: str, book: Book) -> fix.Message:
        """A W of `book` for `sub` (empty while the book is dead), which its view starts from."""
        view = TopView(sub.depth, sides=sub.entry_types & {BID, OFFER})
        if symbol not in self._dead:
            view.reset_from(book)
        sub.views[symbol] = view
        return build_snapshot(sub.req_id, symbol, view, self._checksum(symbol, view))
