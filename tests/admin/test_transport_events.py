"""`fixgwctl transport force` and `fixgwctl events` against a real `fixgw run` (REST fallback on)
and the simulator: the transport really moves (health, transport_switch events, audit), and the
order events of an order an OMS sent show up in the event tail, also across a gateway restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.admin.audit import read_audit
from tests.conftest import Oms, make_client
from tests.procs import REPO, Credentials, GatewayProcess, Lines, SimProcess, stop_all


class Env:
    def __init__(self, sim: SimProcess, gw: GatewayProcess, oms: Oms, ro_file: Path) -> None:
        self.sim, self.gw, self.oms, self.ro_file = sim, gw, oms, ro_file

    @property
    def token_file(self) -> Path:
        return self.gw.data_dir / "var" / "admin.token"

    def env(self, token_file: Path | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FIXGW_")}
        env["FIXGW_ADDR"] = f"127.0.0.1:{self.gw.admin_port}"
        env["FIXGW_EVENTS_ADDR"] = f"127.0.0.1:{self.gw.grpc_port}"
        env["FIXGW_TOKEN_FILE"] = str(token_file or self.token_file)
        return env

    def ctl(self, *args: str, token_file: Path | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway.cli.ctl", *args], input="",
                              capture_output=True, text=True, env=self.env(token_file),
                              cwd=REPO, timeout=timeout)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("transport")
    creds = Credentials()
    sim = SimProcess(tmp / "sim", creds)
    ro_file = tmp / "readonly.token"
    ro_file.write_text("read-only-token-for-tests\n")
    ro_file.chmod(0o600)
    gw = GatewayProcess(
        tmp / "gw", sim, creds,
        venue_toml=("md_stale_after_s = 3600\n[venue.fallback]\nenabled = true\n"
                    f'rest_url = "http://127.0.0.1:{sim.spot_rest_port}"\n'
                    f'ws_url = "ws://127.0.0.1:{sim.spot_ws_port}/v2"\n'
                    "failback_after_s = 0.5\nfailover_after_s = 0.5\n"),
        extra_toml=f'read_only_token = {{ file = "{ro_file}" }}')
    client = make_client(tmp / "oms", gw.oms_port, "OMS", "FIXGW")
    client.start()
    try:
        yield Env(sim, gw, Oms(client), ro_file)
    finally:
        try:  # client and gateway together: each waits out QuickFIX's 1 s ticks
            stop_all([client.stop, gw.stop])
        finally:
            sim.stop()


def _health(e: Env) -> dict[str, object]:
    r = e.ctl("health", "--json")
    return dict(json.loads(r.stdout))


def _wait_transport(e: Env, want: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while (got := _health(e)["order_transport"]) != want:
        assert time.monotonic() < deadline, f"order transport {got}, wanted {want}"
        time.sleep(0.2)


def test_force_transport_refusals(env: Env) -> None:
    before = len(read_audit(env.gw.data_dir / "var" / "admin-audit.jsonl"))
    r = env.ctl("transport", "force", "rest")  # stdin not a terminal, no --yes
    assert r.returncode == 1 and "--yes" in r.stderr
    r = env.ctl("transport", "force", "rest", "--yes", token_file=env.ro_file)
    assert r.returncode == 4 and "permission denied" in r.stderr and "read-only" in r.stderr
    # Refused, and audited as refused (who tried, not what: the request is not read).
    denied = read_audit(env.gw.data_dir / "var" / "admin-audit.jsonl")[before:]
    assert [(a["what"], a["who"].split(":")[0], a["result"]["ok"]) for a in denied] == [
        ("force_transport", "read-only", False)]
    r = env.ctl("transport", "force", "carrier-pigeon", "--yes")
    assert r.returncode == 2
    assert _health(env)["order_transport"] == "fix"


def test_force_ws_sends_orders_over_the_private_websocket(env: Env) -> None:
    r = env.ctl("transport", "force", "ws", "--yes")
    assert r.returncode == 0, r.stderr
    assert "forced to WS" in r.stdout
    _wait_transport(env, "ws")  # failed over, private WebSocket connected
    mark = len(env.gw.err.lines)
    cl = env.oms.buy("0.01", "30000.0")
    env.oms.report(cl, "0")
    journal = (env.gw.data_dir / "var" / "orders.journal").read_text().splitlines()
    transport = {ln.split("\t")[2]: ln.split("\t")[-1] for ln in journal
                 if ln.startswith("N\t")}
    assert transport[cl] == "ws"
    assert "placed over REST" not in "\n".join(env.gw.err.lines[mark:])
    r = env.ctl("transport", "force", "rest", "--yes")
    assert r.returncode == 0 and "forced to REST" in r.stdout
    _wait_transport(env, "rest")  # the fallback path, REST only
    r = env.ctl("transport", "force", "ws", "--yes")
    assert r.returncode == 0
    _wait_transport(env, "ws")
    audit = read_audit(env.gw.data_dir / "var" / "admin-audit.jsonl")
    forced = [a["args"]["transport"] for a in audit
              if a["what"] == "force_transport" and a["result"]["ok"]]
    assert forced[-3:] == ["ws", "rest", "ws"]


def test_force_rest_then_auto_moves_the_order_flow(env: Env) -> None:
    r = env.ctl("transport", "force", "rest", "--yes")
    assert r.returncode == 0, r.stderr
    assert "forced to REST" in r.stdout
    _wait_transport(env, "rest")
    cl = env.oms.buy("0.01", "30000.0")
    env.oms.report(cl, "0")  # accepted over REST
    r = env.ctl("transport", "force", "auto", "--yes", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["ok"] is True
    _wait_transport(env, "fix")
    audit = read_audit(env.gw.data_dir / "var" / "admin-audit.jsonl")
    forced = [a for a in audit if a["what"] == "force_transport" and a["result"]["ok"]]
    assert [a["args"]["transport"] for a in forced][-2:] == ["rest", "auto"]
    # Both switches are on the event stream.
    ev = env.ctl("events", "--kind", "TRANSPORT_SWITCH", "--from", "1", "--json")
    assert ev.returncode == 0, ev.stderr
    switches = [json.loads(line)["transport_switch"] for line in ev.stdout.splitlines()]
    pairs = [(s.get("from_transport"), s.get("to_transport")) for s in switches]
    # Also there: an operator's pin that moves nothing (from = to), and `auto` putting new
    # orders on the private WebSocket (REST -> WS) until the flow is back on FIX.
    moves = [p for p in pairs if p[0] != p[1]]
    assert ("TRANSPORT_FIX", "TRANSPORT_REST") in moves
    assert moves[-1] == ("TRANSPORT_REST", "TRANSPORT_FIX")


def test_a_force_that_moves_nothing_is_on_the_event_stream_too(env: Env) -> None:
    """`force fix` while on FIX moves no order but turns automatic failover off: the stream
    records it like every operator change, naming the operator's request."""
    _wait_transport(env, "fix")
    assert env.ctl("transport", "force", "fix", "--yes").returncode == 0
    try:
        ev = env.ctl("events", "--kind", "TRANSPORT_SWITCH", "--from", "1", "--json")
        last = json.loads(ev.stdout.splitlines()[-1])["transport_switch"]
        assert (last.get("from_transport"), last.get("to_transport")) == (
            "TRANSPORT_FIX", "TRANSPORT_FIX")
        assert last.get("automatic", False) is False
        assert "admin force_transport fix by" in last["reason"]
    finally:
        assert env.ctl("transport", "force", "auto", "--yes").returncode == 0


