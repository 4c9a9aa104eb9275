"""The metrics endpoint of a real `fixgw run` against the simulator, scraped over HTTP while a
real FIX OMS trades through the gateway: every figure is checked as a before/after difference
against what the test itself did on the wire."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.fix.client import FixClient
from gateway.version import versions
from tests.conftest import Oms, make_client, new_id
from tests.procs import REPO, Credentials, GatewayProcess, SimProcess, stop_all

OMS = "FIXGW->OMS"
TRD = "FIXGW->KRAKEN-TRD"
MD = "FIXGW->KRAKEN-MD"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = float(s.value)
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_for(port: int, check: Callable[[Samples], bool], timeout: float = 10.0) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        s = scrape(port)
        if check(s) or time.monotonic() > deadline:
            return s
        time.sleep(0.1)


class Pair:
    def __init__(self, sim: SimProcess, gw: GatewayProcess, client: FixClient) -> None:
        self.sim, self.gw, self.client, self.oms = sim, gw, client, Oms(client)

    @property
    def port(self) -> int:
        return self.gw.metrics_port

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FIXGW_")}
        env["FIXGW_ADDR"] = f"127.0.0.1:{self.gw.admin_port}"
        env["FIXGW_TOKEN_FILE"] = str(self.gw.data_dir / "var" / "admin.token")
        return subprocess.run([sys.executable, "-m", "gateway.cli.ctl", *args],
                              capture_output=True, text=True, env=env, cwd=REPO, timeout=30)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("metrics")
    creds = Credentials()
    sim = SimProcess(tmp / "sim", creds)
    gw = GatewayProcess(tmp / "gw", sim, creds)
    client = make_client(tmp / "oms", gw.oms_port, "OMS", "FIXGW")
    try:
        client.start()
        yield Pair(sim, gw, client)
    finally:
        try:  # client and gateway together: each waits out QuickFIX's 1 s ticks
            stop_all([client.stop, gw.stop])
        finally:
            sim.stop()


def test_ready_line_names_the_metrics_listener(pair: Pair) -> None:
    m = pair.gw.out.wait_for(r"fixgw ready: .*metrics=127\.0\.0\.1:(\d+)")
    assert int(m.group(1)) == pair.port


def test_sessions_up_with_roles(pair: Pair) -> None:
    s = wait_for(pair.port, lambda s: value(s, "fixgw_session_up", session=MD,
                                            role="venue-md") == 1)
    assert value(s, "fixgw_session_up", session=OMS, role="oms") == 1
    assert value(s, "fixgw_session_up", session=TRD, role="venue-trading") == 1
    assert value(s, "fixgw_session_up", session=MD, role="venue-md") == 1
    assert value(s, "fixgw_session_transitions_total", session=OMS, role="oms",
                 state="logged_on") >= 1
    # The logons themselves went through the message counters, both ways.
    assert value(s, "fixgw_messages_total", session=OMS, role="oms", direction="in",
                 msg_type="A") >= 1
    assert value(s, "fixgw_messages_total", session=TRD, role="venue-trading",
                 direction="out", msg_type="A") >= 1
    assert value(s, "fixgw_order_transport", transport="fix") == 1
    assert value(s, "fixgw_order_transport", transport="rest") == 0
    assert ("fixgw_event_subscribers", frozenset()) in s
    # The build, as the usual *_build_info gauge, and when this gateway started.
    assert value(s, "fixgw_build_info", **versions()) == 1
    assert versions()["fixgw"] == metadata.version("fixgw")
    assert 0 < time.time() - value(s, "fixgw_start_time_seconds") < 600
    # The GC freezer froze the start-up heap (modules, the replayed journal, the engines);
    # what the process holds shows as its resident memory.
    assert value(s, "fixgw_gc_freezes_total") >= 1
    assert value(s, "fixgw_resident_memory_bytes") > 10 << 20


def test_orders_move_messages_latency_and_gate(pair: Pair) -> None:
    n = 5
    before = scrape(pair.port)
    cls = [pair.oms.buy("0.01", f"{20000 + i}.0") for i in range(n)]  # resting, far below
    for cl in cls:
        pair.oms.report(cl, "0")
    venue_8 = dict(session=TRD, role="venue-trading", direction="in", msg_type="8")
    oms_8 = dict(session=OMS, role="oms", direction="out", msg_type="8")
    hist = "fixgw_order_round_trip_seconds_count"
    after = wait_for(pair.port, lambda s: value(s, hist) - value(before, hist) >= n)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("fixgw_messages_total", session=OMS, role="oms", direction="in",
                 msg_type="D") == n
    assert delta("fixgw_messages_total", session=TRD, role="venue-trading", direction="out",
                 msg_type="D") == n
    # Every venue report of these orders was forwarded, and nothing else was sent the OMS.
    assert delta("fixgw_messages_total", **venue_8) >= n
    assert delta("fixgw_messages_total", **oms_8) == delta("fixgw_messages_total", **venue_8)
    # One round-trip sample per order, each a positive time under a second.
    assert delta(hist) == n
    assert 0 < delta("fixgw_order_round_trip_seconds_sum") < n * 1.0
    assert delta("fixgw_order_round_trip_seconds_bucket", le="1.0") == n
    assert delta("fixgw_order_round_trip_seconds_bucket", le="+Inf") == n
    assert delta("fixgw_orders_total", session=OMS, outcome="accepted") == n
    assert delta("fixgw_gate_decisions_total", rule="none", action="allow") == n
    assert delta("fixgw_rejects_total", session=OMS, kind="order",
                 reason="unknown_symbol") == 0
    # The resting orders are held open; nothing was evicted (the retention is a day).
    assert delta("fixgw_orders_in_memory", state="open") == n
    assert value(after, "fixgw_orders_evicted_total") == 0


def test_rejected_order_counts_a_reject_and_no_latency_sample(pair: Pair) -> None:
    before = scrape(pair.port)
    cl = pair.oms.buy("0.01", "100.0", symbol="NOPE/USD")
    r = pair.oms.report(cl, "8")
    assert r.fields[103] == "1"
    rej = dict(session=OMS, kind="order", reason="unknown_symbol")
    after = wait_for(pair.port, lambda s: value(s, "fixgw_rejects_total", **rej)
                     > value(before, "fixgw_rejects_total", **rej))
    assert (value(after, "fixgw_rejects_total", **rej)
            - value(before, "fixgw_rejects_total", **rej)) == 1
    assert value(after, "fixgw_orders_total", session=OMS, outcome="rejected") - value(
        before, "fixgw_orders_total", session=OMS, outcome="rejected") == 1
    assert value(after, "fixgw_order_round_trip_seconds_count") == value(
        before, "fixgw_order_round_trip_seconds_count")
    # The reject went out as an ExecutionReport and nothing reached the venue.
    assert value(after, "fixgw_messages_total", session=TRD, role="venue-trading",
                 direction="out", msg_type="D") == value(
        before, "fixgw_messages_total", session=TRD, role="venue-trading", direction="out",
        msg_type="D")


def test_session_level_reject_counted_by_reason(pair: Pair) -> None:
    before = scrape(pair.port)
    # A NewOrderSingle without Side (54): QuickFIX answers with a session Reject, 373=1.
    pair.oms.send("D", [(11, new_id("Z")), (55, "BTC/USD"), (38, "0.01"), (40, "2"),
                        (44, "20000.0"), (60, "20260101-00:00:00")])
    rej = dict(session=OMS, kind="session", reason="required_tag_missing")
    after = wait_for(pair.port, lambda s: value(s, "fixgw_rejects_total", **rej)
                     > value(before, "fixgw_rejects_total", **rej))
    assert (value(after, "fixgw_rejects_total", **rej)
            - value(before, "fixgw_rejects_total", **rej)) == 1
    out_3 = dict(session=OMS, role="oms", direction="out", msg_type="3")
    assert value(after, "fixgw_messages_total", **out_3) - value(
        before, "fixgw_messages_total", **out_3) == 1
    # Rejected by the session layer: the router never saw it.
    assert value(after, "fixgw_messages_total", session=OMS, role="oms", direction="in",
                 msg_type="D") == value(before, "fixgw_messages_total", session=OMS, role="oms",
                                        direction="in", msg_type="D")


def test_gate_block_by_kill_switch(pair: Pair) -> None:
    r = pair.ctl("kill-switch", "on", "--yes")
    assert r.returncode == 0, r.stderr
    try:
        before = scrape(pair.port)
        cl = pair.oms.buy("0.01", "20000.0")
        rep = pair.oms.report(cl, "8")
        assert rep.fields[103] == "3"
        block = dict(rule="kill_switch", action="block")
        limit = dict(session=OMS, kind="order", reason="order_exceeds_limit")
        # The reject is counted after it was sent: the OMS may have it before the counter moves.
        after = wait_for(pair.port, lambda s: value(s, "fixgw_gate_decisions_total", **block)
                         > value(before, "fixgw_gate_decisions_total", **block)
                         and value(s, "fixgw_rejects_total", **limit)
                         > value(before, "fixgw_rejects_total", **limit))
        assert value(after, "fixgw_gate_decisions_total", **block) - value(
            before, "fixgw_gate_decisions_total", **block) == 1
        assert value(after, "fixgw_rejects_total", **limit) - value(
            before, "fixgw_rejects_total", **limit) == 1
        assert value(after, "fixgw_order_round_trip_seconds_count") == value(
            before, "fixgw_order_round_trip_seconds_count")
    finally:
        assert pair.ctl("kill-switch", "off").returncode == 0


def test_logout_marks_the_session_down(pair: Pair) -> None:
    """Last in the module: the OMS logs out for good."""
    before = scrape(pair.port)
    pair.client.stop()
    down = dict(session=OMS, role="oms", state="logged_out")
    after = wait_for(pair.port, lambda s: value(s, "fixgw_session_up", session=OMS,
                                                role="oms") == 0)
    assert value(after, "fixgw_session_up", session=OMS, role="oms") == 0
    assert value(after, "fixgw_session_transitions_total", **down) - value(
        before, "fixgw_session_transitions_total", **down) == 1
    assert value(after, "fixgw_messages_total", session=OMS, role="oms", direction="in",
                 msg_type="5") - value(before, "fixgw_messages_total", session=OMS, role="oms",
                                       direction="in", msg_type="5") == 1
    # The venue sessions are untouched.
    assert value(after, "fixgw_session_up", session=TRD, role="venue-trading") == 1


def test_metrics_listener_refuses_other_paths_cleanly(pair: Pair, tmp_path: Path) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{pair.port}/metrics", timeout=10) as resp:
        body = resp.read().decode()
    assert "# TYPE fixgw_order_round_trip_seconds histogram" in body
    # The private registry: none of prometheus_client's process-wide default collectors.
    assert "python_gc_objects_collected_total" not in body
