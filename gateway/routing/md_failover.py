"""Market-data failover: FIX MD session first, Kraken spot WebSocket v2 while FIX market data
is unhealthy, and back to FIX once it is healthy and stable again.

Why it is built this way:

* The books are the feed's ``Book`` objects and nothing else: the gate reads their mid, the
  signal runner their depth, the event sink and the OMS fan-out listen to the feed. So the WS
  side does not get books of its own that others would have to switch to; it writes the feed's
  books through the feed's external-source path (``MarketDataFeed.apply_external_*``), which
  tells the very same listeners in the feed's own terms (snapshot, level entries, trades).
* The WS client keeps its own checksum-verified copy (the CRC32 covers exactly what it holds)
  and :class:`WsBookSource` forwards each verified change as the diff of a top-N view of that
  copy (``TopView``, the depth of the FIX feed). A checksum mismatch makes the client throw its
  copy away and resubscribe; the next verified frame reaches the feed as a snapshot, so the
  shared book and every OMS subscriber are rebuilt from the venue's book, never patched.
* Health is not just "logged on" (``MarketDataFeed.health_problem``): every symbol must be
  live too, i.e. have its snapshot since the latest (re)subscribe, not be refused by the venue
  (35=Y) and not be silent past ``md_stale_after_s`` beyond the watchdog's reach. A session
  that is logged on but stalled answers none of the watchdog's resubscribes, and one whose
  symbols the venue refuses feeds no book for them; both fail over after ``failover_after_s``
  like a logout. A quiet book goes silent too, but its resubscribe is answered within
  milliseconds, far short of ``failover_after_s``. The same health, held for
  ``failback_after_s``, is what failback needs; so while FIX is unhealthy the books stay with
  WS even if WS is down as well (switching between two sources that feed nothing would flap).
* While WS owns the books the FIX MD session, once it is back, feeds shadow books with its
  usual checks. Failback needs FIX healthy for ``failback_after_s`` *and* every symbol's fresh
  FIX snapshot in (``MarketDataFeed.fix_synced``, also the rule for a forced failback), so the
  shared books move from one verified source straight to the other, without a window of stale
  or empty books.
* A WS that cannot be reached while it owns the books (down, firewalled, a wrong URL) feeds
  nothing, and the books stay withdrawn from the OMS until it or FIX delivers a snapshot. The
  client retries with backoff and says the outage in transport terms (the error once, rare
  reminders, how long at reconnect; each attempt at debug); ops also get it in market-data
  terms (``WsBookSource.check_connection``): one warning naming the endpoint
  once it has gone ``heartbeat_timeout_s`` without a connection, rare reminders of how long,
  and one line when it connects.
* The timing and forcing rules are the order path's :class:`TransportPolicy` (``"rest"`` there
  stands for the fallback, here WS); the reasons in our log lines and events are our own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal, TypeAlias

from gateway.config.fallback import MdFallbackConfig
from gateway.marketdata.book import Book
from gateway.marketdata.episode import Episode
from gateway.marketdata.feed import MarketDataFeed
from gateway.marketdata.fix_md import NEW, TRADE, MdEntry, TopView
from gateway.routing.failover import Force, TransportPolicy
from gateway.transports.kraken_ws import KrakenWsPublic, WsTrade

log = logging.getLogger("fixgw.marketdata.failover")

MdSource: TypeAlias = Literal["fix", "ws"]
#: on_switch(from_source, to_source, reason, automatic)
MdSwitchCallback: TypeAlias = Callable[[MdSource, MdSource, str, bool], None]
#: builds the WS client (tests may pass their own settings); same signature as KrakenWsPublic
ClientFactory: TypeAlias = Callable[..., KrakenWsPublic]

WS_DEPTHS = (10, 25, 100, 500, 1000)
WS_SOURCE = "ws"
RECENT_SWITCHES = 100  #: how many switches `MdFailover.switches` keeps
_FORCE: dict[str, Force] = {"auto": "auto", "fix": "fix", "ws": "rest"}
_AGGRESSOR = {"buy": "1", "sell": "2"}


def ws_depth(md_depth: int) -> int:
    """The smallest Kraken WS book depth that covers the feed's depth (Kraken accepts only
    10/25/100/500/1000; the shared book truncates to its own depth anyway)."""
    for d in WS_DEPTHS:
        if d >= md_depth:
            return d
    raise ValueError(f"market-data depth {md_depth} is deeper than Kraken WS serves (1000)")


class WsBookSource:
    """Kraken WS v2 public ``book`` + ``trade`` for the feed's symbols, written into the feed's
    books while the feed has handed them over (see the module docstring)."""

    def __init__(self, feed: MarketDataFeed, url: str, *, heartbeat_timeout_s: float = 5.0,
                 client_factory: ClientFactory = KrakenWsPublic,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.feed = feed
        self._clock = clock
        # The running client's time without a connection (None: connected, or not running),
        # and when its next line is due (see check_connection).
        self._outage: Episode | None = None
        self.url = url
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.client_factory = client_factory
        self.client: KrakenWsPublic | None = None
        self.snapshots = 0  #: verified WS snapshots forwarded (first and after each resync)
        self.updates = 0  #: verified WS updates forwarded
        self._views: dict[str, TopView | None] = {}
        self._lock = threading.Lock()  # views: client thread vs start/stop

    @property
    def running(self) -> bool:
        return self.client is not None

    def up(self) -> bool:
        """Connected: WS is delivering. A client not started yet, or still connecting (an
        unreachable endpoint never gets further), is not up."""
        client = self.client
        return client is not None and client.connected

    def available(self) -> bool:
        """Worth the books, for the policy: up, or not tried yet. Untried has to count, or FIX
        down would never fail over (WS is only tried once it has the books); it is safe since
        the books FIX was not feeding stay withdrawn from the OMS until WS's first verified
        snapshot (``MarketDataFeed.hand_over_books``), so an unreachable WS freezes none."""
        return self.client is None or self.up()

    def revive(self) -> bool:
        """A client whose thread ended (it should not: a bad frame only ends its connection)
        is replaced by a new one; True if it was. Left alone it would own the books for good
        while feeding nothing."""
        client = self.client
        if client is None or client.alive:
            return False
        log.error("market data over WS: the client's thread has ended; starting a new client")
        self.client = None
        client.stop()
        self.start()
        return True

    def start(self) -> None:
        if self.client is not None:
            return
        with self._lock:
            self._views = {s: None for s in self.feed.symbols}
        client = self.client_factory(
            self.url, self.feed.symbols, ws_depth(self.feed.depth), on_book=self._on_book,
            on_trade=self._on_trade, on_integrity=self._on_integrity,
            heartbeat_timeout=self.heartbeat_timeout_s)
        now = self._clock()  # not connected yet
        self._outage = Episode(now, first_at=now + self.heartbeat_timeout_s)
        self.client = client
        client.start()
        log.info("market data over WS: subscribing book (depth %d) and trade for %s at %s",
                 client.depth, ", ".join(self.feed.symbols), self.url)

    def check_connection(self) -> None:
        """Say in market-data terms when the running client cannot reach its endpoint: one
        warning naming it once ``heartbeat_timeout_s`` has passed without a connection (a
        silent connection is given no longer), and one line when it connects. The client's
        own outage lines name the URL and the error but not what depends on it; ops need to
        know that the OMS's books stay withdrawn meanwhile. The reminders of how long (on the
        ``Episode`` schedule) are debug lines here: the client's own reminders, on the same
        schedule, already say it, and two warnings at each reminder were one too many.
        Called by the failover thread."""
        client = self.client
        if client is None:
            return
        now = self._clock()
        outage = self._outage
        if client.connected:
            if outage is not None and outage.lines:
                log.warning("market data over WS: connected to %s after %s without a "
                            "connection", self.url, outage.lasted(now))
            self._outage = None
            return
        if outage is None:  # the connection just ended
            self._outage = Episode(now, first_at=now + self.heartbeat_timeout_s)
            return
        if not outage.due(now):
            return
        if outage.lines == 1:
            log.warning("market data over WS: cannot reach %s: no connection for %s (the "
                        "client keeps retrying with backoff); the OMS's books stay withdrawn "
                        "until a snapshot comes from WS or, once it is back, the FIX MD "
                        "session", self.url, outage.lasted(now))
        else:
            log.debug("market data over WS: still no connection to %s, for %s now; the "
                      "OMS's books stay withdrawn", self.url, outage.lasted(now))

    def stop(self) -> None:
        """Unsubscribe (politely, best effort) and close."""
        client, self.client = self.client, None
        if client is None:
            return
        outage, self._outage = self._outage, None
        if client.connects == 0:  # nothing to unsubscribe, nothing was forwarded
            client.stop()
            tried = "" if outage is None else f" (tried for {outage.lasted(self._clock())})"
            log.warning("market data over WS: closed without ever connecting to %s%s", self.url,
                        tried)
            return
        unsubscribed = client.unsubscribe_all()
        client.stop()
        log.info("market data over WS: %s and closed (%d snapshots, %d updates forwarded, "
                 "%d checksum resyncs)", "unsubscribed" if unsubscribed else "not unsubscribed",
                 self.snapshots, self.updates, client.resyncs)

    # ---- client thread ---------------------------------------------------------------------------
    def _on_book(self, symbol: str, book: Book) -> None:
        with self._lock:
            if symbol not in self._views:
                return
            view = self._views[symbol]
            if view is None:
                view = TopView(self.feed.depth)
                view.reset_from(book)
                self._views[symbol] = view
                entries = None
                bids = sorted(view.bids.items(), reverse=True)
                asks = sorted(view.asks.items())
            else:
                entries = view.advance(book)
        if entries is None:
            if self.feed.apply_external_snapshot(symbol, bids, asks):
                self.snapshots += 1
        elif entries and self.feed.apply_external_update(symbol, entries):
            self.updates += 1

    def _on_trade(self, trade: WsTrade) -> None:
        self.feed.apply_external_update(trade.symbol, [MdEntry(
            NEW, TRADE, trade.price, trade.qty, _AGGRESSOR.get(trade.side))])

    def _on_integrity(self, symbol: str, reason: str) -> None:
        with self._lock:
            if symbol in self._views:
                self._views[symbol] = None  # the next verified frame is a fresh snapshot
        if reason == "checksum":
            text = "WS book checksum mismatch; resubscribed for a fresh snapshot"
        else:
            text = f"WS book {reason}; rebuilt from the next snapshot"
        log.warning("market data %s over WS: %s", symbol, text)
        self.feed.external_integrity(symbol, text)


class MdFailover:
    """Which source feeds the books (FIX MD or WS) and the switches between them.

    A daemon thread evaluates the policy every ``check_interval_s``. ``on_switch`` (logging is
    ours, the callback publishes the ``transport_switch`` event) runs at each switch under the
    feed's hand-over lock: it must only queue, never block."""

    def __init__(self, feed: MarketDataFeed, ws: WsBookSource, *, failover_after_s: float,
                 failback_after_s: float, on_switch: MdSwitchCallback | None = None,
                 force: Literal["auto", "fix", "ws"] = "auto",
                 check_interval_s: float = 0.2) -> None:
        self.feed = feed
        self.ws = ws
        self.on_switch = on_switch
        self.check_interval_s = check_interval_s
        #: the latest switches (from, to, reason); bounded, the count is of them all
        self.switches: deque[tuple[MdSource, MdSource, str]] = deque(maxlen=RECENT_SWITCHES)
        self.switch_count = 0
        # FIX health as the policy last saw it (it starts out assuming FIX up), since when, why
        self._healthy = True
        self._health_changed = time.monotonic()
        self._problem: str | None = None
        self.policy = TransportPolicy(
            self._fix_healthy, ws.available, failover_after_s=failover_after_s,
            failback_after_s=failback_after_s, on_switch=self._switched,
            before_failback=self._ready_to_fail_back, force=_FORCE[force],
            logger=None)  # MdFailover says each switch in market-data words
        self._waiting_for: tuple[str, ...] = ()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, feed: MarketDataFeed, ws_url: str, cfg: MdFallbackConfig,
                    on_switch: MdSwitchCallback | None = None) -> MdFailover:
        ws = WsBookSource(feed, ws_url, heartbeat_timeout_s=cfg.heartbeat_timeout_s)
        return cls(feed, ws, failover_after_s=cfg.failover_after_s,
                   failback_after_s=cfg.failback_after_s, on_switch=on_switch, force=cfg.force,
                   check_interval_s=cfg.check_interval_s)

    @property
    def active(self) -> MdSource:
        return "ws" if self.policy.use_rest() else "fix"

    def set_force(self, force: Literal["auto", "fix", "ws"]) -> None:
        log.info("market-data source policy: force=%s", force)
        self.policy.set_force(_FORCE[force])

    def _fix_healthy(self) -> bool:
        """The policy's FIX health input: ``MarketDataFeed.health_problem`` finds nothing (logged
        on, and every symbol live). Not merely logged on: a session that is logged on but
        stalled, or whose subscriptions the venue refuses, feeds no book, and the watchdog
        would resubscribe it forever. Not logged here: a quiet book is unhealthy for the
        milliseconds its resubscribe takes, and the causes are the feed's log lines; the
        switch says what it was."""
        problem = self.feed.health_problem()
        healthy = problem is None
        if healthy != self._healthy:
            self._healthy = healthy
            self._health_changed = time.monotonic()
        self._problem = problem
        return healthy

    def _health_steady_s(self) -> float:
        """Seconds FIX health has been what it is now."""
        return time.monotonic() - self._health_changed

    def _ready_to_fail_back(self) -> bool:
        """Failback (also a forced one) only onto complete, verified FIX books; while WS is up
        the policy waits, with WS down it fails back and the FIX snapshots follow."""
        if self.feed.fix_synced():
            self._waiting_for = ()
            return True
        waiting = tuple(self.feed.unsynced_symbols())
        if waiting != self._waiting_for:  # once per change, not at every evaluation
            self._waiting_for = waiting
            log.info("failback of market data to FIX waits for the FIX snapshot of %s",
                     ", ".join(waiting) or "(session not logged on)")
        return False

    def _switched(self, old: str, new: str, _reason: str, automatic: bool) -> None:
        """Runs after the policy changed its mind; moves the books and says why."""
        steady = self._health_steady_s()
        if new == "rest":
            if not automatic:
                reason = "forced to ws by operator"
            elif not self.feed.logged_on():
                reason = f"FIX market-data session down for {self.feed.session_steady_s():.1f}s"
            else:
                reason = (f"FIX market data unhealthy for {steady:.1f}s although logged on: "
                          f"{self._problem}")
            # Order matters: the feed first (FIX frames go to shadows, the switch is announced),
            # then the WS client, whose first verified frames are snapshots.
            self.feed.hand_over_books(WS_SOURCE, lambda: self._announce("fix", "ws", reason,
                                                                        automatic))
            self.ws.start()
        else:
            if automatic:
                reason = (f"FIX market-data session logged on and stable for {steady:.1f}s"
                          + ("; every symbol's fresh FIX snapshot arrived"
                             if self.feed.fix_synced() else
                             "; WS is down, the FIX snapshots still due go to the books"))
            else:
                reason = "forced to fix by operator"
            # The feed first: from here on any late WS frame is ignored; then unsubscribe.
            self.feed.take_back_books(lambda: self._announce("ws", "fix", reason, automatic))
            self.ws.stop()

    def _announce(self, frm: MdSource, to: MdSource, reason: str, automatic: bool) -> None:
        """Under the feed's hand-over lock (see ``MarketDataFeed.hand_over_books``), so the
        callback's switch event sorts between the two sources' market-data events."""
        log.warning("market data moved from %s to %s: %s", frm.upper(), to.upper(), reason)
        self.switches.append((frm, to, reason))
        self.switch_count += 1
        if self.on_switch is not None:
            self.on_switch(frm, to, reason, automatic)

    # ---- thread --------------------------------------------------------------------------------
    def evaluate(self) -> MdSource:
        self.policy.evaluate()
        if self.active == "ws":
            self.ws.revive()
            self.ws.check_connection()
        return self.active

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="md-failover", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.ws.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.check_interval_s):
            try:
                self.evaluate()
            except Exception:
                log.exception("market-data failover policy")


__all__ = ["MdFailover", "MdSource", "MdSwitchCallback", "WsBookSource", "ws_depth"]
