from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import quickfix as fix

from gateway.fix import messages as m
from gateway.fix.client import FixClient, Received
from gateway.fix.kraken_logon import KrakenCredentials, add_trading_logon_fields
from tests.procs import Credentials, GatewayProcess, SimProcess, stop_all

_ids = itertools.count(1)


def new_id(prefix: str = "C") -> str:
    return f"{prefix}{time.time_ns() // 1000}-{next(_ids)}"


def tag_fields(msg: fix.Message) -> dict[int, str]:
    """A QuickFIX message's fields by tag number (the last of a repeated tag)."""
    return {int(tag): value for tag, value in m.split_fields(msg.toString()).items()}


def order_fields(cl: str, side: str, qty: str, price: str | None, symbol: str = "BTC/USD",
                 ord_type: str | None = None, tif: str = "1") -> list[tuple[int, str]]:
    f = [(m.CL_ORD_ID, cl), (m.SYMBOL, symbol), (m.SIDE, side), (m.ORDER_QTY, qty),
         (m.ORD_TYPE, ord_type or ("2" if price is not None else "1")),
         (m.TIME_IN_FORCE, tif), (m.TRANSACT_TIME, m.utc_timestamp())]
    if price is not None:
        f.append((m.PRICE, price))
    return f


class Oms:
    """A FixClient with helpers for order tests."""

    def __init__(self, client: FixClient) -> None:
        self.c = client

    def send(self, msg_type: str, fields: list[tuple[int, str]]) -> None:
        assert self.c.send_fields(msg_type, fields)

    def expect(self, pred: Callable[[Received], bool], timeout: float = 10.0) -> Received:
        return self.c.next_app(timeout, pred)

    def report(self, cl: str, exec_type: str, timeout: float = 10.0) -> Received:
        return self.expect(lambda r: r.msg_type == "8" and r.fields.get(11) == cl
                           and r.fields.get(150) == exec_type, timeout)

    def buy(self, qty: str, price: str | None, **kw: str) -> str:
        cl = new_id("B")
        self.send("D", order_fields(cl, "1", qty, price, **kw))
        return cl

    def sell(self, qty: str, price: str | None, **kw: str) -> str:
        cl = new_id("S")
        self.send("D", order_fields(cl, "2", qty, price, **kw))
        return cl


def make_client(tmp: Path, port: int, sender: str, target: str,
                creds: Credentials | None = None) -> FixClient:
    c = FixClient(host="127.0.0.1", port=port, sender=sender, target=target,
                  store_dir=tmp / f"client-{sender}-{target}")
    if creds is not None:
        k = KrakenCredentials(creds.api_key, creds.api_secret)

        def sign(msg: fix.Message) -> None:
            if m.msg_type(msg) == "A":
                add_trading_logon_fields(msg, k, False)

        c.on_admin_out = sign
    return c


def refused_logon(c: FixClient, timeout: float = 10.0) -> str:
    """Start `c`, expect its Logon to be refused, and return the text of the Logout (58)."""
    c.start(wait_logon_s=None)
    logout = c.admin.get(timeout=timeout)
    while logout.msg_type != "5":
        logout = c.admin.get(timeout=timeout)
    assert not c.logged_on.is_set()
    return logout.fields.get(58, "")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long files first (the integration tests, the benchmarks' smoke runs and the soak),
    in their own order.

    `make test` runs workers that each take whole files in collection order; a long file
    taken last would run on alone at the end while the other workers wait (a benchmark smoke
    file takes up to ~50 s)."""
    long_dirs = {Path(__file__).parent / d for d in ("integration", "tools")}
    long_files = {item.path for item in items
                  if item.path.parent in long_dirs or item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in long_files)  # stable: False (long) first


@pytest.fixture(scope="module")
def _pair_clients() -> list[FixClient]:
    """The FIX clients of `oms` and `maker`, stopped by `venue_pair` (see there)."""
    return []


@pytest.fixture(scope="module")
def venue_pair(tmp_path_factory: pytest.TempPathFactory, _pair_clients: list[FixClient]
               ) -> Iterator[tuple[SimProcess, GatewayProcess, Credentials]]:
    """One simulator (clients FIXGW and MAKER) and one gateway for a test module.

    At the module's end the `oms` and `maker` clients (torn down just before, as fixtures that
    depend on this one) and the gateway are stopped together: each spends most of its stop in
    QuickFIX's one-second waits. Then the simulator."""
    tmp = tmp_path_factory.mktemp("pair")
    creds = Credentials()
    sim = SimProcess(tmp / "sim", creds, clients=("FIXGW", "MAKER"))
    gw = GatewayProcess(tmp / "gw", sim, creds)
    try:
        yield sim, gw, creds
    finally:
        try:
            stop_all([*(c.stop for c in _pair_clients), gw.stop])
        finally:
            sim.stop()


@pytest.fixture(scope="module")
def oms(venue_pair: tuple[SimProcess, GatewayProcess, Credentials],
        _pair_clients: list[FixClient], tmp_path_factory: pytest.TempPathFactory) -> Oms:
    _sim, gw, _creds = venue_pair
    c = make_client(tmp_path_factory.mktemp("oms"), gw.oms_port, "OMS", "FIXGW")
    _pair_clients.append(c)  # stopped by venue_pair
    c.start()
    return Oms(c)


@pytest.fixture(scope="module")
def maker(venue_pair: tuple[SimProcess, GatewayProcess, Credentials],
          _pair_clients: list[FixClient], tmp_path_factory: pytest.TempPathFactory) -> Oms:
    """A second participant connected straight to the venue, to trade against the OMS."""
    sim, _gw, creds = venue_pair
    c = make_client(tmp_path_factory.mktemp("maker"), sim.trading_port, "MAKER", "KRAKEN-TRD",
                    creds)
    _pair_clients.append(c)  # stopped by venue_pair
    c.start()
    return Oms(c)


def wait_until(pred: Callable[[], object], timeout: float = 10.0, what: str = "condition",
               poll_s: float = 0.01) -> None:
    """Poll `pred` until it is true; a test failure naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(poll_s)
