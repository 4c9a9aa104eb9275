"""Kraken spot REST end to end on loopback: the gateway's client against the simulator's face
over a real MatchingEngine (no mocks). API-Sign on the exact bytes sent (kraken-api.md §1), the
order round trip with Decimal figures, FIX/REST sharing one order store, auth errors, every §3
error string classified, idempotent retries, no duplicate AddOrder after a timeout, and both §7
rate counters (client waits/refuses before the venue would say no; a raw client gets the error).
"""

from __future__ import annotations

import base64
import itertools
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from gateway.kraken.auth import NonceSource, spot_api_sign
from gateway.transports.kraken_spot_rest import (
    KrakenRestError,
    KrakenSpotRest,
    LocalRateLimitError,
    classify,
)
from gateway.venue_sim.accounts import Accounts, ApiAccount
from gateway.venue_sim.engine import MatchingEngine, OrdStatus, Side
from gateway.venue_sim.spot_rest import SpotRestServer

# kraken-api.md §1, the official vector.
VEC_SECRET = ("kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtu"
              "Zuj6F1huXg==")
VEC_NONCE = 1616492376594
VEC_BODY = "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"
VEC_SIGN = ("4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8n"
            "dwLUQ==")

KEY = "fixgw-key"
SECRET = base64.b64encode(b"fixgw spot simulator secret for FIXGW, 40+ bytes").decode()
RAW_KEY = "raw-key"
RAW_SECRET = base64.b64encode(b"a raw client that ignores the rate model").decode()
VEC_KEY = "vector-key"

_ids = itertools.count(1)


def clid(prefix: str = "c") -> str:
    return f"{prefix}{next(_ids)}"


def make_accounts() -> Accounts:
    return Accounts([ApiAccount(KEY, SECRET, "FIXGW"), ApiAccount(RAW_KEY, RAW_SECRET, "RAW"),
                     ApiAccount(VEC_KEY, VEC_SECRET, "VEC")])


@pytest.fixture
def engine() -> MatchingEngine:
    return MatchingEngine()


@pytest.fixture
def server(engine: MatchingEngine) -> Iterator[SpotRestServer]:
    srv = SpotRestServer(engine, make_accounts(), tier="starter")
    srv.start()
    yield srv
    srv.close()


def client(srv: SpotRestServer, key: str = KEY, secret: str = SECRET, *,
           nonce: NonceSource | None = None, timeout_s: float = 2.0,
           tier: str = "starter", deadline: bool = True) -> KrakenSpotRest:
    return KrakenSpotRest(srv.base_url, key, secret, nonce or NonceSource(), timeout_s=timeout_s,
                          tier=tier, backoff_initial_s=0.01, backoff_max_s=0.05,
                          add_order_deadline=deadline, deadline_margin_s=0.05)


_raw_nonce = itertools.count(time.time_ns() // 1000 + 10**9)


def raw_post(srv: SpotRestServer, method: str, params: list[tuple[str, str]],
             key: str = RAW_KEY, secret: str = RAW_SECRET,
             nonce: int | None = None) -> dict[str, Any]:
    """A client with no retry and no rate model: exactly one signed request."""
    path = f"/0/private/{method}"
    n = nonce if nonce is not None else next(_raw_nonce)
    body = urllib.parse.urlencode([("nonce", str(n)), *params])
    req = urllib.request.Request(srv.base_url + path, data=body.encode(), method="POST",
                                 headers={"API-Key": key,
                                          "API-Sign": spot_api_sign(secret, path, n, body)})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=5) as resp:
        assert resp.status == 200
        out: dict[str, Any] = json.loads(resp.read(), parse_float=Decimal)
        return out


# ---------------------------------------------------------------------------------------------


def test_api_sign_vector_on_the_exact_bytes_sent(server: SpotRestServer) -> None:
    c = client(server, VEC_KEY, VEC_SECRET, deadline=False, nonce=NonceSource(
        units_per_second=1000, clock_ns=lambda: VEC_NONCE * 1_000_000))
    body, headers = c.sign("/0/private/AddOrder", [("ordertype", "limit"), ("pair", "XBTUSD"),
                                                   ("price", "37500"), ("type", "buy"),
                                                   ("volume", "1.25")], VEC_NONCE)
    assert (body, headers["API-Sign"]) == (VEC_BODY, VEC_SIGN)
    # The real call: the client's first nonce is the vector's, and what reached the socket is
    # byte for byte the vector's payload, signed as Kraken documents.
    res = c.add_order("BTC/USD", "buy", "limit", Decimal("1.25"), Decimal("37500"))
    rec = server.last_request
    assert rec is not None and rec.path == "/0/private/AddOrder"
    assert rec.body == VEC_BODY
    assert rec.headers["api-sign"] == VEC_SIGN and rec.headers["api-key"] == VEC_KEY
    assert res.descr == "buy 1.25000000 XBTUSD @ limit 37500.0"
    assert res.txid is not None and res.txid.startswith("O") and not res.recovered


