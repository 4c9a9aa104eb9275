"""The venue market-data session (KRAKEN-MD): instruments, subscriptions and live books.

At logon it asks for the InstrumentList (35=x) — tick, precision and minimum per symbol, which
order validation then enforces — and subscribes (35=V) to each configured symbol separately,
so one symbol can be resubscribed without disturbing the others.

Integrity: a book is resubscribed (fresh snapshot) when the venue's CRC32 checksum (5041)
disagrees with ours (or ours cannot be computed: a level finer than the instrument's precision
is not the venue's book either), when an update cannot be applied, when the per-symbol RptSeq
(83) skips, when the book crosses (after an update or in a snapshot), or when a symbol has been
silent longer than `stale_after_s`. Each of those is logged and reported to the listeners as an
integrity event with its reason; the staleness check only at debug level, as a quiet symbol's
is routine (a warning when its answer shows missed updates, or when it goes unanswered). All
but the last mean the book is wrong (the bad update is already in it, or one is missing), so it
is emptied at once and stays empty until the new subscription's verified snapshot: the gate
finds no mid (its stale policy applies), and neither the signals nor a new OMS subscriber get
the bad levels; the listeners are handed the empty book as a snapshot. A silent book is only
old: it keeps its verified levels, which the gate judges by their age. Increments for a
subscription we replaced are ignored, so a late message from the old subscription cannot
corrupt the new snapshot. Each listener is called on its own: one that raises is logged (with
the symbol) and neither the others nor the feed miss a beat.

Source lost (reason ``SOURCE_LOST``): nothing feeds a book any more, so its levels, however
verified, are frozen while the market moves; the listeners are told once per episode (the OMS
fan-out withdraws the book from its subscribers) and the next snapshot they get revives it.
That is: the MD session logged out (a drop, the daily rollover) while it fed the books; a
(re)subscription the venue left unanswered for `stale_after_s` (logged on but stalled: a quiet
book's stale resubscribe is answered in milliseconds, so it is never taken for this); the books
handed to another source while FIX was not feeding them (they wait for that source's first
snapshot, which an unreachable one never sends); and the books taken back before their FIX
snapshot. The feed keeps the levels themselves (the gate judges them by their age); a logout
is reported from the watchdog's thread, since QuickFIX calls `on_logout` holding the
session's mutex and the hand-over lock must not be taken under it (see `_subscribe`).
A stall is resubscribed every `stale_after_s` for as long as it lasts, but logged as one
episode per symbol: a warning when it starts, rare reminders of how long it has lasted, and a
line with its length when the venue answers (`_resubscribe_unanswered`). A subscription the
venue refuses (35=Y) is not stale, and is one episode too: said once with the venue's reason,
retried on the episode schedule with a reminder each time, one line when it is taken
(`_rejected`).

Another source may own the books for a while (the WS fallback while this session is down,
``gateway.routing.md_failover``): ``hand_over_books`` makes the FIX session keep its own
shadow books (checked exactly as usual, never shown to the listeners) while the other source
writes the shared ``Book`` objects through ``apply_external_*``; ``take_back_books`` copies the
shadows' verified state into the shared books and tells the listeners with a snapshot. The
shared books keep their identity throughout, so the gate, the signals, the events and the OMS
fan-out never notice which source feeds them. One re-entrant lock makes each FIX message, each
external frame, each hand-over and each (re)subscribe (the swap and its sends together)
atomic, so a book never has two writers at once and the stale watchdog and the QuickFIX
thread cannot interleave two resubscribes of one symbol.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Protocol

import quickfix as fix

from gateway.fix import messages as m
from gateway.fix.application import BaseHandler
from gateway.fix.messages import Fields, get
from gateway.marketdata.book import Book, Depth
from gateway.marketdata.episode import REMINDER_FIRST_S, REMINDER_MAX_S, Episode, duration
from gateway.marketdata.fix_md import (
    BID,
    CHECKSUM_TAG,
    OFFER,
    TRADE,
    MdEntry,
    entry_symbols,
    md_request,
    parse_incremental,
    parse_snapshot,
    snapshot_rpt_seq,
)
from gateway.marketdata.instruments import Instrument, InstrumentRegistry

log = logging.getLogger("fixgw.marketdata")
# How a staleness resync's reason starts: the book's levels were verified and are only old
# (a quiet market goes stale too), unlike every other integrity reason.
STALE: Final = "stale feed"
# How an integrity reason starts when nothing feeds the book any more (see the docstring).
SOURCE_LOST: Final = "source lost"

SECURITY_REQ_ID = 320
SECURITY_LIST_REQUEST_TYPE = 559
MIN_TRADE_VOL = 562  # Kraken: the quantity step (its example: 562=0.00000001)
MIN_PRICE_INCREMENT = 969
PRICE_PRECISION = 2349
QTY_PRECISION = 5010
QTY_MIN = 5011  # Kraken: the minimum order quantity (its example: 5011=0.0001)
TICK_SIZE = 5022

_SIDES = {BID: "bid", OFFER: "ask"}
RECENT_INTEGRITY_EVENTS = 1000  #: how many integrity events `integrity_events` keeps
#: How often a symbol the venue refuses (35=Y) is subscribed again (see `MarketDataFeed._rejected`).
REFUSED_RETRY_S: Final = 60.0
# A stall (logged on, resubscribes unanswered) is warned of once, then reminded of on the
# episode schedule shared with the other long-lasting troubles (gateway.marketdata.episode).
STALL_REMINDER_FIRST_S: Final = REMINDER_FIRST_S
STALL_REMINDER_MAX_S: Final = REMINDER_MAX_S
# A book that fails its checks again and again (a venue that keeps sending a crossed snapshot,
# or one whose checksum is not its book's) was resubscribed the moment each snapshot failed: a
# tight loop of MarketDataRequests and warnings. The first failure is resubscribed at once (a
# glitch heals in milliseconds); each further one of the streak after a wait that starts here
# and doubles up to the cap. A snapshot that passes and then holds this long ends the streak.
BROKEN_BACKOFF_FIRST_S: Final = 0.25
BROKEN_BACKOFF_MAX_S: Final = 30.0
BROKEN_HOLD_S: Final = 5.0


def instrument_from_list_entry(g: fix.FieldMap) -> Instrument:
    """One InstrumentList (35=y) NoRelatedSym entry as the instrument orders are checked against.

    Kraken's entry: ``562=0.00000001|5010=8|5011=0.0001`` for BTC/USD, i.e. 562 MinTradeVol is
    the quantity *step* and 5011 QtyMin the *minimum* order size. Read the other way round, a
    0.00005 BTC order passed our check and cost a venue reject (and a rate-limit point).

    Without 5011, 562 is taken as the minimum and the step is one unit of the quantity
    precision (5010): a venue whose list has no QtyMin (this project's simulator until it
    sends 5011) uses 562 for the minimum, as FIX 4.4 defines MinTradeVol; and should 562 be a
    step after all, a minimum that small refuses nothing the venue would take, whereas taking
    a minimum (ARB/USD's 5) as the step would refuse 7 ARB, a valid order. Raises ValueError
    (or FieldNotFound, ArithmeticError) for an entry that cannot be used."""
    symbol = g.getField(m.SYMBOL)
    price_decimals = int(g.getField(PRICE_PRECISION))
    qty_decimals = int(g.getField(QTY_PRECISION))
    tick = get(g, TICK_SIZE) or get(g, MIN_PRICE_INCREMENT)
    min_trade_vol = get(g, MIN_TRADE_VOL)
    qty_min = get(g, QTY_MIN)
    price_tick = Decimal(tick) if tick else Decimal(1).scaleb(-price_decimals)
    if qty_min is not None:
        minimum = Decimal(qty_min)
        step = Decimal(min_trade_vol) if min_trade_vol else Decimal(1).scaleb(-qty_decimals)
    else:
        minimum = Decimal(min_trade_vol or "0")
        step = Decimal(1).scaleb(-qty_decimals)
    return Instrument(symbol, price_tick, step, minimum, price_decimals, qty_decimals)


class MdListener(Protocol):
    def on_snapshot(self, symbol: str, book: Book) -> None: ...
    def on_update(self, symbol: str, book: Book, entries: Sequence[MdEntry]) -> None: ...
    def on_integrity(self, symbol: str, reason: str) -> None: ...


def _listener_failed(listener: MdListener, hook: str, symbol: str) -> None:
    log.exception("market data %s: listener %r failed in %s; the other listeners were told",
                  symbol, listener, hook)


@dataclass
class _Sub:
    req_id: str
    symbol: str
    rpt_seq: int = 0
    synced: bool = False
    last_rx: float = 0.0
    resubscribes: int = 0
    rejected: bool = False  # the venue refused it (35=Y): not waited for at failback
    # A staleness check's subscription: how long the symbol had been silent, and the book
    # the check found (see `_resubscribe_stale`).
    checking: tuple[float, Depth] | None = None
    # When the watchdog sends this subscription (a broken book's backoff, see `resubscribe`);
    # None: sent when made. Until then the venue knows nothing of it.
    due_at: float | None = None


@dataclass
class _Broken:
    """A symbol whose book failed its checks, until a snapshot has held (see `resubscribe`)."""

    episode: Episode  # since the first failure; due: the next reminder line
    reason: str  # the latest failure
    failures: int = 1
    delay: float = 0.0  # the wait before the latest resubscribe went out
    good_since: float | None = None  # a snapshot passed then, and nothing failed since


@dataclass
class _Stall:
    """A symbol the venue stopped answering while logged on (see `_resubscribe_unanswered`)."""

    episode: Episode  # since the first subscription it left unanswered was sent
    unanswered: int = 1  # subscriptions it left unanswered so far


@dataclass
class _Refusal:
    """A symbol whose subscription the venue refuses (35=Y): see `_rejected`."""

    text: str  # the venue's reason, as it last gave it
    episode: Episode  # since the first refusal; due: the next reminder line
    retry_at: float  # when the next subscription goes out (every REFUSED_RETRY_S)
    refusals: int = 1


class MarketDataFeed(BaseHandler):
    def __init__(self, symbols: Sequence[str], depth: int, instruments: InstrumentRegistry,
                 stale_after_s: float = 10.0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`clock`: monotonic seconds, for every age and duration the feed judges (a test's
        fake clock makes an hour-long stall take no time; the watchdog still wakes in real
        time)."""
        self._clock = clock
        self.symbols = tuple(symbols)
        self.depth = depth
        self.instruments = instruments
        self.stale_after_s = stale_after_s
        self.books: dict[str, Book] = {s: Book(s, max_depth=depth) for s in symbols}
        self.listeners: list[MdListener] = []
        # (symbol, reason) of the latest integrity events, for ops and tests: bounded, as a
        # flapping feed resubscribes for the life of the process; the count is of them all.
        self.integrity_events: deque[tuple[str, str]] = deque(maxlen=RECENT_INTEGRITY_EVENTS)
        self.integrity_event_count = 0
        self._session: fix.Session | None = None
        self._subs: dict[str, _Sub] = {}     # symbol -> current subscription
        self._by_req: dict[str, _Sub] = {}   # MDReqID -> subscription (current only)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # Books owned by another source (see the module docstring): while set, FIX messages go
        # to these shadow books and the listeners hear only the other source.
        self._shadow: dict[str, Book] | None = None
        self.source = "fix"  #: who writes `books` now: "fix", or the other source's name
        self._owner = threading.RLock()
        self._session_changed = self._clock()
        # Symbols whose listeners were told the book is broken or lost, with no snapshot since
        # (under the hand-over lock): a loss is told once per episode.
        self._withdrawn: set[str] = set()
        # Symbols whose FIX (re)subscriptions the venue leaves unanswered while logged on
        # (under the hand-over lock): see `_resubscribe_unanswered`.
        self._stalls: dict[str, _Stall] = {}
        # Symbols whose subscription the venue refuses, until it takes one (under the
        # hand-over lock): see `_rejected`.
        self._refusals: dict[str, _Refusal] = {}
        # Symbols whose book keeps failing its checks, until a snapshot holds (under the
        # hand-over lock): see `resubscribe`.
        self._broken: dict[str, _Broken] = {}
        # Incrementals without MDReqID that no subscription could be found for, by why (see
        # `_attribute`): the first of each kind is a warning, the rest debug lines.
        self._unattributed: dict[str, int] = {}
        # Why the FIX books lost their source, set by on_logout for the watchdog to tell.
        self._lost: str | None = None
        self._wake = threading.Event()  # wakes the watchdog early (a logout to report)
        self._watchdog = threading.Thread(target=self._watch, name="md-stale", daemon=True)
        self._watchdog.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    # ---- session -----------------------------------------------------------------------------
    def on_logon(self, session_id: fix.SessionID) -> None:
        self._session = fix.Session.lookupSession(session_id)
        self._session_changed = self._clock()
        req = m.new_message("x")
        req.setField(SECURITY_REQ_ID, f"IL{next(self._ids)}")
        req.setField(SECURITY_LIST_REQUEST_TYPE, "4")  # 4 = all securities
        self._session.send(req)
        for symbol in self.symbols:
            self._subscribe(symbol)

    def on_logout(self, session_id: fix.SessionID) -> None:
        """The books lose their source: the watchdog tells the listeners (not this thread,
        which holds the session's mutex; see the module docstring) within milliseconds."""
        if self._session is not None:  # QuickFIX repeats onLogout for each refused logon
            self._session_changed = self._clock()
            self._lost = "FIX market-data session logged out"
            self._wake.set()
        self._session = None
        with self._lock:
            for sub in self._subs.values():
                sub.synced = False

    def on_app_message(self, msg: fix.Message, session_id: fix.SessionID,
                       fields: Fields) -> None:
        t = m.msg_type(msg)
        if t == "X":
            with self._owner:
                self._incremental(msg)
        elif t == "W":
            with self._owner:
                self._snapshot(msg)
        elif t == "y":
            self._instrument_list(msg)
        elif t == "Y":
            with self._owner:
                self._rejected(msg)
        else:
            raise fix.UnsupportedMessageType()

    # ---- subscriptions -----------------------------------------------------------------------
    def _subscribe(self, symbol: str, delay: float = 0.0) -> None:
        """Make a new subscription `symbol`'s current one and tell the venue (ending the old).
        `delay`: the old one ends now, the new one is sent by the watchdog that much later (a
        broken book's backoff: see `resubscribe`).

        Swap and sends are one piece under the hand-over lock: the stale watchdog and the
        QuickFIX thread (gap, checksum, crossed) may both resubscribe a symbol, and with the
        sends outside the lock the venue could get them interleaved (end B, start B, then
        start A: a subscription the venue feeds and we ignore, or one we wait for that it
        ended). FIX messages are handled under the same lock, so none is handled halfway
        through a swap. Never `_lock` across a send: QuickFIX calls `on_logout` holding the
        session's mutex, which `send` needs, and `on_logout` takes `_lock`."""
        with self._owner:
            req_id = f"MD-{symbol}-{next(self._ids)}"
            now = self._clock()
            with self._lock:
                old = self._subs.get(symbol)
                sub = _Sub(req_id, symbol, last_rx=now,
                           resubscribes=(old.resubscribes if old else 0),
                           due_at=now + delay if delay > 0 else None)
                self._subs[symbol] = sub
                if old is not None:
                    self._by_req.pop(old.req_id, None)
                self._by_req[req_id] = sub
            session = self._session
            if session is None:
                return
            if old is not None and old.due_at is None:  # one never sent has nothing to end
                session.send(md_request(old.req_id, symbol, "2", self.depth))
            if sub.due_at is None:
                session.send(md_request(req_id, symbol, "1", self.depth))
            else:
                self._wake.set()  # the watchdog times its next look by it

    def _send_due(self) -> None:
        """Send each subscription whose backoff is over (on the watchdog's thread)."""
        now = self._clock()
        with self._lock:
            due = [s for s in self._subs.values() if s.due_at is not None and s.due_at <= now]
        for sub in due:
            with self._owner:
                session = self._session
                if session is None or self._subs.get(sub.symbol) is not sub or sub.due_at is None:
                    continue  # replaced meanwhile (a logon subscribes at once)
                sub.due_at = None
                sub.last_rx = self._clock()  # its answer is waited for from now
                session.send(md_request(sub.req_id, sub.symbol, "1", self.depth))

    def resubscribe(self, symbol: str, reason: str, *, broken: bool = False,
                    quiet: bool = False) -> None:
        """Replace `symbol`'s subscription (fresh snapshot), telling the listeners why.

        `broken`: the book failed a check (checksum, crossed, RptSeq gap), so what it holds is
        wrong, not merely old. It is emptied at once, under the hand-over lock, and stays empty
        until the new subscription's verified snapshot: an empty book has no mid and no top,
        so the gate applies its stale policy and a new OMS subscriber gets an empty snapshot
        instead of trading on, or copying, the bad levels (the listeners get that empty book as
        a snapshot too). A stale symbol is not broken: its levels were verified and the gate
        judges them by their age.

        `quiet`: logged at debug level only, for a check that is routine or already warned
        of: the staleness check of a quiet symbol (`_resubscribe_stale`) and the repeats of a
        stall (`_resubscribe_unanswered`); everything else about the resubscribe is as
        usual.

        A broken book that stays broken (a venue that keeps sending a crossed snapshot, or a
        checksum that is not its book's) is a streak (`_broken_failure`): the first failure
        is a warning and resubscribed at once, each further one a debug line unless it is
        another kind of failure (with a reminder of how long the streak has lasted on the
        `Episode` schedule) and resubscribed after a backoff
        (`BROKEN_BACKOFF_FIRST_S`, doubling to `BROKEN_BACKOFF_MAX_S`), until a snapshot
        passes its checks and holds for `BROKEN_HOLD_S` (`_end_held_streaks`). Meanwhile the
        book stays empty: a failing snapshot never reaches it (`_snapshot` checks it first),
        and the listeners, told at the first failure, are told again only if a good snapshot
        reached them since. Resubscribed at once, the loop was as fast as the venue could
        answer: thousands of requests and warnings a second."""
        with self._owner:  # one resubscribe at a time (see _subscribe)
            delay, tell, news = (self._broken_failure(symbol, reason) if broken
                                 else (0.0, True, True))
            log.log(logging.DEBUG if quiet or not news else logging.WARNING,
                    "market data %s: %s; %sresubscribing for a fresh snapshot%s", symbol,
                    reason, "book emptied, " if broken else "",
                    f" in {delay:g} s" if delay else "")
            self._record_integrity(symbol, reason)
            with self._lock:
                sub = self._subs.get(symbol)
                if sub is not None:
                    sub.resubscribes += 1
            book = self._book(symbol)
            if broken:
                book.clear()
            if self._shadow is None and tell:
                self._tell("on_integrity", symbol, reason)
                if broken:
                    self._tell("on_snapshot", symbol, book)
            self._subscribe(symbol, delay)

    def _broken_failure(self, symbol: str, reason: str) -> tuple[float, bool, bool]:
        """A failure of `symbol`'s book in its streak: (how long to wait before resubscribing,
        whether the listeners must hear of it, i.e. whether it is the streak's first or a good
        snapshot reached them since the last one, whether it is news for the log: the streak's
        first, or another kind of failure than the one before, as a gap after a checksum
        mismatch). Logs the reminders. Under the hand-over lock."""
        now = self._clock()
        streak = self._broken.get(symbol)
        if (streak is not None and streak.good_since is not None
                and now - streak.good_since >= BROKEN_HOLD_S):
            self._end_streak(symbol, streak, now)  # held: the watchdog was not there yet
            streak = None
        if streak is None:
            self._broken[symbol] = _Broken(Episode(now, first_at=now + REMINDER_FIRST_S), reason)
            return 0.0, True, True
        shown = streak.good_since is not None
        news = reason.partition(":")[0] != streak.reason.partition(":")[0]
        streak.failures += 1
        streak.reason = reason
        streak.good_since = None
        streak.delay = min(BROKEN_BACKOFF_MAX_S, streak.delay * 2 or BROKEN_BACKOFF_FIRST_S)
        if streak.episode.due(now):
            log.warning("market data %s: the venue's book still fails its checks, %s after the "
                        "first failure (%d failures; the latest: %s); resubscribing with "
                        "backoff (next in %g s, at most every %g s); the book stays withdrawn",
                        symbol, streak.episode.lasted(now), streak.failures, reason,
                        streak.delay, BROKEN_BACKOFF_MAX_S)
        return streak.delay, shown, news

    def _end_streak(self, symbol: str, streak: _Broken, now: float) -> None:
        """`symbol`'s snapshot has held: its next failure is a first one again."""
        self._broken.pop(symbol, None)
        log.log(logging.WARNING if streak.failures > 1 else logging.DEBUG,
                "market data %s: the book is good again: its snapshot has held for %g s, %s "
                "after the first failure (%d failures; the last: %s)", symbol, BROKEN_HOLD_S,
                streak.episode.lasted(now), streak.failures, streak.reason)

    def _end_held_streaks(self) -> None:
        """The watchdog's look at the streaks: each whose good snapshot has held ends."""
        if not self._broken:
            return
        with self._owner:
            now = self._clock()
            for symbol, streak in list(self._broken.items()):
                if streak.good_since is not None and now - streak.good_since >= BROKEN_HOLD_S:
                    self._end_streak(symbol, streak, now)

    def _record_integrity(self, symbol: str, reason: str) -> None:
        """Under the hand-over lock (every caller holds it), so the count is exact."""
        self.integrity_events.append((symbol, reason))
        self.integrity_event_count += 1

    # Each listener is called on its own: one that raises (a bug, a full queue) is logged and
    # the others are still told, and the feed's own bookkeeping after the call goes on.
    def _tell(self, event: str, symbol: str, *args: object) -> None:
        """`listener.<event>(symbol, *args)` for each listener (on_snapshot, on_update,
        on_integrity). Under the hand-over lock; keeps `_withdrawn` as the listeners see it."""
        if event == "on_snapshot":
            self._withdrawn.discard(symbol)
        elif event == "on_integrity" and not str(args[0]).startswith(STALE):
            self._withdrawn.add(symbol)
        for listener in self.listeners:
            try:
                getattr(listener, event)(symbol, *args)
            except Exception:
                _listener_failed(listener, event, symbol)

    # ---- messages ------------------------------------------------------------------------------
    def _snapshot(self, msg: fix.Message) -> None:
        """A subscription's full book. Checked before the book takes it (built aside first):
        a snapshot that fails (crossed, checksum, a level the book cannot hold) never reaches
        the book the gate reads, not even for the moment before it is emptied again. Its
        RptSeq (83, when the venue numbers snapshots too) is the baseline of the incrementals
        that follow: taken as 0, the first one looked like a gap, every time."""
        sub = self._by_req.get(msg.getField(m.MD_REQ_ID))
        if sub is None:
            return
        sub.last_rx = self._clock()
        try:
            bids, asks = parse_snapshot(msg)
            fresh = Book(sub.symbol, max_depth=self.depth)
            fresh.apply_snapshot(bids, asks)
            rpt_seq = snapshot_rpt_seq(msg)
        except (ValueError, TypeError, ArithmeticError, fix.FieldNotFound) as exc:
            problem: str | None = f"unusable snapshot: {exc}"
        else:
            problem = self._check(sub.symbol, fresh, get(msg, CHECKSUM_TAG))
            if problem is None and fresh.is_crossed():  # whoever crossed it: never shown
                problem = "crossed book in the snapshot"
        refusal = self._refusals.pop(sub.symbol, None)
        if refusal is not None:  # the refusal episode's closing line
            log.warning("market data %s: the venue took the subscription after %s of refusals "
                        "(%d refusals)", sub.symbol, refusal.episode.lasted(sub.last_rx),
                        refusal.refusals)
        stall = self._stalls.pop(sub.symbol, None)
        if stall is not None:  # the episode's one closing line, with how long it lasted
            log.warning("market data %s: the venue answered at last: a snapshot after %s "
                        "without one (%d subscriptions left unanswered)%s", sub.symbol,
                        stall.episode.lasted(sub.last_rx), stall.unanswered,
                        "" if self._shadow is None else
                        f"; into the shadow book, {self.source} feeds the books until failback")
        if problem is not None:
            self.resubscribe(sub.symbol, problem, broken=True)
            return
        book = self._book(sub.symbol)
        book.apply_snapshot(bids, asks)
        sub.rpt_seq = rpt_seq
        sub.synced = True
        streak = self._broken.get(sub.symbol)
        if streak is not None and streak.good_since is None:  # held since the first one
            streak.good_since = sub.last_rx
        checked, sub.checking = sub.checking, None
        if checked is not None:  # the answer to a staleness check
            silent, held = checked
            if book.depth(self.depth) == held:
                log.debug("market data %s: the staleness check was answered with the book "
                          "as held: a quiet market", sub.symbol)
            else:
                log.warning("market data %s: %s: no update for %.1f s, and the snapshot "
                            "answering the resubscribe differs from the book held: updates "
                            "were missed; the book is the snapshot's now", sub.symbol, STALE,
                            silent)
        if self._shadow is not None:
            return
        self._tell("on_snapshot", sub.symbol, book)

    def _incremental(self, msg: fix.Message) -> None:
        req_id = get(msg, m.MD_REQ_ID)
        sub = self._by_req.get(req_id) if req_id is not None else self._attribute(msg)
        if sub is None or not sub.synced:
            return  # from a subscription we replaced, or before its snapshot
        sub.last_rx = self._clock()
        try:
            entries, rpt_seqs = parse_incremental(msg)
        except (ValueError, ArithmeticError, fix.FieldNotFound) as exc:
            # An update that cannot be read is one the book misses: as a gap.
            self.resubscribe(sub.symbol, f"unusable update: {exc}", broken=True)
            return
        updates = [(_SIDES[e.entry_type], e.price, e.qty) for e in entries
                   if e.entry_type in _SIDES]
        if rpt_seqs is not None:  # numbered per message or per entry: see parse_incremental
            first, last = rpt_seqs
            if first != sub.rpt_seq + 1 or last < first:
                self.resubscribe(sub.symbol, f"sequence gap: RptSeq {first} after {sub.rpt_seq}",
                                 broken=True)
                return
            sub.rpt_seq = last
        book = self._book(sub.symbol)
        try:
            book.apply_updates(updates)
        except (ValueError, TypeError, ArithmeticError) as exc:  # a negative size: half done
            self.resubscribe(sub.symbol, f"unusable update: {exc}", broken=True)
            return
        for e in entries:
            if e.entry_type == TRADE:
                book.record_trade(e.price, e.qty, "sell" if e.aggressor == "2" else "buy")
        if book.is_crossed():
            self.resubscribe(sub.symbol, "crossed book after an update", broken=True)
            return
        problem = self._check(sub.symbol, book, get(msg, CHECKSUM_TAG))
        if problem is not None:
            self.resubscribe(sub.symbol, problem, broken=True)
            return
        if self._shadow is not None:
            return
        self._tell("on_update", sub.symbol, book, entries)

    def _attribute(self, msg: fix.Message) -> _Sub | None:
        """The subscription of an incremental without MDReqID (262 is optional in an X): the
        current one of the symbol it names (55, in the body as Kraken sends it, or in every
        entry). It cannot be from a subscription replaced since: the venue ends the old one
        before it answers the new one with a snapshot, and an X before that is ignored (not
        synced). One it cannot be attributed to is dropped and said: once a warning per
        kind of trouble, then debug lines. Dropped, a venue's unlabelled updates left the
        book silently behind the venue's."""
        symbol = get(msg, m.SYMBOL)
        if symbol is None:
            named = set(entry_symbols(msg))
            if len(named) == 1:
                symbol = named.pop()
            else:
                why = ("its entries name no Symbol (55)" if not named else
                       f"its entries name several symbols ({', '.join(sorted(named))}), and "
                       "its one checksum and RptSeq cannot be checked against several books")
                self._drop_unattributed("unnamed" if not named else "several", why)
                return None
        with self._lock:
            sub = self._subs.get(symbol)
        if sub is None:
            self._drop_unattributed(f"unknown {symbol}",
                                    f"no subscription of ours has its symbol {symbol}")
        return sub

    def _drop_unattributed(self, kind: str, why: str) -> None:
        seen = self._unattributed[kind] = self._unattributed.get(kind, 0) + 1
        log.log(logging.WARNING if seen == 1 else logging.DEBUG,
                "market data: an incremental (35=X) without MDReqID (262) dropped: %s (%d "
                "such so far; further ones are debug lines)", why, seen)

    def _check(self, symbol: str, book: Book, checksum: str | None) -> str | None:
        """Why `book` is not the venue's, by its checksum (5041), or None."""
        if checksum is None:
            return None
        inst = self.instruments.get(symbol)
        if inst is None:
            return None  # precision unknown yet: the InstrumentList arrives with the first W
        try:
            ours: int | str = book.checksum(inst.price_decimals, inst.qty_decimals)
        except ValueError as exc:  # a level finer than the instrument's precision: not the
            ours = f"not computable ({exc})"  # venue's book, as the WS client also decides
        if str(ours) != checksum:
            return f"checksum mismatch: venue {checksum}, book {ours}"
        return None

    def _instrument_list(self, msg: fix.Message) -> None:
        found: list[Instrument] = []
        g = fix.Group(m.NO_RELATED_SYM, m.SYMBOL)
        for i in range(1, int(get(msg, m.NO_RELATED_SYM) or "0") + 1):
            msg.getGroup(i, g)
            try:
                found.append(instrument_from_list_entry(g))
            except (fix.FieldNotFound, ValueError, ArithmeticError) as exc:
                log.warning("InstrumentList entry %d unusable: %s", i, exc)
        self.instruments.replace_all(found)
        log.info("instrument list: %d instruments (%s)", len(found),
                 ", ".join(i.symbol for i in found))

    def _rejected(self, msg: fix.Message) -> None:
        """The venue refused a subscription (35=Y). Said once, with the venue's reason, as a
        refusal: not stale (nothing is late, the venue said no) and not once per retry. The
        symbol is retried every `REFUSED_RETRY_S` (`_retry_refused`: one MarketDataRequest a
        minute costs nothing, and a symbol the venue takes again, after a maintenance say, is
        back within the minute), at debug level, with a reminder line on the `Episode`
        schedule (after a minute, then at doubling intervals up to 15 min); a refusal for
        another reason is said again; the snapshot of a retry it takes ends it (`_snapshot`).
        The listeners are told at each refusal, as before: the OMS fan-out withdraws the
        book once (an empty W) and keeps it withdrawn, also for a new subscriber, until the
        snapshot; the symbol stays unhealthy for the market-data failover meanwhile. The
        refusal lasts across logouts: a logon's subscribe refused again is the same one."""
        req_id = msg.getField(m.MD_REQ_ID)
        sub = self._by_req.get(req_id)
        text = get(msg, m.TEXT) or ""
        code = get(msg, m.MD_REQ_REJ_REASON)
        reason = f"MarketDataRequest {req_id} rejected by the venue: {text}"
        if sub is None:  # not a current subscription: nothing waits for it
            log.info("%s (reason %s), for a subscription replaced since", reason, code)
            return
        sub.synced = False
        sub.rejected = True
        self._record_integrity(sub.symbol, reason)
        now = self._clock()
        refusal = self._refusals.get(sub.symbol)
        if refusal is None:
            reminders = Episode(now, first_at=now + REMINDER_FIRST_S)
            self._refusals[sub.symbol] = _Refusal(text, reminders, now + REFUSED_RETRY_S)
            log.error("market data %s: %s (reason %s): refused, not stale; %s; retrying every "
                      "%s", sub.symbol, reason, code,
                      "the OMS's book is withdrawn until it is taken" if self._shadow is None
                      else f"{self.source} feeds the books meanwhile",
                      duration(REFUSED_RETRY_S))
        else:
            refusal.refusals += 1
            if text != refusal.text:  # news: said again
                refusal.text = text
                log.error("market data %s: %s (reason %s): refused for another reason now",
                          sub.symbol, reason, code)
            else:
                log.debug("market data %s: refused again (%s)", sub.symbol, reason)
        if self._shadow is None:
            self._tell("on_integrity", sub.symbol, reason)

    def _retry_refused(self) -> None:
        """Subscribe again each refused symbol whose retry is due (see `_rejected`), with a
        reminder line when the episode's schedule has one due. Not while a subscription of it
        awaits its answer (a logon's, or the last retry's: left unanswered, that one is a
        stall)."""
        for symbol in list(self._refusals):
            with self._owner:
                refusal = self._refusals.get(symbol)
                with self._lock:
                    sub = self._subs.get(symbol)
                if (refusal is None or sub is None or not sub.rejected
                        or self._session is None):
                    continue
                now = self._clock()
                if now < refusal.retry_at:
                    continue
                refusal.retry_at = now + REFUSED_RETRY_S
                if refusal.episode.due(now):
                    log.warning("market data %s: still refused by the venue after %s (%d "
                                "refusals; the venue's reason: %s); retrying every %s",
                                symbol, refusal.episode.lasted(now), refusal.refusals,
                                refusal.text, duration(REFUSED_RETRY_S))
                else:
                    log.debug("market data %s: refused %d times; retrying", symbol,
                              refusal.refusals)
                with self._lock:
                    sub.resubscribes += 1
                self._subscribe(symbol)

    # ---- staleness -----------------------------------------------------------------------------
    @property
    def watch_interval_s(self) -> float:
        """How often the watchdog looks for silent symbols."""
        return min(1.0, self.stale_after_s / 4)

    def _next_wait_s(self) -> float:
        """Until the watchdog's next look: a watch period, or sooner when a backoff ends."""
        wait = self.watch_interval_s
        if self._session is None:
            return wait
        now = self._clock()
        with self._lock:
            dues = [s.due_at for s in self._subs.values() if s.due_at is not None]
        return max(0.01, min([wait, *(d - now for d in dues)]))

    def _watch(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._next_wait_s())
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._send_due()
                self._end_held_streaks()
                self._report_lost()
                self._resubscribe_stale()
            except Exception:
                log.exception("market-data stale check")

    def _unsynced_subscribed(self) -> list[str]:
        """Symbols with a FIX subscription that has no snapshot since its (re)subscribe: the
        ones FIX does not feed (a symbol never subscribed has never had a FIX book)."""
        with self._lock:
            return [s for s in self.symbols
                    if (sub := self._subs.get(s)) is not None and not sub.synced]

    def _source_lost(self, symbols: Iterable[str], why: str) -> None:
        """Tell the listeners that nothing feeds these books now (once per episode: not the
        ones already told, broken or lost, and not snapshotted since). Under the hand-over
        lock, with FIX owning the listeners' books."""
        reason = f"{SOURCE_LOST}: {why}"
        for symbol in symbols:
            if symbol in self._withdrawn:
                continue
            log.warning("market data %s: %s; withdrawn until a fresh snapshot", symbol, reason)
            self._record_integrity(symbol, reason)
            self._tell("on_integrity", symbol, reason)

    def _report_lost(self) -> None:
        """The logout `on_logout` noted: every book FIX fed and has no snapshot for now (one
        that a quick relogon already re-snapshotted is left alone). With another source owning
        the books by now, `hand_over_books` has reported it."""
        if self._lost is None:
            return
        with self._owner:
            why, self._lost = self._lost, None
            if why is None or self._shadow is not None:
                return
            self._source_lost(self._unsynced_subscribed(), why)

    def _resubscribe_stale(self) -> None:
        """Resubscribe each symbol silent longer than `stale_after_s`. The scan is lock-free;
        each candidate is checked again under the hand-over lock, since the QuickFIX thread
        may have resubscribed it (or the venue sent something) in between: resubscribing that
        fresh subscription too would only throw away the snapshot it is waiting for.

        The staleness check is a debug line, not a warning: a symbol nobody trades goes
        silent every `stale_after_s` on a perfectly live session, and its resubscribe is
        answered with a good snapshot in milliseconds (which also makes its book fresh for
        the gate again); a warning each time told ops nothing, for ever. Its answer tells
        quiet from broken: a snapshot with other levels than the book held means updates
        were missed, and that is a warning (`_snapshot`); a resubscribe left unanswered is
        warned of `stale_after_s` later, as a stall (`_resubscribe_unanswered`)."""
        if self._session is None:
            return
        self._retry_refused()
        now = self._clock()
        with self._lock:  # a refused one is not late: the venue said no (`_retry_refused`)
            candidates = [s for s in self._subs.values()  # (not one waiting out a backoff)
                          if now - s.last_rx > self.stale_after_s and not s.rejected
                          and s.due_at is None]
        for sub in candidates:
            with self._owner:
                silent = self._clock() - sub.last_rx
                if (self._session is None or self._subs.get(sub.symbol) is not sub
                        or silent <= self.stale_after_s or sub.rejected
                        or sub.due_at is not None):
                    continue
                if not sub.synced:  # logged on, and nothing answers
                    self._resubscribe_unanswered(sub, silent)
                else:  # quiet, or silent: its answer (or the lack of one) will tell
                    held = self._book(sub.symbol).depth(self.depth)
                    self.resubscribe(sub.symbol, f"{STALE}: no update for {silent:.1f} s",
                                     quiet=True)
                    with self._lock:
                        check = self._subs.get(sub.symbol)
                    if check is not None and not check.synced:
                        check.checking = (silent, held)

    def _resubscribe_unanswered(self, sub: _Sub, silent: float) -> None:
        """Resubscribe a symbol whose subscription the venue left unanswered (logged on but
        stalled), every `stale_after_s` as long as the stall lasts; under the hand-over lock.

        Only the first of a stall is a warning (source lost: the listeners withdraw the book);
        the repeats are debug lines, with a warning reminder of how long it has lasted on the
        `Episode` schedule (after `STALL_REMINDER_FIRST_S`, then at doubling intervals up to
        `STALL_REMINDER_MAX_S`), and one line when a snapshot ends it (`_snapshot`). A
        warning per symbol per `stale_after_s` turned an hour's stall into more than a thousand
        lines that buried everything else. The stall lasts until a snapshot, across logouts: a
        session that flaps while stalled is one episode, not one per logon."""
        now = self._clock()
        reason = f"{SOURCE_LOST}: no snapshot {silent:.1f} s after subscribing"
        stall = self._stalls.get(sub.symbol)
        if stall is None:
            episode = Episode(sub.last_rx, first_at=now)
            episode.due(now)  # this warning is the episode's first line
            self._stalls[sub.symbol] = _Stall(episode)
            self.resubscribe(sub.symbol, reason)
            return
        stall.unanswered += 1
        if stall.episode.due(now):
            log.warning("market data %s: still no snapshot from the venue, %s after the first "
                        "unanswered subscription (%d left unanswered; still resubscribing every ~"
                        "%g s); %s", sub.symbol, stall.episode.lasted(now), stall.unanswered,
                        self.stale_after_s,
                        "the book stays withdrawn" if self._shadow is None else
                        f"{self.source} feeds the books meanwhile")
        self.resubscribe(sub.symbol, reason, quiet=True)

    def subscriptions(self) -> Iterable[tuple[str, str, bool, int]]:
        """(symbol, MDReqID, synced, resubscribes) per symbol, for ops."""
        with self._lock:
            return [(s.symbol, s.req_id, s.synced, s.resubscribes) for s in self._subs.values()]

    # ---- another source owns the books (market-data failover) ---------------------------------
    def _book(self, symbol: str) -> Book:
        """Where a FIX message for `symbol` goes: the shared book, or its shadow."""
        shadow = self._shadow
        return self.books[symbol] if shadow is None else shadow[symbol]

    def logged_on(self) -> bool:
        """The venue MD session is logged on."""
        return self._session is not None

    def health_problem(self) -> str | None:
        """Why FIX market data is unfit to feed the books right now, or None if it is fit (the
        market-data failover policy's health input; it switches only after `failover_after_s`
        of continuous unfitness, so the milliseconds a resubscribe waits for its snapshot do
        not count).

        Fit means logged on, and every symbol live: its current subscription has its verified
        snapshot (one the venue refused, or has not answered, is not live) and it has not been
        silent past `stale_after_s` plus one watch period. A quiet book also goes silent, but
        the watchdog resubscribes it at `stale_after_s` and its fresh snapshot makes it live
        again; a session that is logged on and stalled answers no resubscribe, and its symbols
        stay unfit."""
        if self._session is None:
            return "session not logged on"
        late = self.stale_after_s + self.watch_interval_s
        now = self._clock()
        with self._lock:
            subs = [(s, self._subs.get(s)) for s in self.symbols]
        for symbol, sub in subs:
            if sub is None:
                return f"{symbol} not subscribed"
            if sub.rejected:
                return f"{symbol} refused by the venue"
            if not sub.synced:
                streak = self._broken.get(symbol)
                return (f"{symbol} has no snapshot since its (re)subscribe" if streak is None
                        else f"{symbol}'s book fails its checks ({streak.failures} failures; "
                             f"the latest: {streak.reason})")
            if now - sub.last_rx > late:
                return f"{symbol} silent for more than {late:g}s"
        return None

    def session_steady_s(self) -> float:
        """Seconds since the MD session last logged on or out."""
        return self._clock() - self._session_changed

    def fix_synced(self) -> bool:
        """Logged on, and every subscription the venue did not refuse has had its snapshot
        since the latest (re)subscribe, i.e. the FIX books are complete and verified."""
        if self._session is None:
            return False
        with self._lock:
            subs = [self._subs.get(s) for s in self.symbols]
        return all(sub is not None and (sub.synced or sub.rejected) for sub in subs)

    def unsynced_symbols(self) -> list[str]:
        """Symbols still waiting for a FIX snapshot (for log lines)."""
        with self._lock:
            return [s for s in self.symbols
                    if (sub := self._subs.get(s)) is None or not (sub.synced or sub.rejected)]

    def hand_over_books(self, source: str, announce: Callable[[], None] | None = None) -> None:
        """`source` writes the shared books from now on (through ``apply_external_*``).

        The FIX session carries on into shadow books seeded with the shared books' current
        levels, so a FIX feed that is still up stays in sync and can take the books back.
        `announce` runs under the hand-over lock once `source` is set, after the old source's
        last book event and before the new one's first: where a switch event must be queued
        for event consumers to see it between the two.

        The books FIX was not feeding (logged out, stalled, refused) are withdrawn, if not
        already: until `source`'s first verified snapshot nothing feeds them, and a source
        that never delivers (an unreachable WS) must not leave them frozen and looking live."""
        with self._owner:
            if self._shadow is not None:
                self._set_source(source, announce)
                return
            why = self._lost or ("FIX market data not live" if self._session is not None
                                 else "FIX market-data session not logged on")
            self._lost = None
            self._source_lost(self._unsynced_subscribed(),
                              f"{why}; waiting for the first snapshot from {source}")
            shadow: dict[str, Book] = {}
            for symbol, book in self.books.items():
                copy = Book(symbol, max_depth=self.depth)
                d = book.depth(self.depth)
                copy.apply_snapshot(d.bids, d.asks)
                shadow[symbol] = copy
            self._shadow = shadow
            self._set_source(source, announce)
        log.warning("market data: the books are fed by %s; the FIX MD session feeds shadow "
                    "books until it takes them back", source)

    def take_back_books(self, announce: Callable[[], None] | None = None) -> None:
        """FIX writes the shared books again: every symbol whose FIX snapshot has arrived gets
        the shadow's verified levels and the listeners a snapshot; the others keep the other
        source's last levels, withdrawn (source lost), until their FIX snapshot arrives (which
        then goes to them).
        `announce` as for ``hand_over_books``."""
        with self._owner:
            shadow = self._shadow
            if shadow is None:
                self._set_source("fix", announce)
                return
            self._shadow = None
            self._set_source("fix", announce)
            with self._lock:
                synced = {s for s, sub in self._subs.items() if sub.synced}
            for symbol in self.symbols:
                if symbol not in synced:
                    continue
                book = self.books[symbol]
                d = shadow[symbol].depth(self.depth)
                book.apply_snapshot(d.bids, d.asks)
                self._tell("on_snapshot", symbol, book)
            # The other source stops here and FIX has no snapshot for these yet: nothing feeds
            # them until it arrives (usually withdrawn already: the other source went down).
            self._source_lost([s for s in self.symbols if s not in synced],
                              "the other source stopped; waiting for the FIX snapshot")
        log.warning("market data: the FIX MD session feeds the books again%s",
                    "" if len(synced) == len(self.symbols) else
                    f" (still waiting for the FIX snapshot of "
                    f"{', '.join(s for s in self.symbols if s not in synced)})")

    def _set_source(self, source: str, announce: Callable[[], None] | None) -> None:
        self.source = source
        if announce is not None:
            try:
                announce()
            except Exception:
                log.exception("market-data source change announcement failed")

    def apply_external_snapshot(self, symbol: str, bids: Sequence[tuple[Decimal, Decimal]],
                                asks: Sequence[tuple[Decimal, Decimal]]) -> bool:
        """A verified full book from the source that owns the books; False (ignored) when FIX
        owns them, e.g. a frame that raced the failback."""
        with self._owner:
            if self._shadow is None or symbol not in self.books:
                return False
            book = self.books[symbol]
            book.apply_snapshot(bids, asks)
            self._tell("on_snapshot", symbol, book)
        return True

    def apply_external_update(self, symbol: str, entries: Sequence[MdEntry]) -> bool:
        """Verified level changes and/or trades from the source that owns the books, in the
        FIX feed's own terms (so every listener sees what it would from FIX)."""
        with self._owner:
            if self._shadow is None or symbol not in self.books:
                return False
            book = self.books[symbol]
            updates = [(_SIDES[e.entry_type], e.price, e.qty) for e in entries
                       if e.entry_type in _SIDES]
            if updates:
                book.apply_updates(updates)
            for e in entries:
                if e.entry_type == TRADE:
                    book.record_trade(e.price, e.qty, "sell" if e.aggressor == "2" else "buy")
            self._tell("on_update", symbol, book, entries)
        return True

    def external_integrity(self, symbol: str, reason: str) -> None:
        """The owning source found its copy of `symbol` broken and is rebuilding it."""
        with self._owner:
            if self._shadow is None or symbol not in self.books:
                return
            self._record_integrity(symbol, reason)
            self._tell("on_integrity", symbol, reason)
