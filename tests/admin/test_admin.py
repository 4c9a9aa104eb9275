"""AdminService over gRPC against a real in-process gateway and a simulator subprocess: tokens and
roles, session control observed on the OMS's FIX wire, the kill switch, gate rules, audit."""

from __future__ import annotations

import logging
import os
import signal
import stat
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from gateway._proto.fixgw.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    events_pb2,
    orders_pb2,
    session_pb2,
)
from gateway.admin.audit import read_audit
from gateway.admin.auth import (
    OPERATOR,
    READ_ONLY,
    TokenError,
    TokenTable,
    ensure_token_file,
    fingerprint,
    read_token,
    resolve_tokens,
)
from gateway.admin.service import AdminServer, disconnect_reply, reset_reply
from gateway.config import load_config
from gateway.events import EventLog, EventLogConfig
from gateway.events.publisher import InProcessPublisher
from gateway.fix.client import Received
from gateway.server.gateway import Gateway, VenueEndpoints
from gateway.server.runner import venue_credentials
from tests.conftest import Oms, make_client, new_id, wait_until
from tests.procs import Credentials, SimProcess, free_port

OMS_NAME = "FIXGW->OMS"
TRD_NAME = "FIXGW->KRAKEN-TRD"
MD_NAME = "FIXGW->KRAKEN-MD"


