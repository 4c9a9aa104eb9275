"""The gateway's Kraken Futures WS ticker client against the simulator's faces over loopback (no
mocks): parsed values equal the scenario and the REST client's parse of the same state, silence
handling (resubscribe one product, reconnect a dead connection), reconnect after a drop, Kraken's
error event, and the REST poller deferring to a live feed and taking over when it dies."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from gateway.transports.kraken_futures_rest import FundingRate, KrakenFuturesRest, PerpTicker
from gateway.transports.kraken_futures_ws import KrakenFuturesWs, parse_ws_ticker
from gateway.transports.perp_poller import PerpPoller
from gateway.venue_sim.futures_rest import FuturesRestServer
from gateway.venue_sim.futures_ws import FuturesWsServer, ws_ticker_json
from gateway.venue_sim.scenarios import get_scenario
from tests.conftest import wait_until

ARB = "PF_ARBUSD"
XBT = "PF_XBTUSD"




@dataclass
class Sink:
    """Records every delivery (ticker, history, source) like the signal runner would get them."""

    got: list[tuple[PerpTicker, list[FundingRate], str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, ticker: PerpTicker, funding: Sequence[FundingRate], *,
                 source: str = "rest") -> None:
        with self.lock:
            self.got.append((ticker, list(funding), source))

    def last(self, symbol: str, source: str | None = None) -> PerpTicker | None:
        with self.lock:
            for t, _, src in reversed(self.got):
                if t.symbol == symbol and (source is None or src == source):
                    return t
        return None

    def count(self, source: str) -> int:
        with self.lock:
            return sum(1 for _, _, s in self.got if s == source)


@pytest.fixture
def venue() -> Iterator[tuple[FuturesRestServer, FuturesWsServer]]:
    rest = FuturesRestServer("arb-crowded-long")
    face = FuturesWsServer(lambda: rest.scenario, ticker_interval_s=0.1,
                           heartbeat_interval_s=0.1)
    rest.start()
    face.start()
    try:
        yield rest, face
    finally:
        face.stop()
        rest.stop()


def test_parsed_values_equal_the_scenario_and_the_rest_parse(
        venue: tuple[FuturesRestServer, FuturesWsServer]) -> None:
    rest, face = venue
    sink = Sink()
    history = KrakenFuturesRest(rest.base_url).historical_funding(ARB)
    client = KrakenFuturesWs(face.url, [ARB, XBT], sink, funding_history=lambda s: history)
    client.start()
    try:
        wait_until(lambda: sink.last(ARB) is not None and sink.last(XBT) is not None)
    finally:
        client.stop()
    fig = get_scenario("arb-crowded-long").perp(ARB)
    t = sink.last(ARB)
    assert t is not None
    assert t.mark_price == fig.mark_price == Decimal("0.11092563")
    assert t.index_price == fig.index_price
    assert t.funding_rate_rel == fig.funding_rate_rel == Decimal("0.0000125")
    assert t.funding_rate_abs == fig.funding_rate_abs
    assert t.funding_rate_prediction_rel == fig.prediction_rel
    assert t.open_interest == fig.open_interest
    assert t.open_interest_usd == fig.open_interest_usd
    assert t.vol24h == fig.vol24h
    assert all(isinstance(v, Decimal) for v in (t.mark_price, t.index_price, t.open_interest))
    # The same state through REST parses to the same ticker, field for field (but last_time:
    # the WS feed has no last-trade time).
    via_rest = KrakenFuturesRest(rest.base_url).tickers()[ARB]
    for name in ("symbol", "mark_price", "index_price", "funding_rate_abs", "funding_rate_rel",
                 "funding_rate_prediction_abs", "open_interest", "vol24h", "bid", "ask", "last",
                 "suspended", "pair"):
        assert getattr(t, name) == getattr(via_rest, name), name
    # Every delivery is marked as the feed's and carries the provider's history.
    _, hist, source = next(g for g in sink.got if g[0].symbol == ARB)
    assert source == "ws"
    assert hist == history and len(hist) == 72
    step = fig.funding_interval_h * 3600
    nft = client.next_funding_time(ARB)
    assert nft is not None and nft % step == 0 and 0 < nft - time.time() <= step


def test_scenario_change_reaches_the_client(
        venue: tuple[FuturesRestServer, FuturesWsServer]) -> None:
    rest, face = venue
    sink = Sink()
    client = KrakenFuturesWs(face.url, [ARB], sink)
    client.start()
    try:
        wait_until(lambda: sink.last(ARB) is not None)
        rest.set_figures(ARB, funding_rate_rel="-0.00002", funding_history_rel=(),
                         open_interest="923456789")
        face.notify()
        wait_until(lambda: (t := sink.last(ARB)) is not None and t.open_interest == 923456789,
                   timeout=3)
        t = sink.last(ARB)
        assert t is not None and t.funding_rate_rel == Decimal("-0.00002")
        assert t.funding_rate_abs == Decimal("-0.00002") * Decimal("0.11092563")
        assert client.is_live(ARB)
        assert client.last_update(ARB) == pytest.approx(time.time(), abs=1.0)
    finally:
        client.stop()


def test_a_silent_product_is_resubscribed_and_a_silent_connection_reopened(
        venue: tuple[FuturesRestServer, FuturesWsServer]) -> None:
    _, face = venue
    sink = Sink()
    client = KrakenFuturesWs(face.url, [ARB, XBT], sink, stale_after_s=0.5,
                             backoff_initial_s=0.05, backoff_max_s=0.2)
    client.start()
    try:
        wait_until(lambda: client.updates(ARB) > 0 and client.updates(XBT) > 0)
        # One product silent, heartbeats and the other product flowing: resubscribe, no reconnect.
        face.stall(ARB, 1.2)
        wait_until(lambda: client.resubscribes >= 1, timeout=3)
        assert not client.is_live(ARB) and client.is_live(XBT)
        assert client.connects == 1 and client.stale_disconnects == 0
        n = client.updates(ARB)
        wait_until(lambda: client.updates(ARB) > n, timeout=5)  # back after the stall
        assert client.is_live(ARB)
        # Nothing at all (no tickers, no heartbeats): the connection is dropped and reopened.
        face.stall(None, 1.0)
        wait_until(lambda: client.stale_disconnects >= 1, timeout=3)
        wait_until(lambda: client.connects >= 2 and client.is_live(ARB), timeout=5)
    finally:
        client.stop()


def test_reconnects_after_the_venue_drops_the_socket_and_tells_on_down(
        venue: tuple[FuturesRestServer, FuturesWsServer]) -> None:
    _, face = venue
    sink = Sink()
    downs: list[float] = []
    client = KrakenFuturesWs(face.url, [ARB], sink, backoff_initial_s=0.05,
                             on_down=lambda: downs.append(time.time()))
    client.start()
    try:
        wait_until(lambda: client.updates(ARB) > 0)
        face.drop_all()
        wait_until(lambda: len(downs) == 1, timeout=3)
        n = client.updates(ARB)
        wait_until(lambda: client.connects == 2 and client.updates(ARB) > n, timeout=5)
        assert face.connections_total == 2
    finally:
        client.stop()


def test_unknown_product_is_reported_and_does_not_block_the_others(
        venue: tuple[FuturesRestServer, FuturesWsServer]) -> None:
    _, face = venue
    sink = Sink()
    client = KrakenFuturesWs(face.url, ["PF_NOPEUSD", ARB], sink)
    client.start()
    try:
        wait_until(lambda: client.updates(ARB) > 0)
        wait_until(lambda: client.last_error is not None)
        assert client.last_error == "error: Invalid product id"
        assert client.updates("PF_NOPEUSD") == 0
    finally:
        client.stop()


def test_no_venue_backs_off_without_raising() -> None:
    sink = Sink()
    client = KrakenFuturesWs("ws://127.0.0.1:9/ws/v1", [ARB], sink, backoff_initial_s=0.05,
                             backoff_max_s=0.1)
    client.start()
    try:
        wait_until(lambda: client.last_error is not None, timeout=5)
        assert not client.connected and not client.is_live(ARB)
    finally:
        client.stop()


def test_parse_ws_ticker_rules() -> None:
    fig = get_scenario("default").perp(XBT)
    msg = ws_ticker_json(fig, time.time())
    t = parse_ws_ticker(msg)
    assert t.funding_rate_rel == fig.funding_rate_rel
    assert t.funding_rate_prediction_abs == fig.funding_rate_prediction_abs
    # Kraken omits zero funding: absent is zero, not unknown.
    for key in ("funding_rate", "funding_rate_prediction", "relative_funding_rate",
                "relative_funding_rate_prediction"):
        msg.pop(key)
    t = parse_ws_ticker(msg)
    assert t.funding_rate_abs == 0 and t.funding_rate_rel == 0
    assert t.funding_rate_prediction_abs == 0 and t.funding_rate_prediction_rel == 0
    # Without the venue's relative figure, the REST rule: inverse relative = absolute × mark.
    inv = {"product_id": "pi_xbtusd", "tag": "perpetual", "markPrice": Decimal("40000"),
           "index": Decimal("39990"), "funding_rate": Decimal("2.5e-10"),
           "openInterest": Decimal(1_000_000), "volume": Decimal(5)}
    t = parse_ws_ticker(inv)
    assert t.symbol == "PI_XBTUSD" and t.funding_rate_rel == Decimal("0.00001")
    assert t.open_interest_usd == Decimal(1_000_000)
    with pytest.raises(ValueError, match="not a perpetual"):
        parse_ws_ticker({**inv, "tag": "quarter"})
    with pytest.raises(ValueError, match="markPrice"):
        parse_ws_ticker({**inv, "markPrice": None})
    with pytest.raises(ValueError, match="index"):
        parse_ws_ticker({k: v for k, v in inv.items() if k != "index"})
    with pytest.raises(ValueError, match="product_id"):
        parse_ws_ticker({**inv, "product_id": ""})


def test_poller_defers_tickers_to_a_live_feed_and_takes_over_when_it_dies(
        venue: tuple[FuturesRestServer, FuturesWsServer]) -> None:
    rest, face = venue
    sink = Sink()
    client: KrakenFuturesWs | None = None
    poller = PerpPoller(KrakenFuturesRest(rest.base_url), [ARB], 0.2, sink, funding_every=1,
                        live_elsewhere=lambda s: client is not None and client.is_live(s))
    client = KrakenFuturesWs(face.url, [ARB], sink, funding_history=poller.funding_history,
                             on_down=poller.wake, stale_after_s=0.5)
    client.start()
    try:
        wait_until(lambda: client.is_live(ARB))
        poller.start()
        wait_until(lambda: poller.cycles >= 4)
        # Feed live: no REST tickers delivered or even fetched, funding history still fetched
        # and handed to the feed's deliveries.
        tickers_before = rest.request_count("/derivatives/api/v3/tickers")
        funding_before = rest.request_count("/derivatives/api/v3/historical-funding-rates")
        rest_deliveries = sink.count("rest")
        wait_until(lambda: poller.cycles >= 8)
        assert rest.request_count("/derivatives/api/v3/tickers") == tickers_before
        assert rest.request_count("/derivatives/api/v3/historical-funding-rates") > funding_before
        assert sink.count("rest") == rest_deliveries
        assert poller.skipped >= 4
        wait_until(lambda: sink.got[-1][1] != [])
        assert len(sink.got[-1][1]) == 72 and sink.got[-1][2] == "ws"
        # Feed gone: REST delivers again.
        client.stop()
        wait_until(lambda: sink.count("rest") > rest_deliveries, timeout=3)
    finally:
        client.stop()
        poller.stop()


def test_poller_delivers_only_perps_the_feed_lacks_and_wake_runs_a_cycle_now(
        venue: tuple[FuturesRestServer, FuturesWsServer]) -> None:
    rest, _ = venue
    sink = Sink()
    poller = PerpPoller(KrakenFuturesRest(rest.base_url), [ARB, XBT], 3600.0, sink,
                        live_elsewhere=lambda s: s == ARB)
    poller.start()
    try:
        wait_until(lambda: poller.cycles == 1 and sink.count("rest") == 1)
        assert sink.last(XBT) is not None and sink.last(ARB) is None
        assert len(poller.funding_history(ARB)) == 72  # fetched for the feed's deliveries
        assert poller.last_update(ARB) is None and poller.last_update(XBT) is not None
        time.sleep(0.3)
        assert poller.cycles == 1  # an hour to the next cycle ...
        poller.wake()
        wait_until(lambda: poller.cycles == 2 and sink.count("rest") == 2, timeout=3)  # ... or now
    finally:
        poller.stop()
