"""Held orders are released (sent in arrival order, once) on the REST fallback's own thread,
and the OMS session's thread never waits for the venue calls of that release.

Before: `RestFallback.release_held` held the hold-queue lock for the whole drain, REST AddOrder
calls included, so a new order or a cancel of a held order from the OMS blocked its QuickFIX
thread (no other message handled, heartbeats late) until every held order had been sent.

* `test_oms_is_answered_while_a_slow_release_is_in_flight`: real processes (simulator, gateway,
  OMS FIX client) with a proxy in front of the simulator's spot REST face that holds AddOrder
  answers back: while the first held order's AddOrder is in flight, a new order is answered
  PendingNew at once and held behind the others, a cancel of a still-queued held order is
  answered at once, and a cancel of the order being sent goes to the venue like any cancel.
* the in-process tests drive the gateway's router and REST fallback against the simulator's
  spot REST face over loopback HTTP, to hit the instant the release has taken an order but not
  sent it yet (a cancel then is refused, never reported as canceled while held) and to check
  that a full queue and an order held too long are still rejected.
"""

from __future__ import annotations

import base64
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import quickfix as fix

from gateway.config.risk import GateConfig
from gateway.fix import messages as m
from gateway.kraken.auth import NonceSource
from gateway.orders.model import Order
from gateway.orders.store import OrderStore
from gateway.risk.gate import Gate, GateOrder
from gateway.risk.validation import OrderValidator
from gateway.routing.failover import RestFallback, TransportPolicy
from gateway.routing.router import OmsContext, Router
from gateway.transports.kraken_spot_rest import KrakenSpotRest
from gateway.venue_sim.accounts import Accounts, ApiAccount
from gateway.venue_sim.engine import MatchingEngine
from gateway.venue_sim.spot_rest import SpotRestServer
from tests.conftest import new_id, tag_fields, wait_until
from tests.integration.test_failover import Recorder
from tests.integration.test_failover_orders import fallback_toml
from tests.procs import VenueStack

# ---- over real processes ---------------------------------------------------------------------


class SlowAddOrder:
    """An HTTP proxy in front of the simulator's spot REST face. Every request is passed on at
    once; the answer to the first AddOrder is held back until `answer_first` is set (at most
    `hold_max_s`, below the gateway's REST timeout), the others `delay_s`: the order is booked
    at the venue, the gateway's release is stuck waiting for the answer. Records what went by,
    in order."""

    def __init__(self, upstream: str, delay_s: float = 0.1, hold_max_s: float = 4.0) -> None:
        self.upstream = upstream
        self.delay_s = delay_s
        self.hold_max_s = hold_max_s
        self.answer_first = threading.Event()
        self.lock = threading.Lock()
        self.adds: list[dict[str, str]] = []        # AddOrder params, in arrival order
        self.answered: set[str] = set()              # venue ClOrdIDs whose AddOrder is answered
        self.cancels: list[dict[str, str]] = []      # CancelOrder params, in arrival order
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy.forward(self)

            def do_POST(self) -> None:
                proxy.forward(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, name="slow-rest", daemon=True).start()

    def forward(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        params = dict(urllib.parse.parse_qsl(body.decode()))
        method = h.path.split("?")[0].rsplit("/", 1)[-1]
        first = False
        with self.lock:
            if method == "AddOrder":
                first = not self.adds
                self.adds.append(params)
            elif method == "CancelOrder":
                self.cancels.append(params)
        headers = {k: v for k, v in h.headers.items()
                   if k.lower() not in ("host", "content-length", "connection")}
        req = urllib.request.Request(self.upstream + h.path, data=body if body else None,
                                     headers=headers, method=h.command)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        if method == "AddOrder":
            if first:
                self.answer_first.wait(self.hold_max_s)
            else:
                time.sleep(self.delay_s)
            with self.lock:
                self.answered.add(params.get("cl_ord_id", ""))
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(raw)))
        h.end_headers()
        h.wfile.write(raw)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_oms_is_answered_while_a_slow_release_is_in_flight(tmp_path: Path) -> None:
    proxy: SlowAddOrder | None = None
    try:
        with VenueStack(tmp_path, clients=("FIXGW",)) as v:
            sim = v.sim
            proxy = SlowAddOrder(f"http://127.0.0.1:{sim.spot_rest_port}")
            try:
                _slow_release(v, proxy)
            finally:
                proxy.answer_first.set()  # the release finishes before the gateway stops
    finally:
        if proxy is not None:
            proxy.close()  # after the gateway: it must not stop in the middle of REST calls


