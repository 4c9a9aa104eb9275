"""`fixgwctl` as ops run it (a subprocess with FIXGW_ADDR / FIXGW_TOKEN_FILE) against a real
in-process gateway, its AdminServer and the simulator; effects checked on the OMS's FIX wire."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from gateway._proto.fixgw.v1 import admin_pb2, admin_pb2_grpc
from gateway.admin.audit import read_audit
from gateway.cli.ctl import build_parser
from gateway.fix.client import Received
from gateway.version import version_line
from tests.admin.test_admin import (
    OMS_NAME,
    TRD_NAME,
    Stack,
    admin_stack,
    cancel_traffic,
    canceled_in_time,
    unwritable,
    venue_frozen,
)
from tests.conftest import new_id, wait_until
from tests.procs import REPO, free_port


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with admin_stack(tmp_path_factory.mktemp("ctl")) as s:
        yield s


def ctl(s: Stack | None, *args: str, token_file: Path | None = None, addr: str | None = None,
        stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIXGW_")}
    if s is not None:
        env["FIXGW_ADDR"] = addr or s.addr
        env["FIXGW_TOKEN_FILE"] = str(token_file or s.operator_file)
    return subprocess.run([sys.executable, "-m", "gateway.cli.ctl", *args], input=stdin,
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=30)


def test_help_usage_and_unreachable(tmp_path: Path) -> None:
    h = ctl(None, "--help")
    assert h.returncode == 0 and "examples:" in h.stdout and "kill-switch" in h.stdout
    sub = ctl(None, "set-seq", "--help")
    assert sub.returncode == 0 and "--sender" in sub.stdout and "example:" in sub.stdout
    assert ctl(None, "frobnicate").returncode == 2
    assert ctl(None, "kill-switch", "maybe").returncode == 2
    tok = tmp_path / "t"
    tok.write_text("whatever\n")
    addr = f"127.0.0.1:{free_port()}"
    r = subprocess.run([sys.executable, "-m", "gateway.cli.ctl", "--addr", addr, "--token-file",
                        str(tok), "sessions"], capture_output=True, text=True, cwd=REPO,
                       timeout=30)
    assert r.returncode == 3 and f"gateway not reachable at {addr}" in r.stderr


def test_timeout_must_be_positive_and_health_exit_codes_are_documented() -> None:
    for bad in ("0", "-1", "nan", "soon", "inf", "1e10", "86401"):
        r = ctl(None, "--timeout", bad, "health")
        assert r.returncode == 2 and "--timeout" in r.stderr, (bad, r.stderr)
    # inf or a huge value overflowed gRPC's deadline: every call failed at once, a change
    # reported as "may have taken effect" (exit 5) though nothing was sent.
    assert "too long: give at most 86400" in ctl(None, "--timeout", "inf", "health").stderr
    assert build_parser().parse_args(["--timeout", "86400", "health"]).timeout == 86400
    h = ctl(None, "health", "--help")
    assert h.returncode == 0 and "exit 0 healthy, 1 unhealthy" in " ".join(h.stdout.split())
    assert "1 refused/not found/not confirmed (health: unhealthy)" in ctl(None, "--help").stdout


def test_sessions_table_and_json(stack: Stack) -> None:
    r = ctl(stack, "sessions")
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    for col in ("NAME", "ROLE", "STATE", "SEQ IN/OUT", "LAST HEARD", "TRANSPORT"):
        assert col in header
    oms_row = next(row for row in rows if row.startswith(OMS_NAME))
    assert "oms" in oms_row and "logged_on" in oms_row and "fix" in oms_row
    assert any(row.startswith(TRD_NAME) and "venue-trading" in row for row in rows)
    js = ctl(stack, "sessions", "--json")
    assert js.returncode == 0
    data = {d["name"]: d for d in json.loads(js.stdout)}
    assert data[OMS_NAME]["role"] == "oms" and data[OMS_NAME]["next_sender_seq_num"] >= 2
    one = ctl(stack, "session", "KRAKEN-MD", "--json")
    assert one.returncode == 0 and json.loads(one.stdout)["role"] == "venue-md"
    detail = ctl(stack, "session", TRD_NAME)
    assert "heartbeat interval" in detail.stdout and "next sender seq" in detail.stdout
    missing = ctl(stack, "session", "NOPE")
    assert missing.returncode == 1 and "no session named 'NOPE'" in missing.stderr
    health = ctl(stack, "health", "--json")
    assert health.returncode == 0 and json.loads(health.stdout)["healthy"] is True
    # The running gateway's build (not necessarily fixgwctl's) and how long it has been up.
    h = json.loads(health.stdout)
    assert h["version"] == version_line() and int(h["uptime_s"]) >= 0
    text = ctl(stack, "health")
    assert re.search(rf"^{re.escape(version_line())}, up \d+s$", text.stdout, re.M), text.stdout


def test_auth_failures(stack: Stack, tmp_path: Path) -> None:
    r = ctl(stack, "sessions", token_file=tmp_path / "absent.token")
    assert r.returncode == 4 and "does not exist" in r.stderr
    wrong = tmp_path / "wrong.token"
    wrong.write_text("definitely-not-the-token\n")
    r = ctl(stack, "sessions", token_file=wrong)
    assert r.returncode == 4 and "token rejected" in r.stderr
    assert ctl(stack, "sessions", token_file=stack.read_only_file).returncode == 0
    r = ctl(stack, "logout", OMS_NAME, "--yes", token_file=stack.read_only_file)
    assert r.returncode == 4 and "permission denied" in r.stderr and "read-only" in r.stderr
    js = ctl(stack, "logout", OMS_NAME, "--yes", "--json", token_file=stack.read_only_file)
    assert json.loads(js.stdout)["exit_code"] == 4
    assert stack.logged_on(OMS_NAME)


def test_destructive_commands_need_confirmation(stack: Stack) -> None:
    before = len(read_audit(stack.audit_path))
    r = ctl(stack, "logout", OMS_NAME)  # stdin is not a terminal and there is no --yes
    assert r.returncode == 1 and "--yes" in r.stderr
    r = ctl(stack, "kill-switch", "on")
    assert r.returncode == 1
    assert stack.logged_on(OMS_NAME) and not stack.gw.gate.kill_switch
    assert len(read_audit(stack.audit_path)) == before


def test_set_seq_then_the_oms_sees_that_msgseqnum(stack: Stack) -> None:
    cur = json.loads(ctl(stack, "session", OMS_NAME, "--json").stdout)
    n = cur["next_sender_seq_num"] + 25
    # Logged on: refused without --force, before anything is sent (no audit record).
    before = len(read_audit(stack.audit_path))
    r = ctl(stack, "set-seq", OMS_NAME, "--sender", str(n), "--yes")
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{OMS_NAME} is logged on: nothing sent" in r.stderr and "--force" in r.stderr
    # With --force the prompt says it is logged on (no terminal here: not confirmed).
    r = ctl(stack, "set-seq", OMS_NAME, "--sender", str(n), "--force")
    assert r.returncode == 1 and f"{OMS_NAME} is LOGGED ON" in r.stderr, r.stderr
    assert len(read_audit(stack.audit_path)) == before
    r = ctl(stack, "set-seq", OMS_NAME, "--sender", str(n), "--force", "--yes", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["ok"], r.stdout + r.stderr
    assert "applied live: the session is logged on" in json.loads(r.stdout)["message"]
    cl = new_id("H")
    stack.oms.send("H", [(11, cl), (55, "BTC/USD"), (54, "1")])
    er = stack.oms.expect(lambda m: m.msg_type == "8" and m.fields.get(11) == cl)
    assert er.fields[34] == str(n)
    assert ctl(stack, "set-seq", OMS_NAME, "--yes").returncode == 2


def test_logout_reason_then_logon(stack: Stack) -> None:
    stack.drain_admin()
    r = ctl(stack, "logout", OMS_NAME, "--reason", "end of day", "--yes")
    assert r.returncode == 0, r.stderr
    assert stack.admin_msgs("5").fields[58] == "end of day"
    time.sleep(1.5)
    assert not stack.oms.c.logged_on.is_set()
    listed = ctl(stack, "sessions").stdout
    assert "(disabled)" in next(row for row in listed.splitlines() if row.startswith(OMS_NAME))
    # Health names the OMS that is away, without calling the gateway unhealthy for it.
    health = json.loads(ctl(stack, "health", "--json").stdout)
    assert health["healthy"] is True and health["oms_sessions_up"] == 0, health
    assert health["summary"] == f"OMS not logged on: {OMS_NAME}", health
    assert ctl(stack, "logon", OMS_NAME).returncode == 0
    assert stack.oms.c.logged_on.wait(10)


def test_kill_switch_on_cancels_and_blocks(stack: Stack) -> None:
    (cl,) = stack.resting(("0.01", "900.0"))
    r = ctl(stack, "kill-switch", "on", "--yes")
    assert r.returncode == 0 and "kill switch on" in r.stdout, r.stderr

    def canceled(m: Received) -> bool:
        return m.msg_type == "8" and m.fields.get(150) == "4" and m.fields.get(41) == cl
    stack.oms.expect(canceled)
    blocked = stack.oms.buy("0.01", "901.0")
    assert stack.oms.report(blocked, "8").fields[58].startswith("blocked by kill_switch")
    health = ctl(stack, "health")
    assert health.returncode == 1 and "kill switch on" in health.stdout
    rules = ctl(stack, "gate", "rules")
    assert rules.returncode == 0 and "kill switch: ON" in rules.stdout
    assert ctl(stack, "kill-switch", "off").returncode == 0  # turning it off needs no prompt
    again = stack.oms.buy("0.01", "902.0")
    stack.oms.report(again, "0")


def test_a_change_done_in_part_exits_6(stack: Stack) -> None:
    """A kill switch the data directory would not keep is on all the same: not exit 0 (a
    script would think it is kept), not 1 (it was not refused): 6, with what is missing."""
    with unwritable(stack.gw.data_dir / "kill-switch.json"):
        r = ctl(stack, "kill-switch", "on", "--yes")
        assert r.returncode == 6, (r.stdout, r.stderr)
        assert "kill switch on" in r.stderr and "NOT persisted" in r.stderr
        assert stack.gw.gate.kill_switch
        j = ctl(stack, "kill-switch", "off", "--json")
        assert j.returncode == 6
        assert json.loads(j.stdout)["partial"] is True
    assert json.loads(ctl(stack, "kill-switch", "off", "--json").stdout) == {
        "ok": True, "partial": False, "message": "kill switch off: new orders pass the gate again"}
    assert "6 a change done in part" in ctl(None, "--help").stdout


def test_gate_rules_and_toggle(stack: Stack) -> None:
    r = ctl(stack, "gate", "rules")
    assert r.returncode == 0
    assert "RULE" in r.stdout and "max_order_qty" in r.stdout and "*=100" in r.stdout
    js = json.loads(ctl(stack, "gate", "rules", "--json").stdout)
    assert any(x["name"] == "max_order_qty" and x["enabled"] for x in js["rules"])
    assert ctl(stack, "gate", "disable", "max_order_qty", "--yes").returncode == 0
    assert not next(x for x in stack.gw.gate.rules() if x.name == "max_order_qty").enabled
    assert ctl(stack, "gate", "enable", "max_order_qty").returncode == 0
    bad = ctl(stack, "gate", "disable", "nope", "--yes")
    assert bad.returncode == 1 and "unknown" in bad.stderr
    assert ctl(stack, "gate", "disable").returncode == 2
    audit = read_audit(stack.audit_path)
    assert [(a["what"], a["args"].get("name"), a["result"]["ok"]) for a in audit[-3:]] == [
        ("set_gate_rule", "max_order_qty", True), ("set_gate_rule", "max_order_qty", True),
        ("set_gate_rule", "nope", False)]


def test_orders_order_and_cancel(stack: Stack) -> None:
    (cl,) = stack.resting(("0.01", "903.0"))
    eth = stack.oms.buy("0.1", "40.0", symbol="ETH/USD")
    stack.oms.report(eth, "0")
    table = ctl(stack, "orders", "--symbol", "BTC/USD", token_file=stack.read_only_file)
    assert table.returncode == 0, table.stderr
    header, *rows, footer = table.stdout.splitlines()
    for col in ("SESSION", "CLORDID", "SYMBOL", "SIDE", "QTY", "PRICE", "STATUS", "ORDERID"):
        assert col in header
    row = next(r for r in rows if cl in r)
    assert OMS_NAME in row and "buy" in row and "903.0" in row and "New" in row
    assert not any(eth in r for r in rows) and re.fullmatch(r"\d+ open order\(s\)", footer)
    js = json.loads(ctl(stack, "orders", "--json", "--limit", "1").stdout)
    assert len(js["orders"]) == 1 and js["matched"] >= 2 and js["orders"][0]["cl_ord_id"] == eth
    order_id = next(o for o in json.loads(ctl(stack, "orders", "--json").stdout)["orders"]
                    if o["cl_ord_id"] == cl)["order_id"]
    detail = ctl(stack, "order", order_id)  # by the venue's OrderID
    assert detail.returncode == 0, detail.stderr
    assert re.search(rf"^ClOrdID\s+{cl}$", detail.stdout, re.M)
    assert re.search(r"^type\s+limit, GTC$", detail.stdout, re.M), detail.stdout
    missing = ctl(stack, "order", "nope")
    assert missing.returncode == 1 and "no order named nope" in missing.stderr
    assert ctl(stack, "orders", "--limit", "0").returncode == 2
    before = len(read_audit(stack.audit_path))
    unconfirmed = ctl(stack, "cancel", cl)
    assert unconfirmed.returncode == 1 and "--yes" in unconfirmed.stderr
    assert ctl(stack, "cancel", "--yes").returncode == 2  # nothing named
    assert ctl(stack, "cancel", "--all", "--symbol", "BTC/USD", "--yes").returncode == 2
    assert len(read_audit(stack.audit_path)) == before
    denied = ctl(stack, "cancel", cl, "--yes", token_file=stack.read_only_file)
    assert denied.returncode == 4
    done = ctl(stack, "cancel", cl, "--yes")
    assert done.returncode == 0 and f"cancel sent for {cl}" in done.stdout, done.stderr
    stack.oms.expect(lambda m: m.msg_type == "8" and m.fields.get(150) == "4"
                     and m.fields.get(41) == cl)
    wait_until(lambda: "Canceled (closed)" in ctl(stack, "order", cl).stdout, 10, "closed")
    again = ctl(stack, "cancel", cl, "--yes", "--json")
    assert again.returncode == 1 and "nothing to cancel" in json.loads(again.stdout)["message"]
    rest = ctl(stack, "cancel", "--session", "OMS", "--symbol", "ETH/USD", "--yes")
    assert rest.returncode == 0 and "cancel sent for" in rest.stdout, rest.stderr
    stack.oms.expect(lambda m: m.msg_type == "8" and m.fields.get(150) == "4"
                     and m.fields.get(41) == eth)


def test_cancel_twice_while_the_venue_is_frozen_sends_one_cancel(stack: Stack) -> None:
    """The audit's `fixgwctl cancel <ClOrdID> --yes` twice with the venue frozen: the second
    says the cancel is on its way already and sends none (exit 0: the order is being
    canceled, as asked); `fixgwctl order` and `orders` show the pending cancel after the FIX
    OrdStatus, which stays New; `cancel --all` then skips it too and says so. Once the venue
    resumes: one cancel reached it, so no cancel reject."""
    (cl,) = stack.resting(("0.01", "905.0"))
    with venue_frozen(stack):
        first = ctl(stack, "cancel", cl, "--yes")
        assert first.returncode == 0 and f"cancel sent for {cl}" in first.stdout, first.stderr
        second = ctl(stack, "cancel", cl, "--yes")
        assert second.returncode == 0, second.stdout + second.stderr
        assert re.search(rf"{cl} \({OMS_NAME}, BTC/USD\): cancel OPS-\S+ sent \d+ s ago and "
                         "not answered yet; not sent again", second.stdout), second.stdout
        shown = ctl(stack, "order", cl).stdout
        assert re.search(r"status\s+New \(cancel pending: OPS-\S+, sent \d+ s ago\)", shown), (
            shown)
        row = next(r for r in ctl(stack, "orders").stdout.splitlines() if cl in r)
        assert "New (cancel pending: OPS-" in row, row
        every = ctl(stack, "cancel", "--all", "--yes", "--json")
        assert every.returncode == 0, every.stdout + every.stderr
        msg = json.loads(every.stdout)["message"]
        assert re.search(rf"\d+ already had a cancel on its way, not sent again \([^)]*{cl}: "
                         "cancel OPS-", msg), msg
    canceled_in_time(stack, [cl])
    assert cancel_traffic(stack, [cl]) == ([cl], [])


def test_a_change_without_an_answer_in_time_is_exit_5_not_unreachable(tmp_path: Path) -> None:
    """A kill switch that cancels over a slow REST API can outlast --timeout: the change may
    be done, so fixgwctl must not call the gateway unreachable (an invitation to retry)."""
    release = threading.Event()

    class Slow(admin_pb2_grpc.AdminServiceServicer):
        def KillSwitch(self, request: admin_pb2.KillSwitchRequest,
                       context: grpc.ServicerContext) -> admin_pb2.ActionResult:
            release.wait(10)
            return admin_pb2.ActionResult(ok=True, message="kill switch on")

        def Health(self, request: admin_pb2.HealthRequest,
                   context: grpc.ServicerContext) -> admin_pb2.HealthResponse:
            release.wait(10)
            return admin_pb2.HealthResponse(healthy=True, summary="ok")

    server = grpc.server(futures.ThreadPoolExecutor(4))
    admin_pb2_grpc.add_AdminServiceServicer_to_server(Slow(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    tok = tmp_path / "t"
    tok.write_text("whatever\n")
    base = [sys.executable, "-m", "gateway.cli.ctl", "--addr", f"127.0.0.1:{port}",
            "--token-file", str(tok), "--timeout", "0.5"]
    try:
        r = subprocess.run([*base, "kill-switch", "on", "--yes"], capture_output=True,
                           text=True, cwd=REPO, timeout=30)
        assert r.returncode == 5, r.stderr
        assert "may have taken effect" in r.stderr and "fixgwctl health" in r.stderr
        assert "not reachable" not in r.stderr
        # A question without an answer changes nothing: asking again is safe (exit 3).
        r = subprocess.run([*base, "health"], capture_output=True, text=True, cwd=REPO,
                           timeout=30)
        assert r.returncode == 3, r.stderr
    finally:
        release.set()
        server.stop(0)


def test_a_token_given_where_its_file_goes_is_not_printed(tmp_path: Path) -> None:
    """`FIXGW_TOKEN_FILE="$(cat admin.token)"` or `--token-file <the token>`: the token must
    not appear in the error, which names the path the way the gateway names credential
    files."""
    token = "kQH5vX9_2fLr8mZpQ0aB7cYd-3eW1tUoIsNjHgFk6x"  # as token_urlsafe(32) makes them
    addr = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIXGW_")}
    for args, extra in ((("--token-file", token), {}), ((), {"FIXGW_TOKEN_FILE": token})):
        r = subprocess.run([sys.executable, "-m", "gateway.cli.ctl", "--addr", addr, *args,
                            "sessions"], capture_output=True, text=True, cwd=tmp_path,
                           env=env | extra | {"PYTHONPATH": str(REPO)}, timeout=30)
        assert r.returncode == 4, r.stderr
        assert "no admin token" in r.stderr and "not shown" in r.stderr, r.stderr
        assert token not in r.stdout + r.stderr


def test_numbers_too_large_for_the_request_are_usage_errors(stack: Stack) -> None:
    """A MsgSeqNum over uint64 or a --limit over uint32 would fail in the protobuf encoder
    (a ValueError traceback, exit 1): a usage error (2) naming the most it can be."""
    for args in (("set-seq", OMS_NAME, "--sender", str(2**64), "--force", "--yes"),
                 ("set-seq", OMS_NAME, "--target", "99999999999999999999999", "--yes"),
                 ("orders", "--limit", "99999999999")):
        r = ctl(stack, *args)
        assert r.returncode == 2, (args, r.stderr)
        assert "is too large: give at most" in r.stderr and "Traceback" not in r.stderr
    assert ctl(stack, "orders", "--limit", str(2**32 - 1)).returncode == 0


def test_a_token_file_that_holds_no_token_is_an_auth_error(stack: Stack, tmp_path: Path) -> None:
    """Bytes that are not UTF-8, or characters gRPC metadata cannot carry: exit 4 saying the
    file holds no token, not a traceback or an "Invalid metadata" call failure (exit 1)."""
    binary = tmp_path / "binary.token"
    binary.write_bytes(b"\xff\xfe\x00garbage\n")
    r = ctl(stack, "sessions", token_file=binary)
    assert r.returncode == 4, r.stderr
    assert f"admin token file {binary} is not a token" in r.stderr and "Traceback" not in r.stderr
    accented = tmp_path / "accented.token"
    accented.write_text("t\u00f6ken-with-an-umlaut\n", encoding="utf-8")
    r = ctl(stack, "logout", OMS_NAME, "--yes", token_file=accented)
    assert r.returncode == 4, r.stderr
    assert "character 2 of its first line is not printable ASCII" in r.stderr
    assert "Invalid metadata" not in r.stderr and "t\u00f6ken" not in r.stderr
    assert stack.logged_on(OMS_NAME)


def test_a_change_sent_to_a_port_that_is_not_grpc_is_unreachable_nothing_sent(
        stack: Stack) -> None:
    """The OMS FIX port takes the TCP connection but never speaks gRPC: the change cannot have
    reached the gateway, so exit 3 "nothing sent" (safe to fix --addr and send again), not 5
    "may have taken effect"."""
    fix_port = f"127.0.0.1:{stack.gw.config.oms.port}"
    before = len(read_audit(stack.audit_path))
    r = ctl(stack, "--timeout", "2", "kill-switch", "on", "--yes", addr=fix_port)
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert f"gateway not reachable at {fix_port}" in r.stderr and "nothing sent" in r.stderr
    assert "may have taken effect" not in r.stderr
    assert not stack.gw.gate.kill_switch and len(read_audit(stack.audit_path)) == before