def test_add_query_open_cancel_roundtrip(server: SpotRestServer, engine: MatchingEngine) -> None:
    c = client(server)
    cl = clid("rt")
    res = c.add_order("BTC/USD", "buy", "limit", Decimal("0.5"), Decimal("40000.0"), "GTC", cl)
    assert res.descr == "buy 0.50000000 XBTUSD @ limit 40000.0"
    assert res.txid is not None
    (o,) = c.open_orders(cl_ord_id=cl).values()
    assert o.txid == res.txid and o.cl_ord_id == cl and o.status == "open"
    assert (o.pair, o.side, o.ord_type) == ("BTC/USD", "buy", "limit")
    assert o.price == Decimal("40000.0") and o.volume == Decimal("0.50000000")
    assert o.vol_exec == 0 and o.closetm is None and isinstance(o.opentm, Decimal)
    # Another participant sells into it: a partial fill shows up with exact figures.
    engine.submit("MM", "mm-1", "BTC/USD", Side.SELL, Decimal("0.2"), Decimal("40000.0"))
    q = c.query_orders([res.txid], trades=True)[res.txid]
    assert q.vol_exec == Decimal("0.20000000") and q.avg_price == Decimal("40000.0")
    assert q.status == "open" and len(q.trades) == 1 and q.trades[0].startswith("T")
    assert c.query_orders([res.txid])[res.txid].trades == ()
    assert c.cancel_order(cl_ord_id=cl) == 1
    q = c.query_orders([res.txid])[res.txid]
    assert q.status == "canceled" and q.closetm is not None and q.vol_exec == Decimal("0.2")
    assert c.open_orders(cl_ord_id=cl) == {}
    assert list(c.closed_orders(cl_ord_id=cl)) == [res.txid]
    # A market IOC and a cancel of a closed order.
    m = c.add_order("BTC/USD", "sell", "market", Decimal("0.0001"), None, "IOC", clid("mk"))
    assert m.descr == "sell 0.00010000 XBTUSD @ market"
    with pytest.raises(KrakenRestError) as ei:
        c.cancel_order(txid=res.txid)
    assert ei.value.errors == ["EOrder:Unknown order"] and ei.value.decision.ord_rej_reason == "5"


def test_order_placed_over_fix_is_visible_and_cancellable(server: SpotRestServer,
                                                           engine: MatchingEngine) -> None:
    (acc,) = engine.submit("FIXGW", "FIX-77", "BTC/USD", Side.BUY, Decimal("0.1"),
                           Decimal("30000.0"))[:1]
    order_id = acc.order.order_id  # type: ignore[union-attr]
    c = client(server)
    open_ = c.open_orders()
    assert open_[order_id].cl_ord_id == "FIX-77" and open_[order_id].price == Decimal("30000.0")
    # Another account (RAW) must not see it.
    assert raw_post(server, "OpenOrders", [])["result"]["open"] == {}
    assert c.cancel_order(txid=order_id) == 1
    snap = engine.order_status("FIXGW", cl_ord_id="FIX-77")
    assert snap is not None and snap.status is OrdStatus.CANCELED


def test_public_endpoints_and_ws_token(server: SpotRestServer) -> None:
    c = client(server)
    assert c.system_status() == "online"
    pairs = c.asset_pairs()
    btc = pairs["BTC/USD"]
    assert (btc["altname"], btc["wsname"], btc["pair_decimals"], btc["lot_decimals"]) == (
        "XBTUSD", "XBT/USD", 1, 8)
    assert Decimal(btc["tick_size"]) == Decimal("0.1") and Decimal(btc["ordermin"]) == \
        Decimal("0.0001")
    token = c.get_ws_token()
    assert server.accounts.owner_of_token(token) == "FIXGW"


