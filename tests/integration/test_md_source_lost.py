"""The venue drops the gateway's FIX market-data session (no WS fallback configured): nothing
feeds the books any more, so an OMS subscribed to them must not keep a frozen book that looks
live. Over real processes: the OMS's book is withdrawn (an empty 35=W, as for a venue 35=Y), an
OMS subscribing during the outage gets no pre-outage levels, and once the MD session is back
both get a fresh snapshot equal to the venue's book, which moved meanwhile."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Oms, make_client
from tests.integration.test_market_data import OmsBook, subscribe
from tests.procs import Credentials, GatewayProcess, Levels, SimProcess, stop_all

SYMBOL = "BTC/USD"
MD_LOGGED_ON = r"session FIXGW->KRAKEN-MD \(venue\): \S+ -> logged_on"



class Subscriber:
    """One OMS session subscribed to SYMBOL, with the book it builds (RptSeq-checked)."""

    def __init__(self, oms: Oms) -> None:
        self.oms = oms
        self.book = OmsBook()
        self.req = subscribe(oms, SYMBOL)

    def pump(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            try:
                r = self.oms.c.next_app(timeout=0.05)
            except TimeoutError:
                continue
            if r.fields.get(262) == self.req and r.msg_type in ("W", "X"):
                self.book.apply(r.raw)

    def until(self, what: str, done: object, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():  # type: ignore[operator]
            assert time.monotonic() < deadline, f"{what}: book {self.book.top(10)}, " \
                                                f"withdrawn {self.book.withdrawn}"
            self.pump(0.1)

    def holds(self, levels: Levels) -> bool:
        return not self.book.withdrawn and self.book.top(10) == levels


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[SimProcess, GatewayProcess]]:
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds, seed_books=True)
    gw = None
    try:
        # A short stale threshold: a quiet book is resubscribed every 2 s and must not be
        # withdrawn for it; no md_fallback: nothing takes over from the FIX MD session.
        gw = GatewayProcess(tmp_path / "gw", sim, creds, oms_comp_ids=("OMS", "OMS2"),
                            venue_toml="md_stale_after_s = 2.0")
        gw.err.wait_for(MD_LOGGED_ON, 20)
        yield sim, gw
    finally:
        try:
            if gw is not None:
                gw.stop()
        finally:
            sim.stop()


def test_a_lost_md_session_withdraws_the_oms_books_until_it_is_back(
        pair: tuple[SimProcess, GatewayProcess], tmp_path: Path) -> None:
    sim, gw = pair
    a_client = make_client(tmp_path, gw.oms_port, "OMS", "FIXGW")
    b_client = make_client(tmp_path, gw.oms_port, "OMS2", "FIXGW")
    a_client.start()
    try:
        a = Subscriber(Oms(a_client))
        before = sim.levels(SYMBOL)
        a.until("the OMS holds the venue's book", lambda: a.holds(before))
        a.pump(2.5)  # a quiet book's stale resubscribe (2 s) is no withdrawal
        assert a.holds(before)
        snapshots = a.book.snapshots

        # The venue drops the MD session and refuses it for a while; its book moves on.
        mark = len(gw.err.lines)
        assert sim.control(cmd="drop_md", refuse_s=8)["was_logged_on"] is True
        sim.control(cmd="flow", steps=60)
        after = sim.levels(SYMBOL)
        assert after != before
        gw.err.wait_for(r"session FIXGW->KRAKEN-MD \(venue\): logged_on -> ", 10, start=mark)
        a.until("the OMS's book withdrawn", lambda: a.book.withdrawn, timeout=5)
        assert a.book.top(10) == ([], [])
        gw.err.wait_for(rf"market data {SYMBOL}: source lost: FIX market-data session logged "
                        r"out; withdrawn", 5, start=mark)

        # An OMS subscribing during the outage gets no stale levels: an empty snapshot.
        b_client.start()
        b = Subscriber(Oms(b_client))
        b.until("the new subscriber's snapshot", lambda: b.book.snapshots >= 1, timeout=10)
        assert not any("KRAKEN-MD (venue): " in ln and ln.endswith("-> logged_on")
                       for ln in gw.err.lines[mark:]), "the outage ended too early for the test"
        assert b.book.withdrawn and b.book.top(10) == ([], [])
        a.pump(0.3)
        assert a.book.withdrawn  # and no update reached the withdrawn book

        # The MD session is back: both get a fresh snapshot, the venue's book as it is now.
        gw.err.wait_for(MD_LOGGED_ON, 20, start=mark)
        for s in (a, b):
            s.until("a fresh snapshot equal to the venue's book", lambda s=s: s.holds(after))
        assert a.book.snapshots >= snapshots + 2  # the withdrawal, then the fresh one
    finally:
        stop_all([a_client.stop, b_client.stop])
