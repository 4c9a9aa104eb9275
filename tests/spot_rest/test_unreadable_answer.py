"""An AddOrder answered with HTTP 200 but a body we cannot read (a proxy's HTML page, a
truncated or reshaped JSON) says nothing about whether the venue placed the order: the client
must call it ambiguous (the gateway then looks the ClOrdID up), never a clean reject that the
FIX client would take as "no order" while it may be live. Loopback HTTP server, one answer per
request from a script."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gateway.kraken.auth import NonceSource
from gateway.transports.kraken_spot_rest import KrakenRestError, KrakenSpotRest

SECRET = base64.b64encode(b"unreadable answer test secret").decode()


class _Scripted(ThreadingHTTPServer):
    answers: list[tuple[int, bytes]]
    paths: list[str]


class _Handler(BaseHTTPRequestHandler):
    server: _Scripted

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.paths.append(self.path)
        status, body = self.server.answers.pop(0) if self.server.answers else (
            200, b'{"error":[],"result":{"open":{}}}')
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[_Scripted]:
    srv = _Scripted(("127.0.0.1", 0), _Handler)
    srv.answers, srv.paths = [], []
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("body", [b"<html>502 Bad Gateway</html>", b'{"error":[]}',
                                  b'{"error":[],"result":{"txid":["O'])
def test_add_order_unreadable_200_is_ambiguous(stub: _Scripted, body: bytes) -> None:
    c = KrakenSpotRest(f"http://127.0.0.1:{stub.server_port}", "k", SECRET, NonceSource(),
                       timeout_s=1, add_order_deadline=False, max_attempts=1)
    stub.answers.append((200, body))
    with pytest.raises(KrakenRestError) as ei:
        c.add_order("BTC/USD", "buy", "limit", Decimal("1"), Decimal("30000"), "GTC", "u1")
    assert ei.value.ambiguous


def test_add_order_unreadable_200_is_looked_up_not_rejected(stub: _Scripted) -> None:
    """With retries: looked up by cl_ord_id (OpenOrders, ClosedOrders), then sent again only
    because the venue does not know it."""
    c = KrakenSpotRest(f"http://127.0.0.1:{stub.server_port}", "k", SECRET, NonceSource(),
                       timeout_s=1, add_order_deadline=False, backoff_initial_s=0.001)
    stub.answers.extend([(200, b"<html>oops</html>"),
                         (200, b'{"error":[],"result":{"open":{}}}'),
                         (200, b'{"error":[],"result":{"closed":{}}}'),
                         (200, b'{"error":[],"result":{"descr":{"order":"x"},'
                               b'"txid":["OABCDE-FGHIJ-KLMNOP"]}}')])
    res = c.add_order("BTC/USD", "buy", "limit", Decimal("1"), Decimal("30000"), "GTC", "u2")
    assert res.txid == "OABCDE-FGHIJ-KLMNOP"
    assert stub.paths == ["/0/private/AddOrder", "/0/private/OpenOrders",
                          "/0/private/ClosedOrders", "/0/private/AddOrder"]


@pytest.mark.parametrize("error", ["EGeneral:Internal error", "EService:Busy"])
def test_an_answer_that_may_come_for_a_placed_order_on_the_last_attempt_is_ambiguous(
        stub: _Scripted, error: str) -> None:
    """An internal error or busy may answer an AddOrder the venue carried out. On the last
    attempt it is raised as ambiguous, so the fallback looks the ClOrdID up (off the OMS
    thread) instead of rejecting what may be a live order; nothing is sent again."""
    c = KrakenSpotRest(f"http://127.0.0.1:{stub.server_port}", "k", SECRET, NonceSource(),
                       timeout_s=1, add_order_deadline=False, max_attempts=1)
    stub.answers.append((200, f'{{"error":["{error}"]}}'.encode()))
    with pytest.raises(KrakenRestError) as ei:
        c.add_order("BTC/USD", "buy", "limit", Decimal("1"), Decimal("30000"), "GTC", "u3")
    assert ei.value.ambiguous and ei.value.errors == [error]
    assert stub.paths == ["/0/private/AddOrder"]


def test_a_refusal_at_the_api_s_door_on_the_last_attempt_stays_a_refusal(
        stub: _Scripted) -> None:
    """A REST rate limit refuses before the venue acts: the order is not live, the OMS gets
    the reject with its reason."""
    c = KrakenSpotRest(f"http://127.0.0.1:{stub.server_port}", "k", SECRET, NonceSource(),
                       timeout_s=1, add_order_deadline=False, max_attempts=1)
    stub.answers.append((200, b'{"error":["EAPI:Rate limit exceeded"]}'))
    with pytest.raises(KrakenRestError) as ei:
        c.add_order("BTC/USD", "buy", "limit", Decimal("1"), Decimal("30000"), "GTC", "u4")
    assert not ei.value.ambiguous
