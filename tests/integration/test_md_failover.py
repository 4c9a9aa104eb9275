"""Market-data failover over real processes: the venue drops the gateway's FIX market-data
session; after the configured outage the gateway subscribes book and trade on the venue's spot
WebSocket v2 and feeds the same books, so an OMS subscribed to the gateway's market data keeps
holding the venue's book as the flow moves it; a corrupted WS checksum is healed by a
resubscribe; FIX MD comes back, and once it is stable with fresh snapshots the gateway fails
back and unsubscribes WS. Each switch is a log line and a transport_switch event, and the
market-data events between the switches say they came over WS."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import grpc

from gateway._proto.fixgw.v1 import common_pb2, events_pb2, events_pb2_grpc
from tests.conftest import Oms, make_client
from tests.integration.test_market_data import OmsBook, subscribe
from tests.procs import REPO, Credentials, GatewayProcess, SimProcess, free_port, stop_all

SYMBOLS = ("BTC/USD", "ETH/USD")
# [venue.md_fallback] in the failover test: the switches wait these out, and the test checks
# they did (the outage and the stable FIX session last at least this long).
FAILOVER_AFTER_S = 1.0
FAILBACK_AFTER_S = 1.0
K = events_pb2

def md_fallback_toml(ws_url: str, extra: str = "") -> str:
    """The `[venue]` line of a gateway whose market data fails over to the WS at `ws_url`
    after FAILOVER_AFTER_S and back after FAILBACK_AFTER_S (`extra`: more of its keys)."""
    return (f'md_fallback = {{ enabled = true, ws_url = "{ws_url}", '
            f'failover_after_s = {FAILOVER_AFTER_S}, failback_after_s = {FAILBACK_AFTER_S}'
            f'{", " + extra if extra else ""} }}')


def wait_fix_md_up(gw: GatewayProcess) -> None:
    """The gateway's FIX MD session logged on and owning the books (after a slow first logon
    the books went to WS first: wait for their way back)."""
    gw.err.wait_for(r"session FIXGW->KRAKEN-MD \(venue\): \S+ -> logged_on", 20)
    if "market data moved from FIX to WS" in gw.err.text():
        gw.err.wait_for(r"market data moved from WS to FIX", 20)


class OmsView:
    """One OMS session subscribed to SYMBOLS, each with its own OmsBook (RptSeq-checked)."""

    def __init__(self, oms: Oms) -> None:
        self.oms = oms
        self.by_req: dict[str, OmsBook] = {}
        self.books: dict[str, OmsBook] = {}
        for s in SYMBOLS:
            book = OmsBook()
            self.books[s] = book
            self.by_req[subscribe(oms, s)] = book

    def pump(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            try:
                r = self.oms.c.next_app(timeout=0.1)
            except TimeoutError:
                continue
            book = self.by_req.get(r.fields.get(262, ""))
            if book is not None and r.msg_type in ("W", "X"):
                book.apply(r.raw)

    def converge(self, sim: SimProcess, timeout: float = 15.0) -> None:
        """With the venue's flow stopped: every OMS book equals the venue's top 10."""
        deadline = time.monotonic() + timeout
        while True:
            self.pump(0.3)
            want = {s: sim.levels(s) for s in SYMBOLS}
            got = {s: self.books[s].top(10) for s in SYMBOLS}
            if got == want:
                assert all(want[s][0] and want[s][1] for s in SYMBOLS)  # not two empty books
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"OMS books differ from the venue's:\n{got}\n{want}")

    def move_and_converge(self, sim: SimProcess, seconds: float = 1.0) -> int:
        """Let the venue's flow move the books, then check; returns OMS level updates seen.
        (120 flow steps a second: the number of steps, not the time they take, is what moves
        the books.)"""
        before = sum(b.updates for b in self.books.values())
        sim.control(cmd="flow", rate_hz=120)
        try:
            self.pump(seconds)
        finally:
            sim.control(cmd="flow", rate_hz=0)
        self.converge(sim)
        return sum(b.updates for b in self.books.values()) - before


def collect_events(port: int) -> list[events_pb2.Event]:
    """Every market-data and transport-switch event published so far (read up to the log's
    newest sequence, so a slow event server cannot cut the list short)."""
    kinds = {K.EVENT_KIND_TRANSPORT_SWITCH, K.EVENT_KIND_BOOK_SNAPSHOT, K.EVENT_KIND_BOOK_DELTA,
             K.EVENT_KIND_TRADE}
    got: list[events_pb2.Event] = []
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = events_pb2_grpc.EventServiceStub(ch)
        newest = stub.GetLogInfo(K.GetLogInfoRequest(), timeout=10).next_sequence - 1
        call = stub.Subscribe(K.SubscribeRequest(from_sequence=1), timeout=60)
        for batch in call:
            got.extend(batch.events)
            if got and got[-1].sequence >= newest:
                call.cancel()
                break
    assert got and got[-1].sequence >= newest
    return [e for e in got if e.kind in kinds]


def ws_stats(sim: SimProcess) -> dict[str, object]:
    return sim.control(cmd="ws_stats")


def wait_ws_stats(sim: SimProcess, want: dict[str, int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = ws_stats(sim)
        if all(got[k] == v for k, v in want.items()):
            return
        assert time.monotonic() < deadline, f"simulator WS: {got}, wanted {want}"
        time.sleep(0.1)


def test_md_fails_over_to_ws_heals_a_bad_checksum_and_fails_back(tmp_path: Path) -> None:
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds, seed_books=True)
    gw = None
    client = None
    try:
        fallback = md_fallback_toml(f"ws://127.0.0.1:{sim.spot_ws_port}/v2")
        gw = GatewayProcess(tmp_path / "gw", sim, creds,
                            venue_toml=f"md_stale_after_s = 3600\n{fallback}")
        wait_fix_md_up(gw)
        wait_ws_stats(sim, {"connections": 0})
        client = make_client(tmp_path, gw.oms_port, "OMS", "FIXGW")
        client.start()
        view = OmsView(Oms(client))

        # 1. FIX MD feeds the books.
        assert view.move_and_converge(sim) > 0
        snapshots = {s: view.books[s].snapshots for s in SYMBOLS}

        # 2. The venue drops the FIX MD session (trading stays up) and refuses its logons.
        mark = len(gw.err.lines)
        t0 = time.monotonic()
        assert sim.control(cmd="drop_md")["was_logged_on"] is True
        gw.err.wait_for(r"session FIXGW->KRAKEN-MD \(venue\): logged_on -> ", 10, start=mark)
        m = gw.err.wait_for(r"market data moved from FIX to WS: FIX market-data session down "
                            r"for ([\d.]+)s", 15, start=mark)
        assert float(m.group(1)) >= FAILOVER_AFTER_S
        assert time.monotonic() - t0 >= FAILOVER_AFTER_S
        assert "FIXGW->KRAKEN-TRD (venue): logged_on ->" not in "\n".join(gw.err.lines[mark:])
        # One WS connection with book and trade for every configured symbol.
        wait_ws_stats(sim, {"connections": 1, "book_subscriptions": 3, "trade_subscriptions": 3})

        # 3. Over WS the OMS keeps receiving the venue's book: a fresh snapshot from the WS
        #    source, then incrementals, equal to the venue's levels after the flow moved them.
        for _ in range(2):
            assert view.move_and_converge(sim) > 20
        for s in SYMBOLS:
            assert view.books[s].snapshots > snapshots[s]
        assert "market data moved from WS to FIX" not in "\n".join(gw.err.lines[mark:])

        # 4. A corrupted WS checksum on BTC/USD: resubscribe, fresh snapshot, correct book.
        mark = len(gw.err.lines)
        before = {s: view.books[s].snapshots for s in SYMBOLS}
        sim.control(cmd="ws_fault", fault="corrupt_checksum", symbol="BTC/USD")
        deadline = time.monotonic() + 15
        pattern = r"market data BTC/USD over WS: WS book checksum mismatch; resubscribed"
        while True:
            sim.control(cmd="flow", steps=3)
            view.pump(0.2)
            try:
                gw.err.wait_for(pattern, 0.1, start=mark)
                break
            except TimeoutError:
                assert time.monotonic() < deadline, "no checksum mismatch was detected"
        view.converge(sim)
        assert view.books["BTC/USD"].snapshots > before["BTC/USD"]  # rebuilt, not patched
        assert view.move_and_converge(sim) > 0
        wait_ws_stats(sim, {"connections": 1, "book_subscriptions": 3})  # same socket

        # 5. FIX MD is back: once it has been logged on 1 s with fresh snapshots, fail back and
        #    unsubscribe WS; the OMS still holds the venue's book as it moves.
        mark = len(gw.err.lines)
        before = {s: view.books[s].snapshots for s in SYMBOLS}
        sim.control(cmd="restore_md")
        gw.err.wait_for(r"session FIXGW->KRAKEN-MD \(venue\): \S+ -> logged_on", 20, start=mark)
        m = gw.err.wait_for(r"market data moved from WS to FIX: FIX market-data session logged "
                            r"on and stable for ([\d.]+)s; every symbol's fresh FIX snapshot "
                            r"arrived", 20, start=mark)
        assert float(m.group(1)) >= FAILBACK_AFTER_S
        wait_ws_stats(sim, {"connections": 0, "book_subscriptions": 0})
        gw.err.wait_for(r"market data over WS: unsubscribed and closed", 5, start=mark)
        view.pump(0.5)
        for s in SYMBOLS:  # the FIX books, handed to the OMS as a snapshot
            assert view.books[s].snapshots > before[s]
        for _ in range(2):
            assert view.move_and_converge(sim) > 0

        # 6. Events: two transport_switch events for the MD session, and every market-data
        #    event between them came over WS, the ones after over FIX.
        events = collect_events(gw.grpc_port)
        switches = [e for e in events if e.kind == K.EVENT_KIND_TRANSPORT_SWITCH
                    and e.transport_switch.session == "FIXGW->KRAKEN-MD"]
        assert [(e.transport_switch.from_transport, e.transport_switch.to_transport)
                for e in switches][-2:] == [(common_pb2.TRANSPORT_FIX, common_pb2.TRANSPORT_WS),
                                            (common_pb2.TRANSPORT_WS, common_pb2.TRANSPORT_FIX)]
        assert all(e.transport_switch.automatic for e in switches)
        over, back = switches[-2].sequence, switches[-1].sequence
        during = [e for e in events if over < e.sequence < back
                  and e.kind != K.EVENT_KIND_TRANSPORT_SWITCH]
        after = [e for e in events if e.sequence > back]
        assert len(during) > 20 and after
        assert {e.source.kind for e in during} == {common_pb2.SOURCE_KIND_WS}
        assert {e.source.kind for e in after} == {common_pb2.SOURCE_KIND_FIX}
        assert any(e.kind == K.EVENT_KIND_BOOK_SNAPSHOT for e in during)
    finally:
        try:  # the client and the gateway together: both wait out QuickFIX's 1 s ticks
            stop_all([*([client.stop] if client is not None else []),
                      *([gw.stop] if gw is not None else [])])
        finally:
            sim.stop()


class _Lines:
    """A child's output lines, read on a thread (the pipe never fills), with waits."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            with self._cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        rx, deadline, seen = re.compile(pattern), time.monotonic() + timeout, 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    if mt := rx.search(line):
                        return mt
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no line matching {pattern!r}:\n"
                                       + "\n".join(self.lines[-30:]))
                self._cond.wait(left)