def _slow_release(v: VenueStack, proxy: SlowAddOrder) -> None:
    sim = v.sim
    v.gateway(venue_toml=fallback_toml(sim, rest_url=proxy.url, failback_after_s=60,
                                       hold_max_s=20))
    oms = v.oms()
    rec = Recorder(oms)
    v.take_fix_down(30)
    h1 = oms.buy("0.01", "30000.0")
    h2 = oms.buy("0.02", "30000.0")
    h3 = oms.buy("0.03", "30000.0")
    for cl in (h1, h2, h3):
        rec.report(cl, "A", timeout=5)

    # Failover: the release sends h1; the venue books it, its answer is held back.
    wait_until(lambda: proxy.adds, 10, "the release's first AddOrder")
    assert proxy.adds[0]["volume"] == "0.01"
    h1_venue = proxy.adds[0]["cl_ord_id"]

    # A new order now: held behind h2 and h3 (and h1, being sent), answered at once.
    # Before: the OMS session's thread was blocked until the whole drain was done.
    n = oms.buy("0.04", "30000.0")
    pn = rec.report(n, "A", timeout=2.0)
    assert "held" in pn.fields[58]
    # A held order still queued is canceled at once; it never reaches the venue.
    x3 = new_id("X")
    oms.send("F", [(11, x3), (41, h3), (55, "BTC/USD"), (54, "1"), (38, "0.03"),
                   (60, m.utc_timestamp())])
    c3 = rec.report(x3, "4", timeout=2.0)
    assert c3.fields[41] == h3 and "held" in c3.fields[58]
    # A cancel of h1, on its way to the venue: not "canceled while held" but a cancel at
    # the venue like any other (h1 is booked there; only its answer is late).
    x1 = new_id("X")
    oms.send("F", [(11, x1), (41, h1), (55, "BTC/USD"), (54, "1"), (38, "0.01"),
                   (60, m.utc_timestamp())])
    wait_until(lambda: proxy.cancels, 2.0, "the cancel of h1 at the venue")
    assert proxy.cancels[0].get("cl_ord_id") == h1_venue
    with proxy.lock:
        assert not proxy.answered  # all of the above while h1's AddOrder was pending
    proxy.answer_first.set()

    # The release goes on in arrival order; the cancel of h1 is reported from the venue.
    new = [rec.report(cl, "0", timeout=10) for cl in (h1, h2, n)]
    assert rec.all.index(new[0]) < rec.all.index(new[1]) < rec.all.index(new[2])
    c1 = rec.report(x1, "4", timeout=5)
    assert c1.fields[41] == h1 and c1.fields[17].startswith("R")  # the venue's word
    rec.drain(1.0)
    assert rec.exec_types(h1) == ["A", "0", "4"]
    assert rec.exec_types(h2) == ["A", "0"] and rec.exec_types(n) == ["A", "0"]
    assert rec.exec_types(h3) == ["A", "4"]
    assert not [r for r in rec.all if r.msg_type == "9"]
    assert not [r for r in rec.all if r.fields.get(41) == h1
                and "held" in r.fields.get(58, "")]
    # At the venue: h1, h2, n in that order, each once; h3 never.
    assert [a["volume"] for a in proxy.adds] == ["0.01", "0.02", "0.04"]
    counts = sim.control(cmd="submission_counts")["counts"]
    assert isinstance(counts, dict)
    assert sorted(counts.values()) == [1, 1, 1], counts
    assert counts.get(f"FIXGW {h1_venue}") == 1


# ---- in process: the instant between taking an order off the queue and sending it -----------

KEY = "fixgw-held-release-key"
SECRET = base64.b64encode(b"fixgw held release test secret, long enough for HMAC").decode()
OMS_KEY = "FIXGW->OMS"


