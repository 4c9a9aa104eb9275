"""Transport and event-stream figures of a real `fixgw run` (REST fallback configured) against
the simulator: a forced switch to REST and back moves the transport gauge and the switch and
failover counters by one each; a live gRPC subscriber shows in the subscriber gauge."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from gateway._proto.fixgw.v1 import events_pb2, events_pb2_grpc
from tests.events.test_events_service import collect
from tests.metrics.test_metrics_e2e import scrape, value, wait_for
from tests.procs import REPO, Credentials, GatewayProcess, SimProcess


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("metrics-transport")
    creds = Credentials()
    sim = SimProcess(tmp / "sim", creds)
    g: GatewayProcess | None = None
    try:
        g = GatewayProcess(
            tmp / "gw", sim, creds,
            venue_toml=("md_stale_after_s = 3600\n[venue.fallback]\nenabled = true\n"
                        f'rest_url = "http://127.0.0.1:{sim.spot_rest_port}"\n'
                        "failback_after_s = 0.5\nfailover_after_s = 0.5\n"))
        yield g
    finally:
        if g is not None:
            g.stop()
        sim.stop()


def ctl(gw: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIXGW_")}
    env["FIXGW_ADDR"] = f"127.0.0.1:{gw.admin_port}"
    env["FIXGW_TOKEN_FILE"] = str(gw.data_dir / "var" / "admin.token")
    return subprocess.run([sys.executable, "-m", "gateway.cli.ctl", *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=30)


def test_forced_failover_and_back(gw: GatewayProcess) -> None:
    port = gw.metrics_port
    before = scrape(port)
    assert value(before, "fixgw_order_transport", transport="fix") == 1
    to_rest = dict(to="rest", automatic="false")
    to_rest["from"] = "fix"
    r = ctl(gw, "transport", "force", "rest", "--yes")
    assert r.returncode == 0, r.stderr
    after = wait_for(port, lambda s: value(s, "fixgw_order_transport", transport="rest") == 1,
                     timeout=15)
    assert value(after, "fixgw_order_transport", transport="rest") == 1
    assert value(after, "fixgw_order_transport", transport="fix") == 0
    assert value(after, "fixgw_transport_switches_total", **to_rest) - value(
        before, "fixgw_transport_switches_total", **to_rest) == 1
    assert value(after, "fixgw_transport_failovers_total") - value(
        before, "fixgw_transport_failovers_total") == 1

    r = ctl(gw, "transport", "force", "auto", "--yes")
    assert r.returncode == 0, r.stderr
    back = wait_for(port, lambda s: value(s, "fixgw_order_transport", transport="fix") == 1,
                    timeout=15)
    assert value(back, "fixgw_order_transport", transport="fix") == 1
    to_fix = {"from": "rest", "to": "fix"}
    switched_back = sum(v for (name, labels), v in back.items()
                        if name == "fixgw_transport_switches_total"
                        and to_fix.items() <= dict(labels).items())
    assert switched_back == 1
    # A failback is not a failover.
    assert value(back, "fixgw_transport_failovers_total") == value(
        after, "fixgw_transport_failovers_total")


def test_live_event_subscriber_is_counted(gw: GatewayProcess) -> None:
    port = gw.metrics_port
    assert value(scrape(port), "fixgw_event_subscribers") == 0
    channel = grpc.insecure_channel(f"127.0.0.1:{gw.grpc_port}")
    stub = events_pb2_grpc.EventServiceStub(channel)
    call = stub.Subscribe(events_pb2.SubscribeRequest(from_sequence=1))
    got_one = threading.Event()

    def drain() -> None:
        try:
            for _batch in call:
                got_one.set()
        except grpc.RpcError:
            pass

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    try:
        assert got_one.wait(10)
        s = wait_for(port, lambda s: value(s, "fixgw_event_subscribers") == 1, timeout=10)
        assert value(s, "fixgw_event_subscribers") == 1
    finally:
        call.cancel()
        t.join(5)
        channel.close()
    s = wait_for(port, lambda s: value(s, "fixgw_event_subscribers") == 0, timeout=10)
    assert value(s, "fixgw_event_subscribers") == 0


def test_event_process_killed_is_restarted_and_counted(gw: GatewayProcess) -> None:
    """kill -9 of the event process alone: the gateway starts another on the same port, the
    restart shows in the metrics, and the stream serves the whole history again. (Last in this
    module: it changes the gateway's event process.)"""
    port = gw.metrics_port
    assert value(scrape(port), "fixgw_event_process_restarts_total") == 0
    old = gw.event_process_pid()
    assert old is not None
    channel = grpc.insecure_channel(f"127.0.0.1:{gw.grpc_port}")
    stub = events_pb2_grpc.EventServiceStub(channel)
    newest = stub.GetLogInfo(events_pb2.GetLogInfoRequest(), timeout=5).next_sequence - 1
    assert newest >= 1  # the sessions' logons at least
    time.sleep(0.3)  # the journal writer's interval: what was published is on disk
    os.kill(old, 9)
    s = wait_for(port, lambda s: value(s, "fixgw_event_process_restarts_total") == 1, timeout=20)
    assert value(s, "fixgw_event_process_restarts_total") == 1
    assert value(s, "fixgw_events_dropped_total") == 0
    new = gw.event_process_pid()
    assert new is not None and new != old
    # Same address, and the history the dead one had journaled, gap-free.
    got = collect(stub, newest, from_sequence=1)
    assert [e.sequence for e in got] == list(range(1, newest + 1))
    channel.close()