def test_fixgw_run_embedded_venue_serves_md_over_its_spot_ws_when_forced(tmp_path: Path) -> None:
    """`fixgw run` with its embedded venue and no ws_url: the WS fallback connects to the
    embedded venue's spot WS face, and (pinned to WS) an OMS gets the books from it."""
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[venue.md_fallback]\nenabled = true\nforce = "ws"\n')
    oms_port = free_port()
    gw = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.main", "run", "--config", str(cfg), "--oms-port",
         str(oms_port), "--data-dir", str(tmp_path / "var"), "--grpc-port", str(free_port()),
         "--admin-port", str(free_port()), "--metrics-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    assert gw.stderr is not None
    err = _Lines(gw.stderr)
    client = None
    try:
        port = err.wait_for(r"embedded UAT venue: .* spot WS ws://127\.0\.0\.1:(\d+)/v2", 30)[1]
        err.wait_for(r"market data moved from FIX to WS: forced to ws by operator", 20)
        err.wait_for(rf"market data over WS: subscribing book \(depth 10\) and trade for "
                     rf"BTC/USD, ETH/USD, ARB/USD at ws://127\.0\.0\.1:{port}/v2", 5)
        err.wait_for(r"session FIXGW->KRAKEN-MD \(venue\): \S+ -> logged_on", 20)
        client = make_client(tmp_path, oms_port, "OMS", "FIXGW")
        client.start()
        view = OmsView(Oms(client))
        deadline = time.monotonic() + 15
        while not all(b.top(10)[0] and b.top(10)[1] for b in view.books.values()):
            assert time.monotonic() < deadline, "no book reached the OMS over WS"
            view.pump(0.3)
        # Pinned to WS with FIX MD logged on: still no failback.
        assert not any("market data moved from WS to FIX" in ln for ln in err.lines)
    finally:
        if client is not None:
            client.stop()
        gw.send_signal(signal.SIGTERM)
        assert gw.wait(timeout=30) == 0
    assert any("market data over WS: unsubscribed and closed" in ln for ln in err.lines)


