"""Kraken Futures REST end to end over loopback: the gateway's client against the simulator's
server (no mocks), the worked example's figures (shared/signals.md §9), Authent (kraken-api.md
§2), retries, and the poller surviving a venue outage."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.kraken.auth import NonceSource
from gateway.transports.kraken_futures_rest import (
    FundingRate,
    KrakenFuturesError,
    KrakenFuturesRest,
    PerpTicker,
)
from gateway.transports.perp_poller import PerpPoller
from gateway.venue_sim.futures_rest import FuturesRestServer
from gateway.venue_sim.scenarios import (
    SCENARIOS,
    ScenarioError,
    get_scenario,
    load_scenario,
)

KEY = "sim-futures-key"
SECRET = base64.b64encode(b"fixgw futures simulator test secret, 40+ bytes").decode()
WRONG_SECRET = base64.b64encode(b"not the simulator's secret at all, also 40 bytes").decode()

# kraken-api.md §2, vector 1 (python-kraken-sdk tests/futures/test_futures_base_api_unit.py).
SDK_SECRET = "cHl0aG9uLWtyYWtlbi1zZGsgdW5pdC10ZXN0IHNlY3JldCB2YWx1ZQ=="
SDK_DATA = "orderType=lmt&symbol=PI_XBTUSD"
SDK_NONCE = "1616492376594"
SDK_AUTHENT = (
    "Txi+gJVXe3EN1brXYQ46FuV6UVtEVSKhc6dYMhPb7a/HXZLGvO6m9UUg+KVKqhLxrbllOPI7qRkHYmPfJZZSGA==")

FUNDING = "/derivatives/api/v3/historical-funding-rates"
TICKERS = "/derivatives/api/v3/tickers"


@pytest.fixture
def server() -> Iterator[FuturesRestServer]:
    srv = FuturesRestServer("default", api_key=KEY, api_secret=SECRET)
    srv.start()
    yield srv
    srv.stop()


def client_for(srv: FuturesRestServer, **kw: object) -> KrakenFuturesRest:
    opts: dict[str, object] = {"timeout_s": 2, "backoff_initial_s": 0.01, "backoff_max_s": 0.05}
    opts.update(kw)
    return KrakenFuturesRest(srv.base_url, **opts)  # type: ignore[arg-type]


def test_tickers_are_decimal_and_only_perpetuals(server: FuturesRestServer) -> None:
    tickers = client_for(server).tickers()
    assert set(tickers) == {"PF_XBTUSD", "PF_ARBUSD"}  # index tickers (in_*) skipped
    for sym, t in tickers.items():
        fig = server.scenario.perp(sym)
        assert isinstance(t, PerpTicker)
        for value in (t.mark_price, t.index_price, t.funding_rate_abs, t.funding_rate_rel,
                      t.open_interest, t.vol24h):
            assert type(value) is Decimal
        assert t.mark_price == fig.mark_price
        assert t.index_price == fig.index_price
        assert t.open_interest == fig.open_interest
        assert t.funding_rate_rel == fig.funding_rate_rel
        assert t.funding_rate_prediction_abs == fig.funding_rate_prediction_abs
        assert t.last_time is not None and t.last_time.tzinfo is not None
        assert t.bid is not None and t.ask is not None and t.bid < t.mark_price < t.ask


def test_worked_example_figures_come_back(server: FuturesRestServer) -> None:
    server.set_scenario("arb-crowded-long")
    client = client_for(server)
    t = client.ticker("PF_ARBUSD")
    # signals.md §9 T1: r = 0.0000125 per 1 h, relative; Kraken's ticker carries abs = r × mark.
    assert t.funding_rate_rel == Decimal("0.0000125")
    assert t.funding_rate_abs == Decimal("0.0000125") * t.mark_price
    assert t.funding_rate_abs != t.funding_rate_rel  # absolute really is on the wire
    assert t.index_price == Decimal("0.111")
    assert (t.mark_price - t.index_price) / t.index_price * 10000 == Decimal("-6.7")
    assert t.funding_rate_rel * 8760 * 10000 == Decimal("1095.0")

    before = datetime.now(UTC)
    history = client.historical_funding("PF_ARBUSD")
    assert len(history) == 72
    assert all(isinstance(r, FundingRate) for r in history)
    assert all(r.funding_rate_rel == Decimal("0.0000125") for r in history)
    assert all(r.funding_rate_abs == r.funding_rate_rel * t.mark_price for r in history)
    gaps = {b.timestamp - a.timestamp for a, b in itertools.pairwise(history)}
    assert gaps == {timedelta(hours=1)}
    last = history[-1].timestamp
    assert last.tzinfo is not None and last.minute == last.second == 0
    assert before - timedelta(hours=1) < last <= before + timedelta(seconds=1)

    # The cohort split is scenario data (Kraken serves none): 78.53e6 / 8.71e6 -> 9.0x.
    pos = server.scenario.perp("PF_ARBUSD").positioning
    assert pos is not None and pos.cohort == "top_accounts"
    assert f"{pos.long_usd / pos.short_usd:.1f}" == "9.0"
    assert t.open_interest_usd >= pos.long_usd


def test_legacy_4h_scenario_spacing(server: FuturesRestServer) -> None:
    server.set_scenario("legacy-4h")
    history = client_for(server).historical_funding("PF_XBTUSD")
    gaps = {b.timestamp - a.timestamp for a, b in itertools.pairwise(history)}
    assert gaps == {timedelta(hours=4)} and history[-1].timestamp.hour % 4 == 0


@pytest.mark.parametrize("symbol", ["ARB/USD", "in_arbusd", "PF_DOGEUSD"])
def test_funding_history_of_non_perpetual_is_http_400(
    server: FuturesRestServer, symbol: str
) -> None:
    with pytest.raises(KrakenFuturesError) as err:
        client_for(server).historical_funding(symbol)
    assert err.value.status == 400 and err.value.error == "invalidArgument"
    assert not err.value.retryable
    assert server.request_count(FUNDING) == 1  # a 4xx is never retried


def test_unknown_ticker_is_not_found(server: FuturesRestServer) -> None:
    with pytest.raises(KrakenFuturesError) as err:
        client_for(server).ticker("PF_NOPEUSD")
    assert err.value.status == 404 and err.value.error == "notFound"


def test_instruments(server: FuturesRestServer) -> None:
    inst = client_for(server).instruments()
    assert inst["PF_XBTUSD"].tick_size == Decimal("0.5")
    assert inst["PF_ARBUSD"].tick_size == Decimal("0.0001")
    assert {i.type for i in inst.values()} == {"flexible_futures"}
    assert all(i.contract_size == 1 and i.tradeable for i in inst.values())


def test_authent_accepted_and_refused(server: FuturesRestServer) -> None:
    accounts = client_for(server, api_key=KEY, api_secret=SECRET).accounts()
    assert accounts["flex"]["type"] == "multiCollateralMarginAccount"
    assert accounts["flex"]["availableMargin"] == Decimal("10000.0")

    for key, secret in ((KEY, WRONG_SECRET), ("someone-else", SECRET)):
        with pytest.raises(KrakenFuturesError) as err:
            client_for(server, api_key=key, api_secret=secret).accounts()
        assert err.value.status == 200 and err.value.error == "authenticationError"
        assert not err.value.retryable

    with pytest.raises(KrakenFuturesError, match="no API key"):
        client_for(server).accounts()


def _raw_accounts(srv: FuturesRestServer, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(srv.base_url + "/derivatives/api/v3/accounts", headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    try:
        with opener.open(req, timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_server_signs_path_without_derivatives_prefix(server: FuturesRestServer) -> None:
    """§2: Authent covers `/api/v3/accounts`; a signature over the full URL path is refused,
    and a replayed nonce is refused as a duplicate."""
    key = base64.b64decode(SECRET)

    def authent(path: str, nonce: str) -> str:
        digest = hashlib.sha256(("" + nonce + path).encode()).digest()
        return base64.b64encode(hmac.new(key, digest, hashlib.sha512).digest()).decode()

    good = {"APIKey": KEY, "Nonce": "1000", "Authent": authent("/api/v3/accounts", "1000")}
    assert _raw_accounts(server, good)[0] == 200
    status, body = _raw_accounts(server, good)  # same nonce again: a replay
    assert (status, body["error"]) == (200, "nonceDuplicate")
    full = {"APIKey": KEY, "Nonce": "1001",
            "Authent": authent("/derivatives/api/v3/accounts", "1001")}
    status, body = _raw_accounts(server, full)
    assert (status, body["result"], body["error"]) == (200, "error", "authenticationError")
    no_nonce = {"APIKey": KEY, "Authent": authent("/api/v3/accounts", "")}
    assert _raw_accounts(server, no_nonce)[0] == 200  # Nonce is optional (§2)


def test_sdk_reference_vector_matches_client_signature() -> None:
    """The python-kraken-sdk vector through the exact method the client signs requests with."""
    client = KrakenFuturesRest("http://127.0.0.1:9", api_key="k", api_secret=SDK_SECRET)
    for path in ("/derivatives/api/v3/sendorder", "/api/v3/sendorder"):
        headers = client.signed_headers(path, SDK_DATA, nonce=SDK_NONCE)
        assert headers == {"APIKey": "k", "Nonce": SDK_NONCE, "Authent": SDK_AUTHENT}


def test_private_calls_use_fresh_increasing_nonces(server: FuturesRestServer) -> None:
    nonces = NonceSource(units_per_second=1000)
    client = client_for(server, api_key=KEY, api_secret=SECRET, nonce=nonces)
    server.fail_next(1, 503, path_prefix="/derivatives/api/v3/accounts")
    client.accounts()  # retried with a new nonce, else the server would say nonceDuplicate
    first = nonces.last
    client.accounts()
    assert nonces.last > first
    assert server.request_count("/derivatives/api/v3/accounts") == 3


def test_503_once_then_200_is_retried(server: FuturesRestServer) -> None:
    server.fail_next(1, 503)
    tickers = client_for(server).tickers()
    assert "PF_ARBUSD" in tickers
    assert server.request_count(TICKERS) == 2


def test_busy_answer_inside_200_and_html_502_are_retried(server: FuturesRestServer) -> None:
    server.fail_next(1, 200, "EService:Busy")
    server.fail_next(1, 502, raw_body="<html>bad gateway</html>")
    assert client_for(server).ticker("PF_XBTUSD").symbol == "PF_XBTUSD"
    assert server.request_count("/derivatives/api/v3/tickers/PF_XBTUSD") == 3


def test_non_retryable_and_exhausted_retries(server: FuturesRestServer) -> None:
    client = client_for(server, max_attempts=3)
    server.fail_next(1, 429, "apiLimitExceeded")
    with pytest.raises(KrakenFuturesError) as err:
        client.tickers()
    assert (err.value.status, err.value.error) == (429, "apiLimitExceeded")
    assert server.request_count(TICKERS) == 1

    server.fail_next(10, 503)
    with pytest.raises(KrakenFuturesError) as err:
        client.tickers()
    assert err.value.status == 503 and err.value.retryable
    assert server.request_count(TICKERS) == 1 + 3
    server.clear_faults()


def test_connection_refused_is_a_clear_error() -> None:
    srv = FuturesRestServer()
    url = srv.base_url
    srv.stop()  # bound then released: nothing listens there
    client = KrakenFuturesRest(url, timeout_s=1, max_attempts=2, backoff_initial_s=0.01)
    with pytest.raises(KrakenFuturesError) as err:
        client.tickers()
    assert err.value.status is None and err.value.retryable
    assert "connection failed" in str(err.value)


def test_runtime_overrides(server: FuturesRestServer) -> None:
    server.set_figures("PF_ARBUSD", funding_rate_rel="-0.00002", basis_bps="5",
                       open_interest_usd="20e6", positioning=None)
    t = client_for(server).ticker("pf_arbusd")
    assert t.funding_rate_rel == Decimal("-0.00002") and t.funding_rate_abs < 0
    assert (t.mark_price - t.index_price) / t.index_price * 10000 == Decimal("5")
    assert abs(t.open_interest_usd - Decimal("20e6")) < t.mark_price
    with pytest.raises(ScenarioError, match="not percent"):
        server.set_figures("PF_ARBUSD", funding_rate_rel="1.25")


def test_poller_delivers_and_survives_restart(server: FuturesRestServer) -> None:
    server.set_scenario("arb-crowded-long")
    got: list[tuple[PerpTicker, list[FundingRate]]] = []
    cond = threading.Condition()

    def on_update(t: PerpTicker, history: list[FundingRate]) -> None:
        with cond:
            got.append((t, history))
            cond.notify_all()

    def wait_for(pred: object, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        with cond:
            while not pred():  # type: ignore[operator]
                left = deadline - time.monotonic()
                assert left > 0, "timed out"
                cond.wait(left)

    client = client_for(server, max_attempts=2, timeout_s=1)
    poller = PerpPoller(client, ["PF_ARBUSD", "PF_XBTUSD"], 0.05, on_update,
                        funding_every=5, max_backoff_s=0.2)
    poller.start()
    try:
        wait_for(lambda: {t.symbol for t, _ in got} == {"PF_ARBUSD", "PF_XBTUSD"})
        arb = next((t, h) for t, h in got if t.symbol == "PF_ARBUSD")
        assert arb[0].funding_rate_rel == Decimal("0.0000125") and len(arb[1]) == 72
        assert poller.last_update("PF_ARBUSD") is not None

        server.stop()
        deadline = time.monotonic() + 5
        while poller.consecutive_failures < 2:
            assert time.monotonic() < deadline, "poller never noticed the outage"
            time.sleep(0.02)
        stopped_at = time.time()  # two failed cycles in a row: no success can be in flight
        assert poller.running
        last_before = poller.last_update("PF_ARBUSD")
        assert last_before is not None and last_before <= stopped_at

        server.start()  # same port
        n = len(got)
        wait_for(lambda: len(got) > n + 2)
        after = poller.last_update("PF_ARBUSD")
        assert after is not None and after > stopped_at
        assert poller.consecutive_failures == 0
        assert "connection failed" in (poller.last_error or "")
    finally:
        poller.stop()
    assert not poller.running


def test_poller_callback_errors_do_not_kill_it(server: FuturesRestServer) -> None:
    calls: list[str] = []

    def bad(t: PerpTicker, history: list[FundingRate]) -> None:
        calls.append(t.symbol)
        raise RuntimeError("consumer bug")

    poller = PerpPoller(client_for(server), ["PF_XBTUSD", "PF_MISSING"], 0.02, bad)
    assert poller.poll_once() == 0
    poller.start()
    deadline = time.monotonic() + 5
    while len(calls) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    poller.stop()
    assert poller.last_update("PF_XBTUSD") is None  # never accepted by the consumer
    assert poller.consecutive_failures == 0


def test_scenario_files(tmp_path: Path) -> None:
    toml = tmp_path / "arb-flip.toml"
    toml.write_text("""
