"""TradingSessionStatus for the OMS (35=g -> 35=h) against a real gateway and simulator: the
answer follows the kill switch and the venue trading session, a subscription gets each change
unsolicited, and one that ended gets nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway._proto.fixgw.v1 import admin_pb2
from gateway.fix.client import Received
from tests.admin.test_admin import TRD_NAME, Stack, admin_stack, auth, stub
from tests.conftest import new_id, wait_until


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with admin_stack(tmp_path_factory.mktemp("trading-status")) as s:
        wait_until(lambda: s.gw.router.venue.is_up(), 20, "venue up")
        yield s


def ask(s: Stack, kind: str, *extra: tuple[int, str]) -> str:
    req = new_id("TS")
    s.oms.send("g", [(335, req), (263, kind), *extra])
    return req


def status(s: Stack, req: str, unsolicited: bool, timeout: float = 5.0) -> Received:
    def match(r: Received) -> bool:
        return (r.msg_type == "h" and r.fields.get(335) == req
                and (r.fields.get(325) == "Y") == unsolicited)
    return s.oms.expect(match, timeout)


def test_subscription_follows_the_kill_switch_and_the_venue(stack: Stack) -> None:
    op = auth(stack.operator_token)
    st = stub(stack)
    req = ask(stack, "1")
    first = status(stack, req, unsolicited=False)
    assert (first.fields[340], first.fields[336]) == ("2", "CONTINUOUS")
    assert "over FIX" in first.fields[58]

    assert st.KillSwitch(admin_pb2.KillSwitchRequest(on=True), metadata=op).ok
    halted = status(stack, req, unsolicited=True)
    assert halted.fields[340] == "1" and "kill switch" in halted.fields[58]
    assert st.KillSwitch(admin_pb2.KillSwitchRequest(on=False), metadata=op).ok
    assert status(stack, req, unsolicited=True).fields[340] == "2"

    assert st.Logout(admin_pb2.LogoutRequest(name=TRD_NAME), metadata=op).ok
    closed = status(stack, req, unsolicited=True)
    assert closed.fields[340] == "3" and "not logged on" in closed.fields[58]
    assert "new orders are rejected" in closed.fields[58]
    assert st.Logon(admin_pb2.LogonRequest(name=TRD_NAME), metadata=op).ok
    assert status(stack, req, unsolicited=True, timeout=20).fields[340] == "2"

    ask(stack, "2")  # unsubscribe: no answer, and no more updates
    assert st.KillSwitch(admin_pb2.KillSwitchRequest(on=True), metadata=op).ok
    try:
        with pytest.raises(TimeoutError):
            status(stack, req, unsolicited=True, timeout=1.5)
    finally:
        assert st.KillSwitch(admin_pb2.KillSwitchRequest(on=False), metadata=op).ok


def test_a_snapshot_echoes_the_session_asked_about_and_leaves_a_subscription(
        stack: Stack) -> None:
    op = auth(stack.operator_token)
    sub = ask(stack, "1")
    status(stack, sub, unsolicited=False)
    req = ask(stack, "0", (336, "DAY"))
    h = status(stack, req, unsolicited=False)
    assert (h.fields[336], h.fields[340]) == ("DAY", "2")
    assert stub(stack).KillSwitch(admin_pb2.KillSwitchRequest(on=True), metadata=op).ok
    try:
        assert status(stack, sub, unsolicited=True).fields[340] == "1"
    finally:
        assert stub(stack).KillSwitch(admin_pb2.KillSwitchRequest(on=False), metadata=op).ok
    ask(stack, "2")