@dataclass
class Stack:
    sim: SimProcess
    gw: Gateway
    server: AdminServer
    port: int
    oms: Oms
    operator_token: str
    read_only_token: str
    operator_file: Path
    read_only_file: Path
    audit_path: Path

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def admin_msgs(self, msg_type: str, timeout: float = 10.0) -> Received:
        """The next session-level message of a type the OMS received."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"OMS received no 35={msg_type}")
            try:
                r = self.oms.c.admin.get(timeout=left)
            except Exception:
                continue
            if r.msg_type == msg_type:
                return r

    def drain_admin(self) -> None:
        while not self.oms.c.admin.empty():
            self.oms.c.admin.get_nowait()

    def logged_on(self, name: str) -> bool:
        st = self.gw.board.sessions.get(name)
        return st is not None and st.state == "logged_on"

    def resting(self, *orders: tuple[str, str]) -> list[str]:
        """Once the venue is up, buy orders of (quantity, price) (BTC/USD, priced under the
        market so they rest), each acknowledged New; their ClOrdIDs."""
        wait_until(lambda: self.gw.router.venue.is_up(), 20, "venue up")
        placed = [self.oms.buy(qty, px) for qty, px in orders]
        for cl in placed:
            self.oms.report(cl, "0")
        return placed


@contextmanager
def admin_stack(tmp: Path, settings: Mapping[str, object] | None = None) -> Iterator[Stack]:
    """Simulator subprocess + in-process Gateway + AdminServer on port 0 + an OMS client;
    `settings`: more config (dotted keys) over the stack's own. One stack per process at a
    time (QuickFIX's session registry is process-wide): a module-scoped fixture each."""
    creds = Credentials()
    sim = SimProcess(tmp / "sim", creds)
    gw: Gateway | None = None
    server: AdminServer | None = None
    client = None
    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("FIXGW_ADMIN_TEST_KEY", creds.api_key)
        mp.setenv("FIXGW_ADMIN_TEST_SECRET", creds.api_secret)
        oms_port = free_port()
        config = load_config(None, {
            "gateway.data_dir": str(tmp / "gw"),
            "gateway.journal_fsync_interval_ms": 20,
            "oms.port": oms_port,
            "venue.api_key": {"env": "FIXGW_ADMIN_TEST_KEY"},
            "venue.api_secret": {"env": "FIXGW_ADMIN_TEST_SECRET"},
            "venue.reconnect_min_s": 0.5, "venue.reconnect_max_s": 2.0,
            "venue.md_stale_after_s": 3600,
            "venue.trading.port": sim.trading_port, "venue.market_data.port": sim.md_port,
            "venue.futures.base_url": f"http://127.0.0.1:{sim.futures_rest_port}",
            "schedule.mode": "non-stop", "simulator.enabled": False,
            "risk.max_order_qty": {"*": "100"},
            **(settings or {}),
        })
        gw = Gateway(config, VenueEndpoints("127.0.0.1", sim.trading_port, "127.0.0.1",
                                            sim.md_port), venue_credentials(config),
                     EventLog(EventLogConfig()))
        gw.start()
        stack_gw = gw
        wait_until(lambda: (st := stack_gw.board.sessions.get(TRD_NAME)) is not None
                   and st.state == "logged_on", 30, "venue trading logon")
        op_file, ro_file = tmp / "admin.token", tmp / "readonly.token"
        op, ro = ensure_token_file(op_file), ensure_token_file(ro_file)
        audit = tmp / "audit" / "admin-audit.jsonl"
        server = AdminServer(gw, operator_token=op, read_only_token=ro, audit_path=audit, port=0)
        port = server.start()
        client = make_client(tmp / "oms", oms_port, "OMS", "FIXGW")
        client.start()
        yield Stack(sim, gw, server, port, Oms(client), op, ro, op_file, ro_file, audit)
    finally:
        if client is not None:
            client.stop()
        if server is not None:
            server.stop()
        if gw is not None:
            gw.stop()
            if gw.events is not None:
                gw.events.close()
        sim.stop()
        mp.undo()



def published(gw: Gateway) -> list[events_pb2.Event]:
    """Events the gateway published so far (the stack gives it an in-process EventLog)."""
    assert isinstance(gw.events, InProcessPublisher)
    gw.events.flush()  # deferred events first; admin events are published directly
    return gw.events.log.read(1, 100000)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with admin_stack(tmp_path_factory.mktemp("admin")) as s:
        yield s


def stub(s: Stack) -> admin_pb2_grpc.AdminServiceStub:
    return admin_pb2_grpc.AdminServiceStub(grpc.insecure_channel(s.addr))


def auth(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


# ---- tokens, no gateway needed -------------------------------------------------------------
def test_generated_token_file_is_0600_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "data" / "admin.token"
    token = ensure_token_file(path)
    assert len(token) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_token_file(path) == token  # an existing file is reused, not regenerated
    path.chmod(0o644)
    ensure_token_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_token_sources_and_roles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIXGW_T", " abc \n")
    assert read_token(env="FIXGW_T") == "abc"
    with pytest.raises(TokenError, match="FIXGW_NOPE is not set"):
        read_token(env="FIXGW_NOPE")
    with pytest.raises(TokenError, match="cannot read admin token file"):
        read_token(file=tmp_path / "missing")
    table = TokenTable("op-token", "ro-token")
    op = table.lookup("op-token")
    assert op is not None and op.role == OPERATOR
    ro = table.lookup("ro-token")
    assert ro is not None and ro.role == READ_ONLY and ro.fingerprint == fingerprint("ro-token")
    assert table.lookup("op-toke") is None and table.lookup("") is None
    with pytest.raises(TokenError, match="must differ"):
        TokenTable("same", "same")


def test_a_token_that_is_not_printable_ascii_is_refused(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """No client could present it (gRPC metadata is printable ASCII): refused when read, at
    start and by --check, naming the source and never the token."""
    accented = tmp_path / "accented.token"
    accented.write_text("caf\u00e9-operator-token\n", encoding="utf-8")
    with pytest.raises(TokenError, match="character 4 of the token is not printable ASCII") as e:
        read_token(file=accented)
    assert str(accented) in str(e.value) and "caf" not in str(e.value).replace(str(tmp_path), "")
    monkeypatch.setenv("FIXGW_T", "tab\there")
    with pytest.raises(TokenError, match="FIXGW_T: character 4 of the token"):
        read_token(env="FIXGW_T")
    binary = tmp_path / "binary.token"
    binary.write_bytes(b"tok\xffen\n")
    with pytest.raises(TokenError, match="is not UTF-8 text \\(byte 3\\)"):
        read_token(file=binary)


def test_resolve_tokens_generates_only_without_config(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    gen = resolve_tokens(tmp_path / "data")
    assert gen.generated_file == tmp_path / "data" / "admin.token" and gen.read_only is None
    assert read_token(file=gen.generated_file) == gen.operator
    monkeypatch.setenv("FIXGW_OP", "op-secret")
    ro = tmp_path / "ro.token"
    ro.write_text("ro-secret\n")
    got = resolve_tokens(tmp_path / "other", operator_env="FIXGW_OP", read_only_file=ro)
    assert (got.operator, got.read_only, got.generated_file) == ("op-secret", "ro-secret", None)
    assert not (tmp_path / "other" / "admin.token").exists()


def test_disconnect_and_reset_replies_follow_the_session_state() -> None:
    """The reply says what happened: no drop without a connection, no reconnect for a held
    initiator, no "logged out first" for a session that was not logged on."""
    assert disconnect_reply(OMS_NAME, False, False, False) == (
        f"{OMS_NAME}: not connected: nothing to drop")
    assert disconnect_reply(OMS_NAME, False, True, False) == (
        f"{OMS_NAME}: connection dropped without a Logout; the OMS may connect and log on again")
    assert disconnect_reply(OMS_NAME, False, True, True) == (
        f"{OMS_NAME}: connection dropped without a Logout; the OMS's Logon is refused until "
        f"`fixgwctl logon {OMS_NAME}` (logged out by an operator)")
    assert disconnect_reply(TRD_NAME, True, True, False) == (
        f"{TRD_NAME}: connection dropped without a Logout; the initiator reconnects")
    held = disconnect_reply(TRD_NAME, True, True, True)
    assert "reconnects" not in held and held.endswith(
        f"it stays down: held by an operator's logout until `fixgwctl logon {TRD_NAME}`")
    assert reset_reply(MD_NAME, False) == f"{MD_NAME}: sequence numbers reset to 1/1"
    assert reset_reply(MD_NAME, True) == (
        f"{MD_NAME}: sequence numbers reset to 1/1 (it was logged on, so it was logged out first)")


# ---- over gRPC ---------------------------------------------------------------------------------
def test_unauthenticated_and_permission_denied(stack: Stack) -> None:
    st = stub(stack)
    with pytest.raises(grpc.RpcError) as exc:
        st.ListSessions(admin_pb2.ListSessionsRequest())
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as exc:
        st.Health(admin_pb2.HealthRequest(), metadata=auth("not-a-token"))
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "rejected" in (exc.value.details() or "")
    # Read-only may read, may not act; the refused action does not reach QuickFIX, and the
    # audit log records the attempt (ok false, the reason, the token's fingerprint, the peer).
    st.ListSessions(admin_pb2.ListSessionsRequest(), metadata=auth(stack.read_only_token))
    before = len(read_audit(stack.audit_path))
    for call, req in ((st.Logout, admin_pb2.LogoutRequest(name=OMS_NAME)),
                      (st.KillSwitch, admin_pb2.KillSwitchRequest(on=True)),
                      (st.SetGateRule, admin_pb2.SetGateRuleRequest(name="max_order_qty"))):
        with pytest.raises(grpc.RpcError) as exc:
            call(req, metadata=auth(stack.read_only_token))
        assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    for metadata in (auth("guessed-token"), None):
        with pytest.raises(grpc.RpcError) as exc:
            st.KillSwitch(admin_pb2.KillSwitchRequest(on=True), metadata=metadata)
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError):  # a refused read is logged, not audited
        st.Health(admin_pb2.HealthRequest(), metadata=auth("guessed-token"))
    assert stack.logged_on(OMS_NAME) and not stack.gw.gate.kill_switch
    recs = read_audit(stack.audit_path)[before:]
    ro = f"read-only:{fingerprint(stack.read_only_token)}"
    assert [(r["what"], r["who"], r["result"]["ok"]) for r in recs] == [
        ("logout", ro, False), ("kill_switch", ro, False), ("set_gate_rule", ro, False),
        ("kill_switch", f"unknown:{fingerprint('guessed-token')}", False),
        ("kill_switch", "unknown:none", False)]
    assert all(r["args"]["peer"].startswith("ipv4:127.0.0.1:") for r in recs), recs
    assert recs[0]["result"]["message"].startswith("denied (PERMISSION_DENIED): Logout changes")
    assert recs[3]["result"]["message"].startswith("denied (UNAUTHENTICATED): admin token "
                                                   "rejected")
    text = stack.audit_path.read_text()
    assert stack.read_only_token not in text and "guessed-token" not in text


def test_list_and_get_sessions(stack: Stack) -> None:
    st = stub(stack)
    resp = st.ListSessions(admin_pb2.ListSessionsRequest(), metadata=auth(stack.operator_token))
    by_name = {s.name: s for s in resp.sessions}
    assert set(by_name) == {OMS_NAME, TRD_NAME, "FIXGW->KRAKEN-MD"}
    oms = by_name[OMS_NAME]
    assert oms.role == admin_pb2.SESSION_ROLE_OMS_ACCEPTOR and oms.state == "logged_on"
    assert oms.next_sender_seq_num >= 2 and oms.next_target_seq_num >= 2
    assert oms.transport == "fix" and oms.HasField("last_logon_time")
    assert oms.heartbeat_interval_s == 30  # the interval the OMS asked for in its Logon
    trd = by_name[TRD_NAME]
    assert trd.role == admin_pb2.SESSION_ROLE_VENUE_TRADING and trd.heartbeat_interval_s > 0
    assert by_name["FIXGW->KRAKEN-MD"].role == admin_pb2.SESSION_ROLE_VENUE_MD
    one = st.GetSession(admin_pb2.GetSessionRequest(name="KRAKEN-TRD"),
                        metadata=auth(stack.operator_token))
    assert one.name == TRD_NAME
    with pytest.raises(grpc.RpcError) as exc:
        st.GetSession(admin_pb2.GetSessionRequest(name="NOPE"),
                      metadata=auth(stack.operator_token))
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    h = st.Health(admin_pb2.HealthRequest(), metadata=auth(stack.read_only_token))
    assert h.venue_trading_up and h.oms_sessions_up == 1 and h.order_transport == "fix"


def test_set_sender_seq_is_what_the_oms_sees_next(stack: Stack) -> None:
    st = stub(stack)
    cur = st.GetSession(admin_pb2.GetSessionRequest(name=OMS_NAME),
                        metadata=auth(stack.operator_token))
    n = cur.next_sender_seq_num + 40
    res = st.SetSequence(admin_pb2.SetSequenceRequest(name=OMS_NAME, next_sender=n, force=True),
                         metadata=auth(stack.operator_token))
    assert res.ok, res.message
    assert res.message.endswith("(applied live: the session is logged on)"), res.message
    # An OrderStatusRequest for an unknown order: the gateway answers from its record.
    cl = new_id("H")
    stack.oms.send("H", [(11, cl), (55, "BTC/USD"), (54, "1")])
    er = stack.oms.expect(lambda r: r.msg_type == "8" and r.fields.get(11) == cl)
    assert er.fields[34] == str(n)
    rec = read_audit(stack.audit_path)[-1]
    assert rec["what"] == "set_sequence" and rec["args"]["next_sender"] == n
    assert rec["args"]["force"] is True
    assert rec["result"]["ok"] and rec["who"].startswith("operator:")
    # The SEQUENCE_RESET event carries the number set, as session.proto says it does.
    reset = [e.session_status for e in published(stack.gw)
             if e.WhichOneof("payload") == "session_status"
             and e.session_status.type == session_pb2.SESSION_STATUS_TYPE_SEQUENCE_RESET
             and e.source.session == OMS_NAME][-1]
    assert reset.new_seq_no == n and not reset.gap_fill
    assert reset.direction == session_pb2.DIRECTION_OUTBOUND
    assert "admin set_sequence by operator:" in reset.text


def test_set_seq_on_a_logged_on_session_is_refused_without_force(stack: Stack) -> None:
    """A wrong number set live knocks the venue session into a logon/logout loop while the
    command says success: refused unless forced, nothing changed, the refusal audited, and
    no SEQUENCE_RESET event claims a change."""
    st = stub(stack)
    op = auth(stack.operator_token)
    wait_until(lambda: stack.logged_on(TRD_NAME), 20, "venue trading logged on")
    cur = st.GetSession(admin_pb2.GetSessionRequest(name=TRD_NAME), metadata=op)
    reset = session_pb2.SESSION_STATUS_TYPE_SEQUENCE_RESET

    def resets() -> int:
        return sum(1 for e in published(stack.gw) if e.WhichOneof("payload") == "session_status"
                   and e.session_status.type == reset)
    resets_before = resets()
    wrong = cur.next_target_seq_num + 1000
    res = st.SetSequence(admin_pb2.SetSequenceRequest(name=TRD_NAME, next_target=wrong),
                         metadata=op)
    assert not res.ok, res.message
    assert f"{TRD_NAME} is logged on: nothing changed" in res.message and "force" in res.message
    after = st.GetSession(admin_pb2.GetSessionRequest(name=TRD_NAME), metadata=op)
    assert after.next_target_seq_num < wrong and stack.logged_on(TRD_NAME)
    rec = read_audit(stack.audit_path)[-1]
    assert rec["what"] == "set_sequence" and rec["result"]["ok"] is False
    assert resets() == resets_before


def test_logout_with_reason_holds_until_logon(stack: Stack) -> None:
    st = stub(stack)
    stack.drain_admin()
    res = st.Logout(admin_pb2.LogoutRequest(name=OMS_NAME, reason="ops drill"),
                    metadata=auth(stack.operator_token))
    assert res.ok, res.message
    logout = stack.admin_msgs("5")
    assert logout.fields[58] == "ops drill"
    # The OMS client retries every second; the disabled session keeps refusing it.
    time.sleep(2.5)
    assert not stack.oms.c.logged_on.is_set()
    assert st.Logon(admin_pb2.LogonRequest(name=OMS_NAME), metadata=auth(stack.operator_token)).ok
    assert stack.oms.c.logged_on.wait(10)
    whats = [(r["what"], r["args"].get("reason")) for r in read_audit(stack.audit_path)[-2:]]
    assert whats == [("logout", "ops drill"), ("logon", None)]
    events = published(stack.gw)
    texts = [e.session_status.text for e in events if e.WhichOneof("payload") == "session_status"]
    assert any("admin logout by operator:" in t for t in texts)


def test_venue_logout_is_held_against_the_reconnect_supervisor(stack: Stack) -> None:
    st = stub(stack)
    op = auth(stack.operator_token)
    assert st.Logout(admin_pb2.LogoutRequest(name=TRD_NAME, reason="maint"), metadata=op).ok
    wait_until(lambda: not stack.logged_on(TRD_NAME), 10, "venue logout")
    time.sleep(2.0)  # longer than reconnect_min_s and the supervisor's attempt window pace
    assert not stack.logged_on(TRD_NAME)
    s = st.GetSession(admin_pb2.GetSessionRequest(name=TRD_NAME), metadata=op)
    assert s.held and not s.enabled
    assert st.Logon(admin_pb2.LogonRequest(name=TRD_NAME), metadata=op).ok
    wait_until(lambda: stack.logged_on(TRD_NAME), 20, "venue logon after admin logon")


def test_disconnect_and_reset_of_a_held_venue_session_say_what_happened(stack: Stack) -> None:
    """A venue session an operator logged out: `disconnect` drops nothing and it does not
    reconnect; `reset-seq` did not log it out (it was not logged on). Its numbers are then
    set back (no --force needed: not logged on) so the venue takes its next Logon."""
    st = stub(stack)
    op = auth(stack.operator_token)
    wait_until(lambda: stack.logged_on(MD_NAME), 20, "market data logged on")
    try:
        assert st.Logout(admin_pb2.LogoutRequest(name=MD_NAME, reason="drill"), metadata=op).ok
        wait_until(lambda: not stack.logged_on(MD_NAME), 10, "market data logged out")
        res = st.Disconnect(admin_pb2.DisconnectRequest(name=MD_NAME), metadata=op)
        assert res.ok and res.message == (
            f"{MD_NAME}: not connected: nothing to drop; it stays down: held by an operator's "
            f"logout until `fixgwctl logon {MD_NAME}`"), res.message
        cur = st.GetSession(admin_pb2.GetSessionRequest(name=MD_NAME), metadata=op)
        res = st.ResetSequence(admin_pb2.ResetSequenceRequest(name=MD_NAME), metadata=op)
        assert res.ok and res.message == f"{MD_NAME}: sequence numbers reset to 1/1", res.message
        back = st.SetSequence(admin_pb2.SetSequenceRequest(
            name=MD_NAME, next_sender=cur.next_sender_seq_num,
            next_target=cur.next_target_seq_num), metadata=op)
        assert back.ok and "applied live" not in back.message, back.message
    finally:
        st.Logon(admin_pb2.LogonRequest(name=MD_NAME), metadata=op)
    wait_until(lambda: stack.logged_on(MD_NAME), 20, "market data logged on again")


def test_kill_switch_blocks_and_cancels_then_off(stack: Stack) -> None:
    st = stub(stack)
    op = auth(stack.operator_token)
    resting = stack.resting(("0.01", "1000.0"), ("0.02", "1001.0"))
    res = st.KillSwitch(admin_pb2.KillSwitchRequest(on=True), metadata=op)
    assert res.ok and "cancel sent for 2 open order(s)" in res.message, res.message
    for cl in resting:
        def canceled(r: Received, cl: str = cl) -> bool:
            return r.msg_type == "8" and r.fields.get(150) == "4" and r.fields.get(41) == cl
        assert stack.oms.expect(canceled).fields[39] == "4"
    blocked = stack.oms.buy("0.01", "1002.0")
    rej = stack.oms.report(blocked, "8")
    assert rej.fields[58].startswith("blocked by kill_switch")
    rules = st.GateRules(admin_pb2.GateRulesRequest(), metadata=op)
    assert rules.kill_switch
    assert st.KillSwitch(admin_pb2.KillSwitchRequest(on=False), metadata=op).ok
    ok = stack.oms.buy("0.01", "1003.0")
    stack.oms.report(ok, "0")
    kills = [r for r in read_audit(stack.audit_path) if r["what"] == "kill_switch"]
    assert [r["args"]["on"] for r in kills[-2:]] == [True, False]
    events = published(stack.gw)
    admin_gate = [e for e in events if e.WhichOneof("payload") == "gate_decision"
                  and e.source.session == "admin"]
    assert [e.gate_decision.rule for e in admin_gate][-2:] == ["kill_switch", "kill_switch"]


def test_gate_rule_toggle_and_unknown(stack: Stack) -> None:
    st = stub(stack)
    op = auth(stack.operator_token)
    names = {r.name: r for r in st.GateRules(admin_pb2.GateRulesRequest(), metadata=op).rules}
    assert {"kill_switch", "max_order_qty"} <= set(names)
    assert names["max_order_qty"].params["*"] == "100"
    assert st.SetGateRule(admin_pb2.SetGateRuleRequest(name="max_order_qty", enabled=False),
                          metadata=op).ok
    big = stack.oms.buy("150", "1004.0")  # over the limit, but the rule is off
    stack.oms.report(big, "0")
    assert st.SetGateRule(admin_pb2.SetGateRuleRequest(name="max_order_qty", enabled=True),
                          metadata=op).ok
    big2 = stack.oms.buy("150", "1005.0")
    assert "max_order_qty" in stack.oms.report(big2, "8").fields[58]
    bad = st.SetGateRule(admin_pb2.SetGateRuleRequest(name="nope", enabled=False), metadata=op)
    assert not bad.ok and "unknown" in bad.message
    rec = read_audit(stack.audit_path)[-1]
    assert rec["what"] == "set_gate_rule" and rec["result"]["ok"] is False


def test_audit_file_is_append_only_json_lines(stack: Stack) -> None:
    recs = read_audit(stack.audit_path)
    assert recs and all({"when", "who", "what", "args", "result"} <= set(r) for r in recs)
    assert all(r["when"].endswith("Z") for r in recs)
    assert stat.S_IMODE(os.stat(stack.audit_path).st_mode) == 0o600
    fp = fingerprint(stack.operator_token)
    assert all(r["who"] == f"operator:{fp}" for r in recs
               if not r["result"]["message"].startswith("denied ("))  # refused: who tried


def test_force_transport_without_fallback_is_refused(stack: Stack) -> None:
    st = stub(stack)
    res = st.ForceTransport(admin_pb2.ForceTransportRequest(transport="rest"),
                            metadata=auth(stack.operator_token))
    assert not res.ok and "REST fallback is not configured" in res.message
    res = st.ForceTransport(admin_pb2.ForceTransportRequest(transport="ws"),
                            metadata=auth(stack.operator_token))
    assert not res.ok and "REST fallback is not configured" in res.message
    with pytest.raises(grpc.RpcError) as exc:
        st.ForceTransport(admin_pb2.ForceTransportRequest(transport="fix"),
                          metadata=auth(stack.read_only_token))
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    last = read_audit(stack.audit_path)[-1]
    assert last["what"] == "force_transport" and last["result"]["ok"] is False


@contextmanager
def venue_frozen(s: Stack) -> Iterator[None]:
    """The simulator stopped (SIGSTOP), as the audit froze the venue: the gateway's FIX
    session stays up and its cancels go out, but none is answered until it resumes."""
    os.kill(s.sim.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(s.sim.proc.pid, signal.SIGCONT)


def cancel_traffic(s: Stack, cls: list[str]) -> tuple[list[str], list[str]]:
    """The OMS ClOrdIDs among `cls` of each cancel the gateway asked for (CANCEL_REQUESTED
    events, one per cancel it sent) and of each cancel refused (cancel_reject events)."""
    events = published(s.gw)
    asked = [e.order.orig_cl_ord_id for e in events if e.WhichOneof("payload") == "order"
             and e.order.type == orders_pb2.ORDER_EVENT_TYPE_CANCEL_REQUESTED
             and e.order.orig_cl_ord_id in cls]
    refused = [e.cancel_reject.orig_cl_ord_id for e in events
               if e.WhichOneof("payload") == "cancel_reject"
               and e.cancel_reject.orig_cl_ord_id in cls]
    return sorted(asked), sorted(refused)


def canceled_in_time(s: Stack, cls: list[str]) -> None:
    """Each of `cls` reported Canceled to its OMS; then a second more, for any cancel reject
    (the venue's answer to a second cancel) to come too."""
    for cl in cls:
        def canceled(r: Received, cl: str = cl) -> bool:
            return r.msg_type == "8" and r.fields.get(150) == "4" and r.fields.get(41) == cl
        s.oms.expect(canceled, timeout=20)
    time.sleep(1.0)


def test_kill_switch_on_again_sends_no_second_cancel(stack: Stack) -> None:
    """The audit's case: the venue frozen, the kill switch turned on twice. The second finds
    a cancel on its way for each order (their status still New: the venue has not answered)
    and sends none, and says so; `orders` shows the pending cancel. Once the venue resumes,
    one cancel per order reached it: no cancel rejects for second ones."""
    st = stub(stack)
    op = auth(stack.operator_token)
    resting = stack.resting(("0.01", "1030.0"), ("0.02", "1031.0"))
    n = len(stack.gw.store.open_orders())  # earlier tests may leave some open
    try:
        with venue_frozen(stack):
            first = st.KillSwitch(admin_pb2.KillSwitchRequest(on=True), metadata=op)
            assert first.ok and not first.partial, first.message
            assert f"kill switch on: new orders blocked; cancel sent for {n} open" in (
                first.message)
            assert "already" not in first.message
            second = st.KillSwitch(admin_pb2.KillSwitchRequest(on=True), metadata=op)
            assert second.ok and not second.partial, second.message
            assert second.message.startswith("kill switch already on: new orders blocked; "
                                             "cancel sent for 0 open order(s)"), second.message
            assert f"{n} already had a cancel on its way, not sent again" in second.message
            assert all(cl in second.message for cl in resting)
            listed = st.ListOrders(admin_pb2.ListOrdersRequest(), metadata=op).orders
            pending = {o.cl_ord_id: (o.status, o.cancel_pending_cl_ord_id) for o in listed}
            assert all(pending[cl][0] == "New" and pending[cl][1].startswith("KILL-")
                       for cl in resting), pending
        canceled_in_time(stack, resting)
        assert cancel_traffic(stack, resting) == (sorted(resting), [])
        assert not [o for o in stack.gw.store.open_orders() if o.oms_cl_ord_id in resting]
    finally:
        st.KillSwitch(admin_pb2.KillSwitchRequest(on=False), metadata=op)


@contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """`path` made impossible to replace or remove (a non-empty directory in its place), as a
    full or read-only data directory would refuse it; even root cannot rename over it."""
    path.mkdir()
    (path / "blocker").write_text("")
    try:
        yield
    finally:
        (path / "blocker").unlink()
        path.rmdir()


def test_kill_switch_not_persisted_still_cancels_and_says_so(stack: Stack) -> None:
    """A data directory that refuses kill-switch.json must not stop the halt: the open orders
    are canceled, new ones blocked, and the answer is partial and says it is not kept."""
    st = stub(stack)
    op = auth(stack.operator_token)
    resting = stack.resting(("0.01", "1010.0"), ("0.02", "1011.0"))
    with unwritable(stack.gw.data_dir / "kill-switch.json"):
        res = st.KillSwitch(admin_pb2.KillSwitchRequest(on=True), metadata=op)
        assert res.ok and res.partial, res.message
        assert "cancel sent for" in res.message  # (orders of earlier tests rest too)
        assert "NOT persisted" in res.message and "kill-switch.json" in res.message
        assert "a restart would start with the kill switch OFF" in res.message
        for cl in resting:
            def canceled(r: Received, cl: str = cl) -> bool:
                return r.msg_type == "8" and r.fields.get(150) == "4" and r.fields.get(41) == cl
            stack.oms.expect(canceled)
        rej = stack.oms.report(stack.oms.buy("0.01", "1012.0"), "8")
        assert rej.fields[58].startswith("blocked by kill_switch")
        off = st.KillSwitch(admin_pb2.KillSwitchRequest(on=False), metadata=op)
        assert off.ok and off.partial and "start with the kill switch ON" in off.message
        assert not stack.gw.gate.kill_switch
    rec = [r for r in read_audit(stack.audit_path) if r["what"] == "kill_switch"][-2]
    assert rec["result"]["ok"] and "NOT persisted" in rec["result"]["message"]


def test_logout_not_persisted_still_logs_out_and_says_so(stack: Stack) -> None:
    """A session hold the data directory refuses: the Logout still goes out and the session
    is shown held, as it is while this gateway runs; the answer says a restart would not
    keep it."""
    st = stub(stack)
    op = auth(stack.operator_token)
    stack.drain_admin()
    with unwritable(stack.gw.data_dir / "session-holds.json"):
        res = st.Logout(admin_pb2.LogoutRequest(name=OMS_NAME, reason="disk drill"),
                        metadata=op)
        assert res.ok and res.partial, res.message
        assert "Logout sent" in res.message and "while this gateway runs" in res.message
        assert "NOT persisted" in res.message
        assert f"a restart would log {OMS_NAME} on again" in res.message
        assert stack.admin_msgs("5").fields[58] == "disk drill"
        time.sleep(1.5)  # the OMS client retries every second; the session stays disabled
        assert not stack.oms.c.logged_on.is_set()
        back = st.Logon(admin_pb2.LogonRequest(name=OMS_NAME), metadata=op)
        assert back.ok and back.partial and "keep it logged out" in back.message
    assert stack.oms.c.logged_on.wait(10)


def test_kill_switch_cancels_not_sent_go_out_when_the_venue_is_back(stack: Stack) -> None:
    """Kill switch on while the venue trading session is down (no fallback): the cancels
    cannot be sent, the answer is partial and names them, and they go out when the venue
    logs on again, while the switch stays on."""
    st = stub(stack)
    op = auth(stack.operator_token)
    resting = stack.resting(("0.01", "1020.0"), ("0.02", "1021.0"))
    assert st.Logout(admin_pb2.LogoutRequest(name=TRD_NAME, reason="drill"), metadata=op).ok
    wait_until(lambda: not stack.gw.router.venue.is_up(), 10, "venue trading down")
    try:
        res = st.KillSwitch(admin_pb2.KillSwitchRequest(on=True), metadata=op)
        assert res.ok and res.partial, res.message
        assert "NOT sent" in res.message and all(cl in res.message for cl in resting)
        assert "sent when the venue trading session logs on again" in res.message
        with pytest.raises(TimeoutError):
            stack.oms.expect(lambda r: r.msg_type == "8" and r.fields.get(150) == "4",
                             timeout=1.0)
        assert st.Logon(admin_pb2.LogonRequest(name=TRD_NAME), metadata=op).ok
        for cl in resting:
            def canceled(r: Received, cl: str = cl) -> bool:
                return r.msg_type == "8" and r.fields.get(150) == "4" and r.fields.get(41) == cl
            stack.oms.expect(canceled, timeout=30)
        assert not [o for o in stack.gw.store.open_orders()
                    if o.oms_cl_ord_id in resting]
    finally:
        st.KillSwitch(admin_pb2.KillSwitchRequest(on=False), metadata=op)
        st.Logon(admin_pb2.LogonRequest(name=TRD_NAME), metadata=op)
        wait_until(lambda: stack.gw.router.venue.is_up(), 20, "venue up again")


def test_an_audit_log_that_cannot_be_written_does_not_hide_the_change(stack: Stack) -> None:
    """An audit log on a full disk (/dev/full: every write fails with ENOSPC): the action ran,
    so the answer is its real result, saying the record is missing and partial (fixgwctl
    exits 6), not a gRPC error that fixgwctl would show as UNKNOWN, nor a plain success."""
    server = AdminServer(stack.gw, operator_token=stack.operator_token,
                         audit_path=Path("/dev/full"), port=0)
    port = server.start()
    try:
        st = admin_pb2_grpc.AdminServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        res = st.SetGateRule(admin_pb2.SetGateRuleRequest(name="max_order_qty", enabled=True),
                             metadata=auth(stack.operator_token))
        assert res.ok and "audit log NOT written" in res.message, res.message
        # Done, but not all of it: partial, so fixgwctl exits 6, not 0.
        assert res.partial
    finally:
        server.stop()


def test_denied_calls_are_logged_with_peer_method_and_fingerprint(
        stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    st = stub(stack)
    with caplog.at_level(logging.WARNING, "fixgw.admin"):
        with pytest.raises(grpc.RpcError):
            st.Health(admin_pb2.HealthRequest(), metadata=auth("guessed-token"))
        with pytest.raises(grpc.RpcError):
            st.KillSwitch(admin_pb2.KillSwitchRequest(on=True),
                          metadata=auth(stack.read_only_token))
        with pytest.raises(grpc.RpcError):
            st.ListSessions(admin_pb2.ListSessionsRequest())
    denied = [r.getMessage() for r in caplog.records if "denied" in r.getMessage()]
    assert len(denied) == 3, denied
    assert ("UNAUTHENTICATED" in denied[0] and "Health from ipv4:127.0.0.1:" in denied[0]
            and f"fingerprint {fingerprint('guessed-token')}" in denied[0])
    assert ("PERMISSION_DENIED" in denied[1] and "KillSwitch" in denied[1]
            and f"fingerprint {fingerprint(stack.read_only_token)}" in denied[1])
    assert "ListSessions" in denied[2] and "token none" in denied[2]
    assert not any(t in caplog.text for t in ("guessed-token", stack.read_only_token))


def test_an_empty_generated_token_file_is_generated_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A crash between creating admin.token and writing it (older versions) left it empty,
    and every later start failed on it: it is now made again, said in the log."""
    path = tmp_path / "data" / "admin.token"
    path.parent.mkdir()
    path.write_text("")
    with caplog.at_level(logging.WARNING, "fixgw.admin"):
        token = resolve_tokens(tmp_path / "data").operator
    assert len(token) >= 40 and read_token(file=path) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "is empty (a crash while it was written): generating a new token" in caplog.text
    assert [p.name for p in path.parent.iterdir()] == ["admin.token"]  # no temporary left