description = "ARB funding turns negative"
base = "arb-crowded-long"
[perps.PF_ARBUSD]
funding_rate_rel = -0.00002
funding_history_len = 24
[perps.PF_ARBUSD.positioning]
cohort = "top_accounts"
long_usd = "10e6"
short_usd = "30e6"
""")
    sc = load_scenario(toml)
    assert sc.name == "arb-flip" and set(sc.perps) == {"PF_ARBUSD", "PF_XBTUSD"}
    arb = sc.perp("PF_ARBUSD")
    assert arb.funding_rate_rel == Decimal("-0.00002")  # TOML float read exactly
    assert arb.mark_price == get_scenario("arb-crowded-long").perp("PF_ARBUSD").mark_price
    assert len(sc.funding_history("PF_ARBUSD", 1_700_000_000)) == 24
    assert sc.perp("PF_XBTUSD") == SCENARIOS["default"].perp("PF_XBTUSD")

    js = tmp_path / "custom.json"
    js.write_text(json.dumps({"name": "btc-only", "perps": {"PF_XBTUSD": {
        "index_price": "60000", "basis_bps": 10, "funding_history_rel": ["0.00001", "0.00003"],
        "open_interest": 100, "vol24h": 50, "funding_interval_h": 8}}}))
    btc = load_scenario(js)
    hist = btc.funding_history("PF_XBTUSD", datetime(2024, 1, 1, 17, 30, tzinfo=UTC))
    assert [h.timestamp for h in hist] == ["2024-01-01T08:00:00.000Z", "2024-01-01T16:00:00.000Z"]
    assert hist[-1].relative_funding_rate == Decimal("0.00003")
    assert hist[-1].funding_rate == Decimal("0.00003") * Decimal("60060")

    bad = tmp_path / "bad.toml"
    bad.write_text("""
name = "bad"
[perps.PF_ARBUSD]
index_price = -1
mark_price = 0.11
funding_rate_rel = 0.00001
open_interest = 10
vol24h = 1
funding_interval_h = 5
colour = "red"
[perps.ARB_USD]
index_price = 1
""")
    with pytest.raises(ScenarioError) as err:
        load_scenario(bad)
    text = str(err.value)
    assert str(bad) in text
    for needle in ("perps.PF_ARBUSD: unknown key(s) colour", "index_price: must be",
                   "funding_interval_h", "perps.ARB_USD: not a perpetual"):
        assert needle in text, needle

    with pytest.raises(ScenarioError, match="not valid TOML"):
        (tmp_path / "broken.toml").write_text("perps = [")
        load_scenario(tmp_path / "broken.toml")


def test_server_serves_a_scenario_file(tmp_path: Path, server: FuturesRestServer) -> None:
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"name": "s", "base": "default",
                             "perps": {"PF_ARBUSD": {"funding_rate_rel": "0.0001"}}}))
    server.set_scenario(f)
    assert client_for(server).ticker("PF_ARBUSD").funding_rate_rel == Decimal("0.0001")