def test_events_shows_the_order_events_of_an_order(env: Env) -> None:
    cl = env.oms.buy("0.02", "30500.0")
    env.oms.report(cl, "0")
    r = env.ctl("events", "--kind", "ORDER", "--from", "1", timeout=30)
    assert r.returncode == 0, r.stderr
    mine = [line for line in r.stdout.splitlines() if cl in line]
    assert len(mine) >= 2, r.stdout  # accepted by the gateway + the venue's New report
    assert all(" ORDER " in line and "BTC/USD" in line for line in mine)
    assert any("ACCEPTED" in line for line in mine) and any("EXECUTION_REPORT" in line
                                                            for line in mine)
    seqs = [int(line.split()[0]) for line in r.stdout.splitlines()]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    js = env.ctl("events", "--kind", "order", "--from", str(seqs[-1]), "--json")
    assert [json.loads(line)["sequence"] for line in js.stdout.splitlines()] == [str(seqs[-1])]
    r = env.ctl("events", "--kind", "NOPE")
    assert r.returncode == 2 and "unknown event kind" in r.stderr


def test_events_follow_resumes_after_a_gateway_restart(env: Env) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli.ctl", "events", "--follow",
                             "--kind", "ORDER"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env.env(), cwd=REPO)
    out, err = Lines(proc.stdout), Lines(proc.stderr)
    try:
        time.sleep(1.0)  # subscribed (from the next event)
        cl = env.oms.buy("0.03", "30600.0")
        out.wait_for(cl, timeout=15)
        env.gw.stop()
        err.wait_for("resuming after sequence", timeout=15)
        env.gw.start()
        deadline = time.monotonic() + 30  # the OMS client reconnects on its own
        while not env.oms.c.logged_on.wait(0.2):
            assert time.monotonic() < deadline, "OMS did not log on again"
        cl2 = env.oms.buy("0.04", "30700.0")
        out.wait_for(cl2, timeout=30)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
