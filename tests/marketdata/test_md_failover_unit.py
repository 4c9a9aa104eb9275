"""Market-data failover pieces without gateway processes: the feed's hand-over of its books
(FIX into shadow books, the other source into the shared ones, and back), the WS source writing
the feed's very own Book objects from a real simulator WS face over loopback (checksum fault
included), the failover policy switching to WS after the outage, and the config's errors."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from gateway.kraken.checksum import book_checksum
from gateway.marketdata.book import Book
from gateway.marketdata.feed import MarketDataFeed
from gateway.marketdata.fix_md import TRADE, MdEntry, TopView, build_snapshot
from gateway.marketdata.instruments import Instrument, InstrumentRegistry
from gateway.routing.failover import TransportPolicy
from gateway.routing.md_failover import MdFailover, WsBookSource, ws_depth
from gateway.transports.kraken_ws import KrakenWsPublic
from gateway.venue_sim.accounts import Accounts
from gateway.venue_sim.engine import MatchingEngine
from gateway.venue_sim.flow import SyntheticFlow
from gateway.venue_sim.spot_ws import SpotWsServer
from tests.conftest import wait_until

D = Decimal
BTC, ETH = "BTC/USD", "ETH/USD"


class Recorder:
    """An MdListener that keeps what it was told, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.trades = 0

    def on_snapshot(self, symbol: str, book: Book) -> None:
        self.calls.append(("snapshot", symbol))

    def on_update(self, symbol: str, book: Book, entries: Sequence[MdEntry]) -> None:
        self.calls.append(("update", symbol))
        self.trades += sum(1 for e in entries if e.entry_type == TRADE)

    def on_integrity(self, symbol: str, reason: str) -> None:
        self.calls.append(("integrity", symbol))

    def count(self, kind: str, symbol: str) -> int:
        return sum(1 for c in self.calls if c == (kind, symbol))


def make_feed(symbols: Sequence[str] = (BTC, ETH), depth: int = 10) -> MarketDataFeed:
    reg = InstrumentRegistry()
    reg.replace_all([Instrument.from_precision(BTC, 1, 8, D("0.0001"), D("0.1")),
                     Instrument.from_precision(ETH, 2, 8, D("0.001"), D("0.01"))])
    return MarketDataFeed(symbols, depth, reg, stale_after_s=3600)


class Venue:
    def __init__(self) -> None:
        self.engine = MatchingEngine(seed=5)
        self.flow = SyntheticFlow(self.engine, seed=5, symbols=(BTC, ETH))
        self.flow.seed_books()
        self.server = SpotWsServer(self.engine, Accounts(), heartbeat_interval=0.2)
        self.server.start()

    def levels(self, sym: str, depth: int = 10) -> tuple[list[tuple[D, D]], list[tuple[D, D]]]:
        return self.engine.levels(sym, depth)


@pytest.fixture
def venue() -> Iterator[Venue]:
    v = Venue()
    yield v
    v.server.stop()


def book_is(feed: MarketDataFeed, venue: Venue, sym: str) -> bool:
    d = feed.books[sym].depth(feed.depth)
    return ([tuple(lv) for lv in d.bids], [tuple(lv) for lv in d.asks]) == \
        venue.levels(sym, feed.depth)


def fast_client(*args: object, **kw: object) -> KrakenWsPublic:
    return KrakenWsPublic(*args, backoff_initial=0.05, backoff_max=0.5,  # type: ignore[arg-type]
                          **kw)  # type: ignore[arg-type]


def test_ws_depth_is_the_smallest_kraken_depth_covering_the_feed() -> None:
    assert [ws_depth(n) for n in (1, 5, 10, 11, 25, 26, 1000)] == [10, 10, 10, 25, 25, 100,
                                                                    1000]
    with pytest.raises(ValueError):
        ws_depth(1001)