def test_auth_errors(server: SpotRestServer) -> None:
    assert raw_post(server, "OpenOrders", [], key="nope")["error"] == ["EAPI:Invalid key"]
    wrong = base64.b64encode(b"not the secret of this key at all").decode()
    assert raw_post(server, "OpenOrders", [], secret=wrong)["error"] == ["EAPI:Invalid signature"]
    assert raw_post(server, "OpenOrders", [], nonce=500)["error"] == []
    assert raw_post(server, "OpenOrders", [], nonce=500)["error"] == ["EAPI:Invalid nonce"]
    assert raw_post(server, "OpenOrders", [], nonce=499)["error"] == ["EAPI:Invalid nonce"]
    # The client retries an invalid nonce exactly once with a fresh one, then reports it.
    raw_post(server, "OpenOrders", [], key=KEY, secret=SECRET, nonce=2**62)
    c = client(server)
    before = server.request_count("/0/private/OpenOrders")
    with pytest.raises(KrakenRestError) as ei:
        c.open_orders()
    assert ei.value.errors == ["EAPI:Invalid nonce"]
    assert server.request_count("/0/private/OpenOrders") - before == 2


@pytest.mark.parametrize(("error", "retry", "reason", "text_part"), [
    ("EGeneral:Invalid arguments", False, "99", "arguments"),
    ("EGeneral:Invalid arguments:volume", False, "99", "volume"),
    ("EGeneral:Invalid arguments:Index unavailable", False, "99", "index price"),
    ("EGeneral:Temporary lockout", False, "99", "locked out"),
    ("EGeneral:Permission denied", False, "99", "permission"),
    ("EGeneral:Internal error", True, "99", "internal"),
    ("EGeneral:Internal error:42", True, "99", "internal"),
    ("EService:Unavailable", True, "99", "unavailable"),
    ("EService:Market in cancel_only mode", False, "2", "cancel-only"),
    ("EService:Market in post_only mode", False, "99", "post-only"),
    ("EService:Deadline elapsed", True, "99", "deadline"),
    ("EService:Busy", True, "99", "busy"),
    ("EService: Throttled: 1700000000", True, "99", "throttled"),
    ("EAPI:Invalid key", False, "99", "API key"),
    ("EAPI:Invalid signature", False, "99", "signature"),
    ("EAPI:Invalid nonce", True, "99", "nonce"),
    ("EAPI:Rate limit exceeded", True, "99", "REST rate limit"),
    ("EOrder:Rate limit exceeded", False, "99", "venue per-pair rate limit"),
    ("EOrder:Insufficient funds", False, "99", "insufficient funds at the venue"),
    ("EOrder:Order minimum not met", False, "13", "minimum"),
    ("EOrder:Cannot open position", False, "99", "position"),
    ("EOrder:Cannot open opposing position", False, "99", "opposing"),
    ("EOrder:Margin allowance exceeded", False, "99", "margin allowance"),
    ("EOrder:Insufficient margin", False, "99", "insufficient margin"),
    ("EOrder:Orders limit exceeded", False, "99", "open orders"),
    ("EOrder:Positions limit exceeded", False, "99", "positions"),
    ("EOrder:Unknown order", False, "5", "unknown order"),
    ("EQuery:Unknown asset pair", False, "1", "unknown pair"),
    ("EOrder:Duplicate cl_ord_id", False, "6", "duplicate"),
    ("EWhatever:Never seen", False, "99", "EWhatever:Never seen"),
])
def test_every_error_string_is_classified(error: str, retry: bool, reason: str,
                                          text_part: str) -> None:
    d = classify(error)
    assert d.retry is retry
    if not retry:
        assert d.ord_rej_reason == reason
    assert text_part.lower() in d.text.lower()
    assert d.fresh_nonce is (error == "EAPI:Invalid nonce")


def test_engine_rejects_map_to_kraken_errors(server: SpotRestServer) -> None:
    c = client(server)
    cases: list[tuple[dict[str, Any], str, str]] = [
        (dict(volume=Decimal("0.00001"), price=Decimal("30000.0")),
         "EOrder:Order minimum not met", "13"),
        (dict(volume=Decimal("0.001"), price=Decimal("30000.05")), "EOrder:Invalid price", "99"),
        (dict(volume=Decimal("0.001"), price=None), "EGeneral:Invalid arguments", "99"),
        (dict(pair="FOO/USD", volume=Decimal("1"), price=Decimal("1")),
         "EQuery:Unknown asset pair", "1"),
    ]
    for kw, prefix, reason in cases:
        pair = kw.pop("pair", "BTC/USD")
        with pytest.raises(KrakenRestError) as ei:
            c.add_order(pair, "buy", "limit", kw["volume"], kw["price"], "GTC", clid("rej"))
        assert ei.value.errors[0].startswith(prefix) and not ei.value.retryable
        assert ei.value.decision.ord_rej_reason == reason
    dup = clid("dup")
    c.add_order("BTC/USD", "buy", "limit", Decimal("0.001"), Decimal("30000.0"), "GTC", dup)
    with pytest.raises(KrakenRestError) as ei:
        c.add_order("BTC/USD", "buy", "limit", Decimal("0.001"), Decimal("30000.0"), "GTC", dup)
    assert ei.value.decision.ord_rej_reason == "6"
    v = c.add_order("BTC/USD", "sell", "limit", Decimal("2"), Decimal("50000"), validate=True)
    assert v.txid is None and v.descr == "sell 2.00000000 XBTUSD @ limit 50000.0"