class Desk:
    """The gateway's order path in process (router, journal, REST fallback with its REST client)
    against the simulator's spot REST face on a loopback HTTP server over a real matching
    engine. The OMS FIX session is replaced: messages from the OMS are handled on a thread of
    their own, as on the OMS session's QuickFIX thread, and its answers are recorded."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch, *, hold_max_s: float = 10,
                 hold_max_orders: int = 1000) -> None:
        self.engine = MatchingEngine()
        self.server = SpotRestServer(self.engine, Accounts([ApiAccount(KEY, SECRET, "FIXGW")]))
        self.server.start()
        client = KrakenSpotRest(self.server.base_url, KEY, SECRET, NonceSource())
        self.store = OrderStore(tmp / "orders.journal", fsync_interval_ms=0)
        self.router = Router(self.store, OrderValidator(lambda s: s == "BTC/USD"))
        self.sid = fix.SessionID("FIX.4.4", "FIXGW", "OMS")
        self.router.register_oms(self.sid, ())
        self.fallback = RestFallback(self.router, client, poll_interval_s=60,
                                     hold_max_s=hold_max_s, hold_max_orders=hold_max_orders)
        # FIX down and the flow pinned to it: no transport up, new orders are held.
        self.fallback.policy = TransportPolicy(self.router.venue.is_up,
                                               lambda: self.fallback.rest_ok,
                                               failover_after_s=0, failback_after_s=60,
                                               on_switch=lambda *a: None, force="fix")
        self.router.fallback = self.fallback
        self.sent: list[dict[int, str]] = []

        def send(ctx: OmsContext, msg: fix.Message) -> None:
            self.sent.append(tag_fields(msg))
        monkeypatch.setattr(OmsContext, "send", send)

    def oms(self, msg_type: str, fields: list[tuple[int, str]], wait_s: float = 2.0) -> bool:
        """Handle one OMS message on its own thread; True if done within `wait_s` (else it is
        left to finish: the caller's assertion fails)."""
        msg = m.new_message(msg_type)
        for tag, value in fields:
            msg.setField(tag, value)
        f = {str(tag): value for tag, value in fields}
        f["35"] = msg_type
        t = threading.Thread(target=self.router.on_oms_message, args=(msg, self.sid, f),
                             daemon=True)
        t.start()
        t.join(wait_s)
        return not t.is_alive()

    def buy(self, cl: str, qty: str) -> bool:
        return self.oms("D", [(11, cl), (55, "BTC/USD"), (54, "1"), (38, qty), (40, "2"),
                              (44, "30000"), (59, "1"), (60, m.utc_timestamp())])

    def cancel(self, cl: str, orig: str, qty: str) -> bool:
        return self.oms("F", [(11, cl), (41, orig), (55, "BTC/USD"), (54, "1"), (38, qty),
                              (60, m.utc_timestamp())])

    def reports(self, cl: str) -> list[dict[int, str]]:
        return [r for r in self.sent if r.get(11) == cl]

    def exec_types(self, cl: str) -> list[str]:
        return [r[150] for r in self.sent if r.get(35) == "8"
                and (r.get(11) == cl or r.get(41) == cl)]

    def venue_cl(self, cl: str) -> str:
        o = self.store.find(OMS_KEY, cl)
        assert o is not None
        return o.venue_cl_ord_id

    def close(self) -> None:
        self.store.close()
        self.server.close()


@pytest.fixture
def desk_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                 ) -> Iterator[Callable[..., Desk]]:
    desks: list[Desk] = []

    def make(hold_max_s: float = 10, hold_max_orders: int = 1000) -> Desk:
        d = Desk(tmp_path / f"desk{len(desks)}", monkeypatch, hold_max_s=hold_max_s,
                 hold_max_orders=hold_max_orders)
        desks.append(d)
        return d

    try:
        yield make
    finally:
        for d in desks:
            d.close()


def test_cancel_while_the_order_is_leaving_the_queue_is_refused_not_faked(
        desk_factory: Callable[..., Desk], monkeypatch: pytest.MonkeyPatch) -> None:
    d = desk_factory(hold_max_orders=3)
    assert d.buy("H1", "0.01") and d.buy("H2", "0.02")
    assert d.exec_types("H1") == ["A"] and d.exec_types("H2") == ["A"]

    # The OMS's messages while the release has taken H1 and not sent it yet.
    during: dict[str, bool] = {}
    release = d.router.release_held

    def racing(order: Order, path: str, held_s: float) -> None:
        if order.oms_cl_ord_id == "H1" and not during:
            during["cancel H1"] = d.cancel("X1", "H1", "0.01")
            during["new N1"] = d.buy("N1", "0.03")
            during["new N2"] = d.buy("N2", "0.04")  # H1, H2, N1 held: the queue is full
        release(order, path, held_s)

    monkeypatch.setattr(d.router, "release_held", racing)
    d.fallback.rest_ok = True
    assert d.fallback.policy is not None
    d.fallback.policy.set_force("rest")  # failover: the poller releases the queue
    d.fallback.release_held()
    # Each answered at once (before: each blocked until the whole drain was done).
    assert during == {"cancel H1": True, "new N1": True, "new N2": True}

    (rej,) = d.reports("X1")
    assert rej[35] == "9" and rej[41] == "H1" and rej[434] == "1" and rej[102] == "2"
    assert rej[39] == "A"  # accepted, not acknowledged yet: PendingNew, not Rejected
    assert "leaving the hold queue" in rej[58]
    assert d.exec_types("N1")[0] == "A"
    assert d.exec_types("N2") == ["8"] and "already held" in d.reports("N2")[0][58]

    # Sent in arrival order, each once; H1 is live at the venue and was never reported
    # canceled.
    assert d.exec_types("H1") == ["A", "0"]
    assert d.exec_types("H2") == ["A", "0"] and d.exec_types("N1") == ["A", "0"]
    news = [i for i, r in enumerate(d.sent) if r.get(150) == "0"]
    assert [d.sent[i][11] for i in news] == ["H1", "H2", "N1"]
    booked = d.engine.open_orders("FIXGW")
    assert [o.cl_ord_id for o in booked] == [d.venue_cl(c) for c in ("H1", "H2", "N1")]
    assert [o.qty for o in booked] == [Decimal("0.01"), Decimal("0.02"), Decimal("0.03")]
    assert all(d.engine.submission_count("FIXGW", o.cl_ord_id) == 1 for o in booked)
    assert d.fallback.held_count() == 0

    # Now that H1 is acknowledged, the OMS's second cancel goes to the venue.
    assert d.cancel("X1b", "H1", "0.01")
    d.fallback.poll()
    assert d.exec_types("H1") == ["A", "0", "4"]
    assert [o.cl_ord_id for o in d.engine.open_orders("FIXGW")] == [
        d.venue_cl(c) for c in ("H2", "N1")]