def test_fix_frames_go_to_shadow_books_while_handed_over_and_come_back_verified() -> None:
    feed = make_feed((BTC,))
    rec = Recorder()
    feed.listeners.append(rec)
    shared = feed.books[BTC]
    try:
        feed._subscribe(BTC)  # no session: registers the subscription only
        (_, req_id, synced, _), = feed.subscriptions()
        assert not synced and feed.unsynced_symbols() == [BTC]
        feed.hand_over_books("ws")
        assert feed.source == "ws"
        # FIX was not feeding BTC (no snapshot since its subscribe): until WS's first snapshot
        # nothing feeds it, so the listeners are told its source is lost.
        assert rec.calls == [("integrity", BTC)]
        rec.calls.clear()

        # The FIX session's snapshot arrives while WS owns the books: shadow only.
        fix_book = Book(BTC)
        fix_book.apply_snapshot([(D("100.0"), D("1")), (D("99.9"), D("2"))],
                                [(D("100.1"), D("3"))])
        view = TopView(10)
        view.reset_from(fix_book)
        feed.on_app_message(build_snapshot(req_id, BTC, view, view.checksum(1, 8)),
                            None, {})  # type: ignore[arg-type]
        assert feed.unsynced_symbols() == []
        assert shared.level_counts() == (0, 0) and rec.calls == []

        # The WS side writes the shared book and the listeners hear it.
        assert feed.apply_external_snapshot(BTC, [(D("200.0"), D("1"))], [(D("200.5"), D("1"))])
        assert feed.apply_external_update(BTC, [MdEntry("0", TRADE, D("200.5"), D("0.1"), "1")])
        assert shared.top().bid == (D("200.0"), D("1")) and len(shared.trades()) == 1
        assert rec.calls == [("snapshot", BTC), ("update", BTC)] and rec.trades == 1

        # Take back: the FIX shadow's verified levels replace WS's, as a snapshot.
        feed.take_back_books()
        assert feed.source == "fix"
        assert feed.books[BTC] is shared
        d = shared.depth(10)
        assert [tuple(lv) for lv in d.bids] == [(D("100.0"), D("1")), (D("99.9"), D("2"))]
        assert [tuple(lv) for lv in d.asks] == [(D("100.1"), D("3"))]
        assert rec.calls[-1] == ("snapshot", BTC)
        # A WS frame that raced the failback is refused and reaches no listener.
        n = len(rec.calls)
        assert not feed.apply_external_snapshot(BTC, [(D("1.0"), D("1"))], [])
        feed.external_integrity(BTC, "late")
        assert len(rec.calls) == n and shared.top().bid == (D("100.0"), D("1"))
    finally:
        feed.stop()


def test_each_hand_over_is_announced_between_the_two_sources_book_events() -> None:
    feed = make_feed((BTC,))
    order: list[str] = []

    class L(Recorder):
        def on_snapshot(self, symbol: str, book: Book) -> None:
            order.append(f"snapshot from {feed.source}")

    feed.listeners.append(L())
    try:
        feed.hand_over_books("ws", lambda: order.append(f"now {feed.source}"))
        feed.apply_external_snapshot(BTC, [(D("1.0"), D("1"))], [(D("2.0"), D("1"))])
        feed._subscribe(BTC)
        with feed._lock:
            next(iter(feed._subs.values())).synced = True
        feed.take_back_books(lambda: order.append(f"now {feed.source}"))
        assert order == ["now ws", "snapshot from ws", "now fix", "snapshot from fix"]
    finally:
        feed.stop()


def test_ws_source_feeds_the_feeds_own_books_and_heals_a_corrupt_checksum(venue: Venue) -> None:
    feed = make_feed(depth=5)  # WS depth 10, the shared books hold 5
    rec = Recorder()
    feed.listeners.append(rec)
    books = dict(feed.books)
    src = WsBookSource(feed, venue.server.url, client_factory=fast_client)
    feed.hand_over_books("ws")
    src.start()
    try:
        for sym in (BTC, ETH):
            wait_until(lambda s=sym: book_is(feed, venue, s), what=f"{sym} first WS book")
        for _ in range(4):
            for _ in range(100):
                venue.flow.step()
            for sym in (BTC, ETH):
                wait_until(lambda s=sym: book_is(feed, venue, s), what=f"{sym} to follow")
        assert feed.books == books and all(feed.books[s] is books[s] for s in books)
        assert rec.count("snapshot", BTC) == 1 and rec.count("update", BTC) > 50
        assert rec.trades > 0 and feed.books[BTC].trades()
        assert src.client is not None and src.client.resyncs == 0

        # A corrupted checksum: the client resubscribes; the shared book is rebuilt from the
        # fresh snapshot (listeners: integrity, then snapshot) and follows the venue again.
        venue.server.corrupt_next_checksum(BTC)
        wait_until(lambda: (venue.flow.step(), rec.count("integrity", BTC) >= 1)[1],
                   what="the checksum mismatch")
        wait_until(lambda: rec.count("snapshot", BTC) == 2, what="the fresh snapshot")
        assert src.client.resyncs == 1
        assert any("checksum" in r for s, r in feed.integrity_events if s == BTC)
        for _ in range(100):
            venue.flow.step()
        wait_until(lambda: book_is(feed, venue, BTC), what="BTC after the resync")
        wait_until(lambda: book_is(feed, venue, ETH), what="ETH (never disturbed)")
        assert rec.count("snapshot", ETH) == 1
        inst = feed.instruments.get(BTC)
        assert inst is not None
        assert feed.books[BTC].checksum(1, 8) == book_checksum(*venue.levels(BTC, 5), 1, 8)
    finally:
        src.stop()
        feed.stop()