def test_query_retries_on_503_then_succeeds(server: SpotRestServer) -> None:
    c = client(server)
    server.fail_next(2, 503, path_prefix="/0/private/OpenOrders")
    server.fail_next(1, 200, "EService:Busy", path_prefix="/0/private/OpenOrders")
    assert c.open_orders() == {}
    assert server.request_count("/0/private/OpenOrders") == 4


def test_add_order_timeout_landed_is_not_resent(server: SpotRestServer,
                                                engine: MatchingEngine) -> None:
    c = client(server, timeout_s=0.4)
    cl = clid("to")
    server.set_delay(1.0, n=1, after=True, path_prefix="/0/private/AddOrder")
    res = c.add_order("BTC/USD", "buy", "limit", Decimal("0.01"), Decimal("30000.0"), "GTC", cl)
    assert res.recovered and res.txid is not None
    assert engine.submission_count("FIXGW", cl) == 1
    assert server.request_count("/0/private/AddOrder") == 1
    assert c.open_orders(cl_ord_id=cl)[res.txid].volume == Decimal("0.01")


def test_add_order_timeout_landed_and_closed_is_not_resent(server: SpotRestServer,
                                                           engine: MatchingEngine) -> None:
    engine.submit("MM", "mm-ask", "BTC/USD", Side.SELL, Decimal("1"), Decimal("45000.0"))
    c = client(server, timeout_s=0.4)
    cl = clid("toc")
    server.set_delay(1.0, n=1, after=True, path_prefix="/0/private/AddOrder")
    res = c.add_order("BTC/USD", "buy", "limit", Decimal("0.01"), Decimal("45000.0"), "IOC", cl)
    assert res.recovered
    assert engine.submission_count("FIXGW", cl) == 1
    assert c.query_orders([str(res.txid)])[str(res.txid)].status == "closed"


def test_add_order_that_never_landed_is_resent_once(server: SpotRestServer,
                                                    engine: MatchingEngine) -> None:
    c = client(server)
    cl = clid("nl")
    server.fail_next(1, 503, path_prefix="/0/private/AddOrder")
    res = c.add_order("BTC/USD", "buy", "limit", Decimal("0.01"), Decimal("30000.0"), "GTC", cl)
    assert not res.recovered and res.txid is not None
    assert engine.submission_count("FIXGW", cl) == 1
    assert server.request_count("/0/private/AddOrder") == 2
    # Without a cl_ord_id there is no safe lookup: the failure is raised, nothing resent.
    server.fail_next(1, 200, "EService:Busy", path_prefix="/0/private/AddOrder")
    with pytest.raises(KrakenRestError) as ei:
        c.add_order("BTC/USD", "buy", "limit", Decimal("0.01"), Decimal("30000.0"))
    assert ei.value.retryable and server.request_count("/0/private/AddOrder") == 3


def test_rest_counter_client_waits_raw_client_is_refused(engine: MatchingEngine) -> None:
    with SpotRestServer(engine, make_accounts(), tier="pro") as srv:  # max 20, -1/s
        c = client(srv, tier="pro")
        t0 = time.monotonic()
        for _ in range(23):
            c.open_orders()  # would raise on EAPI:Rate limit exceeded after retries
        elapsed = time.monotonic() - t0
        # 23 calls under a ceiling of 20 decaying at 1/s need at least 3 s of decay.
        assert elapsed >= 3.0, elapsed
        assert c.rate_wait_s >= 3.0
        errors: list[list[str]] = []
        while len(errors) < 60 and ["EAPI:Rate limit exceeded"] not in errors:
            errors.append(raw_post(srv, "OpenOrders", [])["error"])
        assert errors[-1] == ["EAPI:Rate limit exceeded"]
        assert errors[:19] == [[]] * 19