def test_md_fails_over_to_ws_while_the_venue_refuses_a_symbol_over_fix(tmp_path: Path) -> None:
    """A FIX MD session that is logged on but whose DOGE/USD subscription the venue refuses
    (35=Y) feeds no DOGE/USD book: FIX market data is unhealthy, the books go to WS after
    failover_after_s, and they stay there (failback wants the same health) although the
    session is logged on and every other symbol has its FIX snapshot."""
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds, seed_books=True)
    gw = None
    try:
        fallback = md_fallback_toml(f"ws://127.0.0.1:{sim.spot_ws_port}/v2")
        gw = GatewayProcess(tmp_path / "gw", sim, creds, venue_toml=(
            f'md_stale_after_s = 3600\nsymbols = ["BTC/USD", "DOGE/USD"]\n{fallback}'))
        gw.err.wait_for(r"MarketDataRequest MD-DOGE/USD-\d+ rejected by the venue", 20)
        # Normally the first switch says why; after a slow first logon (longer than
        # failover_after_s) it is the logout's, and then only staying on WS shows the rule.
        m = gw.err.wait_for(r"market data moved from FIX to WS: (.*)", 15)
        if not m.group(1).startswith("FIX market-data session down"):
            why = re.fullmatch(r"FIX market data unhealthy for ([\d.]+)s although logged on: "
                               r"DOGE/USD refused by the venue", m.group(1))
            assert why is not None, m.group(1)
            assert float(why.group(1)) >= FAILOVER_AFTER_S
        gw.err.wait_for(r"session FIXGW->KRAKEN-MD \(venue\): \S+ -> logged_on", 20)
        gw.err.wait_for(r"market data over WS: subscribing book", 5)
        wait_ws_stats(sim, {"connections": 1})
        time.sleep(FAILBACK_AFTER_S + 2.0)
        assert "market data moved from WS to FIX" not in gw.err.text()
        assert ws_stats(sim)["connections"] == 1
    finally:
        try:
            if gw is not None:
                gw.stop()
        finally:
            sim.stop()