def test_held_too_long_and_full_queue_still_rejected(desk_factory: Callable[..., Desk]) -> None:
    d = desk_factory(hold_max_s=0.3, hold_max_orders=1)
    assert d.buy("E1", "0.01")
    assert d.buy("E2", "0.02")  # the queue holds one order
    assert d.exec_types("E2") == ["8"] and "already held" in d.reports("E2")[0][58]
    time.sleep(0.35)
    d.fallback.release_held()  # still no transport up: E1 has been held too long
    assert d.exec_types("E1") == ["A", "8"]
    text = d.reports("E1")[-1][58]
    assert "held" in text and "not sent" in text
    assert d.fallback.held_count() == 0
    assert d.engine.submission_counts == {}


def test_hold_queue_full_gives_the_gate_rate_slot_back(
        desk_factory: Callable[..., Desk], monkeypatch: pytest.MonkeyPatch) -> None:
    """A new order that passed the gate holds a slot of its symbol's rate window until it is
    routed (held counts as routed): meanwhile another session's check cannot take the same
    slot, and when the hold queue turns out to be full the slot is given back."""
    d = desk_factory(hold_max_orders=1)
    gate = Gate(GateConfig.model_validate({"max_orders_per_s": 2}), lambda s: (None, None),
                lambda s: None, lambda: 1000.0)
    d.router.gate = gate
    other = GateOrder("BTC/USD", "1", Decimal("0.01"), Decimal("30000"), "2", "FIXGW->OTHER",
                      "")
    seen: list[str | None] = []
    hold = d.fallback.hold

    def hold_and_probe(order: Order) -> bool:
        seen.append(gate.check(other).rule)  # another session, while this order is in flight
        return hold(order)

    assert d.buy("F1", "0.01")  # held: counted, one slot left
    assert d.exec_types("F1") == ["A"]
    monkeypatch.setattr(d.fallback, "hold", hold_and_probe)
    assert d.buy("F2", "0.01")  # the queue holds one order: rejected
    assert seen == ["max_orders_per_s"]  # F2 held the last slot while it was in flight
    assert d.exec_types("F2") == ["8"] and "already held" in d.reports("F2")[0][58]
    assert d.buy("F3", "0.01")  # passes the gate again (F2's slot is free), then queue full
    assert d.exec_types("F3") == ["8"] and "already held" in d.reports("F3")[0][58]


def test_held_order_is_not_released_past_the_kill_switch(
        desk_factory: Callable[..., Desk]) -> None:
    """A held order passed the gate when it came in. If the gate would stop it by the time a
    transport is up (here the kill switch, as after a restart with it on), it is rejected with
    the gate's reason instead of sent."""
    d = desk_factory()
    assert d.buy("K1", "0.01")
    assert d.exec_types("K1") == ["A"]
    d.router.gate = Gate(GateConfig.model_validate({"kill_switch": True}),
                         lambda s: (None, None), lambda s: None)

    class _Venue:  # FIX is up again: the held order would go out on it
        def send(self, msg: fix.Message) -> bool:
            raise AssertionError("a held order went out past the kill switch")

    d.router.venue.session = _Venue()  # type: ignore[assignment]
    d.router.venue.logged_on = True
    d.fallback.release_held()
    assert d.exec_types("K1") == ["A", "8"]
    text = d.reports("K1")[-1][58]
    assert "not sent" in text and "kill_switch" in text, text
    assert d.fallback.held_count() == 0
    assert d.engine.submission_counts == {}