def test_ws_source_stop_unsubscribes_at_the_venue(venue: Venue) -> None:
    feed = make_feed()
    src = WsBookSource(feed, venue.server.url, client_factory=fast_client)
    feed.hand_over_books("ws")
    src.start()
    try:
        wait_until(lambda: book_is(feed, venue, BTC), what="first WS book")
        conns = list(venue.server._conns)
        # The trade subscriptions go out after the book ones: a book can be in first.
        wait_until(lambda: [(len(c.books), len(c.trades)) for c in conns] == [(2, 2)],
                   what="both symbols' book and trade subscriptions at the venue")
        feed.take_back_books()
        src.stop()
        assert not src.running
        # The venue saw the unsubscribes (before the socket closed, it held no subscription).
        wait_until(lambda: not venue.server._conns, what="connection closed")
        assert (len(conns[0].books), len(conns[0].trades)) == (0, 0)
    finally:
        src.stop()
        feed.stop()


def test_policy_fails_over_to_ws_after_the_configured_outage(
        venue: Venue, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    feed = make_feed()
    switches: list[tuple[str, str, str, bool]] = []
    src = WsBookSource(feed, venue.server.url, client_factory=fast_client)
    fo = MdFailover(feed, src, failover_after_s=0.5, failback_after_s=1.0,
                    on_switch=lambda *a: switches.append(a), check_interval_s=0.05)
    t0 = time.monotonic()
    fo.start()
    try:
        # The FIX MD session never logs on here: WS after 0.5 s, not before.
        wait_until(lambda: fo.active == "ws", what="failover")
        assert time.monotonic() - t0 >= 0.5
        assert switches and switches[0][:2] == ("fix", "ws") and switches[0][3] is True
        assert "FIX market-data session down for" in switches[0][2]
        assert feed.source == "ws"
        wait_until(lambda: book_is(feed, venue, BTC) and book_is(feed, venue, ETH),
                   what="books over WS")
        # FIX is still down: no failback however long we wait.
        time.sleep(0.3)
        assert fo.active == "ws" and len(switches) == 1
        # Ops pin FIX while its session is down: the books are not dropped; the switch waits
        # for complete FIX books (the venue is up, so WS stays).
        fo.set_force("fix")
        time.sleep(0.2)
        assert fo.active == "ws" and feed.source == "ws" and src.running
        assert len(switches) == 1
        fo.set_force("auto")
        assert fo.active == "ws"
        # Ops read market-data wording only: none of the order policy's (FIX trading, REST).
        texts = [r.getMessage() for r in caplog.records]
        assert any(t.startswith("market data moved from FIX to WS: FIX market-data session")
                   for t in texts)
        assert any("failback of market data to FIX waits for the FIX snapshot" in t
                   for t in texts)
        assert not [t for t in texts if "REST" in t or "trading session" in t]
        # ... while the order path's policy, on other threads, still logs its own lines.
        order = TransportPolicy(lambda: False, lambda: True, failover_after_s=0,
                                failback_after_s=0, on_switch=lambda *a: None)
        order.evaluate()
        assert any(r.getMessage().startswith("transport switch fix -> rest: FIX trading")
                   for r in caplog.records)
    finally:
        fo.stop()
        feed.stop()


def test_forcing_ws_switches_at_once_and_says_so(venue: Venue) -> None:
    feed = make_feed()
    switches: list[tuple[str, str, str, bool]] = []
    src = WsBookSource(feed, venue.server.url, client_factory=fast_client)
    fo = MdFailover(feed, src, failover_after_s=60, failback_after_s=60, force="ws",
                    on_switch=lambda *a: switches.append(a))
    try:
        assert fo.evaluate() == "ws"
        assert switches == [("fix", "ws", "forced to ws by operator", False)]
        wait_until(lambda: book_is(feed, venue, BTC), what="books over WS")
    finally:
        fo.stop()
        feed.stop()


@pytest.mark.parametrize(("toml", "needle"), [
    ("[venue.md_fallback]\nfailover_after_s = -1\n",
     "venue.md_fallback.failover_after_s: Input should be greater than or equal to 0"),
    ('[venue.md_fallback]\nws_url = "http://x"\n',
     "venue.md_fallback.ws_url: must be a ws:// or wss:// URL"),
    ('[venue.md_fallback]\nforce = "rest"\n', "venue.md_fallback.force: Input should be"),
    ("[venue.md_fallback]\nmd_failover_after_s = 1\n",
     "venue.md_fallback.md_failover_after_s: unknown field"),
    ("[venue.md_fallback]\nenabled = true\n[simulator]\nenabled = false\n"
     "[venue.trading]\nport = 1\n[venue.market_data]\nport = 2\n",
     "venue.md_fallback.ws_url: must be set when the embedded simulator is "
     "disabled"),
])
def test_bad_md_fallback_config_names_file_and_field(tmp_path: Path, toml: str,
                                                     needle: str) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert f"{path}: {needle}" in str(exc.value), str(exc.value)


def test_md_fallback_config_defaults_and_values(tmp_path: Path) -> None:
    assert not load_config(None).venue.md_fallback.enabled
    path = tmp_path / "gw.toml"
    path.write_text('[venue.md_fallback]\nenabled = true\nws_url = "wss://ws.kraken.com/v2"\n'
                    "failover_after_s = 1.5\nfailback_after_s = 3\n")
    cfg = load_config(path).venue.md_fallback
    assert (cfg.enabled, cfg.ws_url, cfg.failover_after_s, cfg.failback_after_s) == (
        True, "wss://ws.kraken.com/v2", 1.5, 3.0)


def fix_snapshot(feed: MarketDataFeed, symbol: str, bids: list[tuple[D, D]],
                 asks: list[tuple[D, D]]) -> None:
    """Deliver a venue FIX snapshot (35=W) for the symbol's current subscription."""
    req_id = next(r for s, r, _, _ in feed.subscriptions() if s == symbol)
    book = Book(symbol)
    book.apply_snapshot(bids, asks)
    view = TopView(10)
    view.reset_from(book)
    inst = feed.instruments.get(symbol)
    assert inst is not None
    feed.on_app_message(build_snapshot(req_id, symbol, view,
                                       view.checksum(inst.price_decimals, inst.qty_decimals)),
                        None, {})  # type: ignore[arg-type]


def test_failback_waits_for_every_fresh_fix_snapshot(venue: Venue) -> None:
    feed = make_feed()
    for s in (BTC, ETH):
        feed._subscribe(s)  # no session yet: registers the subscriptions only
    src = WsBookSource(feed, venue.server.url, client_factory=fast_client)
    fo = MdFailover(feed, src, failover_after_s=0, failback_after_s=0.3, check_interval_s=0.05)
    fo.start()
    try:
        wait_until(lambda: fo.active == "ws" and book_is(feed, venue, BTC), what="WS books")
        # The FIX MD session logs on (as QuickFIX's onLogon would record it) ...
        feed._session = object()  # type: ignore[assignment]
        feed._session_changed = time.monotonic()
        time.sleep(0.8)  # well past failback_after_s
        # ... but without its snapshots the books stay with WS.
        assert fo.active == "ws" and feed.source == "ws" and src.running
        assert book_is(feed, venue, BTC)
        fix_snapshot(feed, BTC, [(D("100.0"), D("1"))], [(D("100.5"), D("2"))])
        time.sleep(0.3)
        assert fo.active == "ws" and feed.unsynced_symbols() == [ETH]
        fix_snapshot(feed, ETH, [(D("10.00"), D("3"))], [(D("10.05"), D("4"))])
        wait_until(lambda: fo.active == "fix", what="failback")
        assert feed.source == "fix" and not src.running
        assert feed.books[BTC].top() == ((D("100.0"), D("1")), (D("100.5"), D("2")))
        assert feed.books[ETH].top() == ((D("10.00"), D("3")), (D("10.05"), D("4")))
        (_, _, reason), = [sw for sw in fo.switches if sw[1] == "fix"]
        assert "every symbol's fresh FIX snapshot arrived" in reason
    finally:
        feed._session = None
        fo.stop()
        feed.stop()


def test_ws_connection_lost_and_back_rebuilds_the_books(venue: Venue) -> None:
    feed = make_feed()
    rec = Recorder()
    feed.listeners.append(rec)
    src = WsBookSource(feed, venue.server.url, client_factory=fast_client)
    feed.hand_over_books("ws")
    src.start()
    try:
        wait_until(lambda: book_is(feed, venue, BTC) and book_is(feed, venue, ETH),
                   what="first WS books")
        venue.server.drop_all()
        wait_until(lambda: rec.count("integrity", BTC) == 1 and rec.count("integrity", ETH) == 1,
                   what="both books marked broken")
        for _ in range(100):
            venue.flow.step()  # the venue moves on while we are away
        wait_until(lambda: rec.count("snapshot", BTC) == 2 and rec.count("snapshot", ETH) == 2,
                   what="fresh snapshots after the reconnect")
        wait_until(lambda: book_is(feed, venue, BTC) and book_is(feed, venue, ETH),
                   what="books equal the venue's again")
        assert src.client is not None and src.client.connects == 2
    finally:
        src.stop()
        feed.stop()


class _UnreachableClient:
    """A WS client whose endpoint does not answer until the test says so (`connected`)."""

    def __init__(self, url: str, symbols: Sequence[str], depth: int, **_: object) -> None:
        self.url, self.depth = url, depth
        self.connected = False
        self.connects = 0
        self.resyncs = 0
        self.alive = True

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.alive = False

    def unsubscribe_all(self) -> bool:
        return True


def test_an_unreachable_ws_is_one_warning_rare_reminders_and_one_line_when_it_connects(
        caplog: pytest.LogCaptureFixture) -> None:
    """WS owns the books and its endpoint does not answer for an hour (the failover thread
    checks five times a second): one warning naming the endpoint after heartbeat_timeout_s,
    a handful of reminders saying how long at debug level (the client's own reminders are
    the warnings), one line when it connects; and a client that never connected is closed
    as such, not "unsubscribed"."""
    caplog.set_level(logging.DEBUG, "fixgw.marketdata.failover")
    now = [1000.0]
    url = "ws://127.0.0.1:9/v2"
    clients: list[_UnreachableClient] = []

    def factory(*args: object, **kw: object) -> _UnreachableClient:
        clients.append(_UnreachableClient(*args, **kw))  # type: ignore[arg-type]
        return clients[-1]

    src = WsBookSource(make_feed(), url, heartbeat_timeout_s=2.0,
                       client_factory=factory, clock=lambda: now[0])  # type: ignore[arg-type]

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

    src.start()
    for _ in range(5 * 3600):
        now[0] += 0.2
        src.check_connection()
    warned = lines()
    assert len(warned) == 1 and warned[0].startswith(
        f"market data over WS: cannot reach {url}: no connection for 2."), warned
    assert "the OMS's books stay withdrawn" in warned[0]
    reminded = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG
                and r.getMessage().startswith(f"market data over WS: still no connection to "
                                              f"{url}, for ")]
    assert 2 <= len(reminded) <= 10, reminded
    caplog.clear()
    clients[0].connected = True
    clients[0].connects = 1
    for _ in range(10):
        now[0] += 0.2
        src.check_connection()
    assert lines() == [f"market data over WS: connected to {url} after 1 h 00 min 00 s "
                       f"without a connection"]
    caplog.clear()
    src.stop()
    assert [r.getMessage() for r in caplog.records] == [
        "market data over WS: unsubscribed and closed (0 snapshots, 0 updates forwarded, "
        "0 checksum resyncs)"]

    caplog.clear()  # a second client that never connects: closed as such
    src.start()
    now[0] += 30
    src.check_connection()
    src.stop()
    assert lines()[-1] == (f"market data over WS: closed without ever connecting to {url} "
                           f"(tried for 30.0 s)")