def test_md_fallback_ws_unreachable_withdraws_the_books_until_fix_md_is_back(
        tmp_path: Path) -> None:
    """The FIX MD session is lost and the WS fallback's endpoint has nothing listening. The
    books still go to WS after failover_after_s (an untried WS counts as available), which
    never delivers: the OMS's books are withdrawn (an empty W, also for a subscriber that comes
    meanwhile) instead of frozen at their last levels; the gateway stays up and keeps retrying
    both; ops get a market-data line naming the unreachable endpoint; and once FIX MD is back
    the gateway fails back and the OMS gets the venue's book again in a fresh snapshot."""
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds, seed_books=True)
    dead_url = f"ws://127.0.0.1:{free_port()}/v2"  # nothing listens there
    gw = None
    client = None
    try:
        fallback = md_fallback_toml(dead_url, "heartbeat_timeout_s = 2.0")
        gw = GatewayProcess(tmp_path / "gw", sim, creds,
                            venue_toml=f"md_stale_after_s = 3600\n{fallback}")
        wait_fix_md_up(gw)
        client = make_client(tmp_path, gw.oms_port, "OMS", "FIXGW")
        client.start()
        view = OmsView(Oms(client))
        view.converge(sim)  # FIX MD feeds the OMS the venue's book
        snapshots = {s: view.books[s].snapshots for s in SYMBOLS}

        # 1. The venue drops the FIX MD session and refuses it; the books go to the dead WS.
        mark = len(gw.err.lines)
        assert sim.control(cmd="drop_md")["was_logged_on"] is True
        gw.err.wait_for(r"market data moved from FIX to WS: FIX market-data session down", 15,
                        start=mark)
        deadline = time.monotonic() + 10
        while not all(view.books[s].withdrawn for s in SYMBOLS):
            assert time.monotonic() < deadline, {s: view.books[s].top(3) for s in SYMBOLS}
            view.pump(0.2)
        withdrawn = {s: (view.books[s].snapshots, view.books[s].updates) for s in SYMBOLS}
        assert all(withdrawn[s][0] == snapshots[s] + 1 for s in SYMBOLS)  # one empty W each

        # 2. Ops see why, in market-data terms, naming the endpoint; the venue's flow moves
        #    its book meanwhile, and the OMS's stays withdrawn (no update, no stale levels),
        #    also for a subscriber that comes now.
        gw.err.wait_for(rf"market data over WS: cannot reach {re.escape(dead_url)}: no "
                        rf"connection for [\d.]+ s .*the OMS's books stay withdrawn", 10,
                        start=mark)
        sim.control(cmd="flow", steps=50)
        late = OmsBook()
        view.by_req[subscribe(view.oms, "BTC/USD")] = late
        view.pump(2.0)
        assert late.snapshots == 1 and late.withdrawn and late.top(10) == ([], [])
        for s in SYMBOLS:
            book = view.books[s]
            assert book.withdrawn and (book.snapshots, book.updates) == withdrawn[s]
        # Up, nothing crashed; the WS client says the outage once (its attempts are debug
        # lines; tests/spot_ws/test_ws_outage_log.py has its reminders and closing line).
        assert gw.proc is not None and gw.proc.poll() is None
        during = "\n".join(gw.err.lines[mark:])
        assert during.count(f"{dead_url}: connection failed") == 1, during
        assert re.search(rf"{re.escape(dead_url)}: connection failed: .*; retrying with backoff",
                         during), during
        assert "Traceback" not in during and "Exception in thread" not in during, during
        assert "market data moved from WS to FIX" not in during

        # 3. FIX MD is back: failback (WS is down, so the FIX snapshots decide), and the OMS
        #    gets the venue's book as a fresh snapshot, following it as it moves again.
        mark = len(gw.err.lines)
        sim.control(cmd="restore_md")
        gw.err.wait_for(r"market data moved from WS to FIX: FIX market-data session logged "
                        r"on and stable", 20, start=mark)
        gw.err.wait_for(rf"market data over WS: closed without ever connecting to "
                        rf"{re.escape(dead_url)}", 10, start=mark)
        view.converge(sim)
        for s in SYMBOLS:
            assert not view.books[s].withdrawn and view.books[s].snapshots > withdrawn[s][0]
        assert view.move_and_converge(sim) > 0
        after = "\n".join(gw.err.lines[mark:])
        assert "Traceback" not in after and "Exception in thread" not in after, after
        assert gw.proc.poll() is None
    finally:
        try:  # the client and the gateway together: both wait out QuickFIX's 1 s ticks
            stop_all([*([client.stop] if client is not None else []),
                      *([gw.stop] if gw is not None else [])])
        finally:
            sim.stop()