def test_per_pair_counter_client_refuses_locally_raw_client_is_refused(
        server: SpotRestServer) -> None:  # starter: 60, -1/s
    c = client(server)
    placed = 0
    t0 = time.monotonic()
    with pytest.raises(LocalRateLimitError) as ei:
        for _ in range(80):
            c.add_order("BTC/USD", "buy", "limit", Decimal("0.0001"), Decimal("30000.0"), "GTC",
                        clid("pp"))
            placed += 1
    assert 58 <= placed <= 61 + (time.monotonic() - t0), placed  # 60 plus what decayed
    assert "per-pair rate limit" in ei.value.decision.text and ei.value.wait_s > 0
    assert server.engine_counter("FIXGW", "BTC/USD") <= 60
    # Other pairs have their own counter.
    c.add_order("ETH/USD", "buy", "limit", Decimal("0.01"), Decimal("2000.00"), "GTC", clid("e"))
    order = [("ordertype", "limit"), ("pair", "XBTUSD"), ("price", "30000.0"), ("type", "buy"),
             ("volume", "0.0001")]
    errors: list[list[str]] = []
    while len(errors) < 150 and ["EOrder:Rate limit exceeded"] not in errors:
        errors.append(raw_post(server, "AddOrder", order)["error"])
    assert errors[-1] == ["EOrder:Rate limit exceeded"]
    assert errors[:58] == [[]] * 58


def test_cancel_cost_depends_on_order_age(server: SpotRestServer) -> None:
    c = client(server)
    res = c.add_order("ETH/USD", "buy", "limit", Decimal("0.01"), Decimal("2000.00"), "GTC",
                      clid("age"))
    assert 0.9 < server.engine_counter("FIXGW", "ETH/USD") <= 1.0
    assert c.cancel_order(txid=res.txid) == 1
    # +1 add, +8 cancel of an order younger than 5 s (kraken-api.md §7), minus a little decay.
    assert 8.5 < server.engine_counter("FIXGW", "ETH/USD") <= 9.0
    assert 8.5 < c.pair_counter("ETH/USD") <= 9.0


def test_add_order_delayed_in_flight_is_refused_by_deadline_not_duplicated(
        server: SpotRestServer, engine: MatchingEngine) -> None:
    """The hard case: the request is stuck *before* the engine while the client times out.
    The client waits out the deadline, finds nothing, resends; the stuck request then reaches
    the venue after its deadline and is refused, so exactly one order exists."""
    c = client(server, timeout_s=0.3)
    cl = clid("dl")
    server.set_delay(2.4, n=1, after=False, path_prefix="/0/private/AddOrder")
    res = c.add_order("BTC/USD", "buy", "limit", Decimal("0.01"), Decimal("30000.0"), "GTC", cl)
    assert not res.recovered and res.txid is not None
    time.sleep(0.6)  # let the stuck request reach the venue (and be refused)
    assert server.request_count("/0/private/AddOrder") == 2
    assert engine.submission_count("FIXGW", cl) == 1
    assert list(c.open_orders(cl_ord_id=cl)) == [res.txid]


def test_venue_rate_limit_answer_saturates_the_client_model(server: SpotRestServer) -> None:
    """Another process on the same key filled the counter: the venue's answer resets the model
    so the retry waits for real decay instead of hammering."""
    c = client(server)
    server.fail_next(1, 200, "EAPI:Rate limit exceeded", path_prefix="/0/private/OpenOrders")
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if seconds > 1.0:  # the saturated model asks for a real decay wait: proven, stop here
            raise TimeoutError
        time.sleep(seconds)

    c._sleep = sleep
    with pytest.raises(TimeoutError):
        c.open_orders()
    # starter: the ceiling minus headroom needs ~(1 + 0.5) / 0.33 s of decay.
    assert waits[-1] > 4.0, waits
    assert server.request_count("/0/private/OpenOrders") == 1


def test_venue_modes_reject_orders_but_allow_cancels(server: SpotRestServer) -> None:
    c = client(server)
    res = c.add_order("BTC/USD", "buy", "limit", Decimal("0.01"), Decimal("30000.0"), "GTC",
                      clid("md"))
    server.set_status("cancel_only")
    assert c.system_status() == "cancel_only"
    with pytest.raises(KrakenRestError) as ei:
        c.add_order("BTC/USD", "buy", "limit", Decimal("0.01"), Decimal("30000.0"), "GTC",
                    clid("md"))
    assert ei.value.decision.ord_rej_reason == "2" and not ei.value.retryable
    assert server.request_count("/0/private/AddOrder") == 2  # refused, not retried
    assert c.cancel_order(txid=res.txid) == 1
    server.set_status("maintenance")
    server_calls = server.request_count("/0/private/OpenOrders")
    with pytest.raises(KrakenRestError) as ei:
        c.open_orders()
    assert ei.value.errors == ["EService:Unavailable"] and ei.value.retryable
    assert server.request_count("/0/private/OpenOrders") - server_calls == 4  # max_attempts
