"""AdminService over gRPC for `fixgwctl`: session control, orders (look up, cancel), the kill
switch and gate rules.

Its own listener (127.0.0.1:50052 by default), separate from the event service, with every call
authenticated by `AuthInterceptor` (see `gateway.admin.auth`). Mutating calls are audited
(`gateway.admin.audit`) and published as events: session actions as ``session_status`` events of
the session acted on, kill switch and gate-rule changes as ``gate_decision`` events of rule
``kill_switch`` / the rule changed, from source ``gateway/admin``; the text names the operator.

Threading: the RPCs run on the server's worker threads and call QuickFIX Session methods, which
take the session's own mutex (the binding releases the GIL around them), the same way the
reconnect supervisor does. The kill switch's and an operator's cancels go the way of one order of
an OMS mass cancel (`Router.cancel_unasked`: FIX, the fallback's REST/WS, or at once for a held
order; a per-order venue refusal is not forwarded to the OMS, the venue's confirmations are),
each announced by a ``cancel_requested`` order event. Order lookups read copies of the order
store's orders (`OrderStore.select`), never the live objects the FIX threads change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import grpc
import quickfix as fix
from google.protobuf import timestamp_pb2

from gateway._proto.fixgw.v1 import admin_pb2, admin_pb2_grpc
from gateway.admin.audit import AuditLog
from gateway.admin.auth import AuthInterceptor, TokenTable, current_principal
from gateway.events import builders
from gateway.fix.messages import side_name
from gateway.listen import grpc_bind
from gateway.orders import state as order_state
from gateway.orders.model import Order
from gateway.version import version_line

if TYPE_CHECKING:  # the admin layer drives a Gateway; it does not import the server layer
    from gateway.routing.router import CancelInFlight
    from gateway.server.gateway import Gateway

log = logging.getLogger("fixgw.admin")

ROLE_OMS = admin_pb2.SESSION_ROLE_OMS_ACCEPTOR
ROLE_TRD = admin_pb2.SESSION_ROLE_VENUE_TRADING
ROLE_MD = admin_pb2.SESSION_ROLE_VENUE_MD
ROLE_NAMES = {ROLE_OMS: "oms", ROLE_TRD: "venue-trading", ROLE_MD: "venue-md"}

SessionEventName = Literal["logon", "logout", "disconnect", "sequence_reset", "connecting"]


@dataclass(frozen=True)
class SessionRef:
    name: str
    session_id: fix.SessionID
    role: int
    tls: bool


@dataclass(frozen=True)
class Outcome:
    """What a mutating action did. `partial`: carried out, but not all of it (a cancel not
    sent, a change not written to the data directory); the message says what is missing, and
    fixgwctl exits with its own code so a script does not read it as plain success."""

    ok: bool
    message: str
    partial: bool = False

    @staticmethod
    def of(result: tuple[bool, str] | Outcome) -> Outcome:
        return result if isinstance(result, Outcome) else Outcome(*result)


def _ts(epoch: float | None) -> timestamp_pb2.Timestamp | None:
    if epoch is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(epoch * 1e9))
    return ts


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, gateway: Gateway, audit: AuditLog) -> None:
        self.gw = gateway
        self.audit = audit
        self.refs = self._session_refs()
        self._version = version_line()
        self._started = time.monotonic()  # the servicer is made as the gateway starts

    # ---- sessions ----------------------------------------------------------------------------
    def _session_refs(self) -> list[SessionRef]:
        c = self.gw.config
        refs = [SessionRef(f"{c.oms.sender_comp_id}->{s.comp_id}",
                           fix.SessionID("FIX.4.4", c.oms.sender_comp_id, s.comp_id), ROLE_OMS,
                           c.oms.tls is not None) for s in c.oms.sessions]
        v = c.venue
        for target, role, tls in ((v.trading.target_comp_id, ROLE_TRD, v.trading.tls),
                                  (v.market_data.target_comp_id, ROLE_MD, v.market_data.tls)):
            refs.append(SessionRef(f"{v.sender_comp_id}->{target}",
                                   fix.SessionID("FIX.4.4", v.sender_comp_id, target), role,
                                   tls is not None))
        return refs

    def find(self, name: str) -> SessionRef | str:
        """A session by its name (SENDER->TARGET) or, when unambiguous, its counterparty's
        CompID; otherwise the message to give the operator."""
        for r in self.refs:
            if r.name == name:
                return r
        by_target = [r for r in self.refs if r.name.split("->", 1)[1] == name]
        if len(by_target) == 1:
            return by_target[0]
        known = ", ".join(r.name for r in self.refs)
        return f"no session named {name!r}; sessions: {known} (see `fixgwctl sessions`)"

    def _held(self, ref: SessionRef) -> bool:
        sup = self.gw._supervisor
        return sup is not None and ref.session_id.toString() in sup._paused

    def describe(self, ref: SessionRef) -> admin_pb2.Session:
        st = self.gw.board.sessions.get(ref.name)
        session = fix.Session.lookupSession(ref.session_id)
        out = admin_pb2.Session(name=ref.name, role=ref.role)  # type: ignore[arg-type]
        out.state = st.state if st is not None else "not created"
        if session is not None:
            out.next_sender_seq_num = int(session.getExpectedSenderNum())
            out.next_target_seq_num = int(session.getExpectedTargetNum())
            out.enabled = bool(session.isEnabled())
        if st is not None:
            for field, value in (("last_received_time", st.last_received),
                                 ("last_sent_time", st.last_sent),
                                 ("last_logon_time", st.last_logon),
                                 ("last_logout_time", st.last_logout)):
                ts = _ts(value)
                if ts is not None:
                    getattr(out, field).CopyFrom(ts)
        if ref.role != ROLE_OMS:
            out.heartbeat_interval_s = int(self.gw.config.venue.heartbeat_interval)
        elif st is not None and st.extra.get("heartbeat_interval_s", "").isdigit():
            out.heartbeat_interval_s = int(st.extra["heartbeat_interval_s"])
        transport = "fix+tls" if ref.tls else "fix"
        store = self.gw.router.store
        if ref.role == ROLE_TRD:
            if self.gw.router._rest_active():
                transport = self._order_transport()  # ws or rest
            out.open_orders = len(store.open_orders())
        elif ref.role == ROLE_OMS:
            out.open_orders = len(store.open_orders(ref.name))
        out.transport = transport
        out.held = self._held(ref)
        return out

    def ListSessions(self, request: admin_pb2.ListSessionsRequest,
                     context: grpc.ServicerContext) -> admin_pb2.ListSessionsResponse:
        return admin_pb2.ListSessionsResponse(sessions=[self.describe(r) for r in self.refs])

    def GetSession(self, request: admin_pb2.GetSessionRequest,
                   context: grpc.ServicerContext) -> admin_pb2.Session:
        ref = self.find(request.name)
        if isinstance(ref, str):
            context.abort(grpc.StatusCode.NOT_FOUND, ref)
        assert isinstance(ref, SessionRef)
        return self.describe(ref)

    # ---- mutating: the audited wrapper -------------------------------------------------------
    def _act(self, what: str, args: dict[str, Any],
             action: Callable[[], tuple[bool, str] | Outcome]) -> admin_pb2.ActionResult:
        who = str(current_principal())
        try:
            out = Outcome.of(action())
        except Exception as exc:  # an action that blew up is audited and answered, not raised
            log.exception("admin %s %s failed", what, args)
            out = Outcome(False, f"{what} failed inside the gateway: {exc}")
        out = self._audited(who, what, args, out)
        log.warning("admin %s %s by %s: %s (%s)", what, args, who,
                    ("done in part" if out.partial else "done") if out.ok else "refused",
                    out.message)
        return admin_pb2.ActionResult(ok=out.ok, message=out.message,
                                      partial=out.ok and out.partial)

    def _audited(self, who: str, what: str, args: dict[str, Any], out: Outcome) -> Outcome:
        """Write the audit record of an action that has run. A record that cannot be written
        (disk full) must not turn the answer into an error: the change happened, and an
        operator told otherwise would repeat it. It is logged at ERROR with the whole record
        instead, and the answer says so and is partial (fixgwctl exits 6, as for a change not
        written to the data directory): a script must not read it as plain success."""
        try:
            self.audit.record(who=who, what=what, args=args, ok=out.ok, message=out.message)
        except Exception as exc:
            log.error("admin audit record NOT written to %s (%s): %s %s by %s: ok=%s (%s)",
                      self.audit.path, exc, what, args, who, out.ok, out.message)
            return Outcome(out.ok, f"{out.message} (audit log NOT written: {exc}; the "
                           "gateway log has the record)", partial=True)
        return out

    def _session_action(self, what: str, args: dict[str, Any], event: SessionEventName,
                        do: Callable[[SessionRef, fix.Session], str | Outcome],
                        seq_reset: tuple[int, Literal["inbound", "outbound"]] | None = None,
                        ) -> admin_pb2.ActionResult:
        """Run `do` on the named session, audited, and publish its session event. `seq_reset`
        is a sequence change's (NewSeqNo, direction): session.proto promises `new_seq_no` on
        every SEQUENCE_RESET, and a consumer should not have to parse the text for it."""
        def action() -> tuple[bool, str] | Outcome:
            ref = self.find(str(args["name"]))
            if isinstance(ref, str):
                return False, ref
            session = fix.Session.lookupSession(ref.session_id)
            if session is None:
                return False, f"session {ref.name} is not running in this gateway"
            done = do(ref, session)
            out = done if isinstance(done, Outcome) else Outcome(True, done)
            if not out.ok:  # refused: nothing changed, so no session event says it did
                return out
            message = out.message
            new_seq_no, direction = seq_reset or (
                0, "outbound" if event == "logout" else None)
            self._publish(builders.session_event(
                event, source=builders.EventSource.fix(ref.name), direction=direction,
                new_seq_no=new_seq_no, gap_fill=False,
                text=f"admin {what} by {current_principal()}: {message}",
                next_sender_seq_num=int(session.getExpectedSenderNum()),
                next_target_seq_num=int(session.getExpectedTargetNum())))
            return out
        return self._act(what, args, action)

    def _publish(self, event: Any) -> None:
        if self.gw.events is not None:
            try:
                self.gw.events.publish(event)
            except Exception:
                log.exception("admin event not published")

    def _hold(self, ref: SessionRef, held: bool, reason: str = "") -> str | None:
        """Hold or release the session; None when that is on disk, else the operator's note."""
        return self.gw.hold_session(ref.session_id, held, str(current_principal()), reason)

    @staticmethod
    def _with_note(message: str, not_persisted: str | None) -> Outcome:
        """Done; in part when the data directory refused to keep it (`not_persisted`)."""
        if not_persisted is None:
            return Outcome(True, message)
        return Outcome(True, f"{message}; {not_persisted}", partial=True)

    def Logon(self, request: admin_pb2.LogonRequest,
              context: grpc.ServicerContext) -> admin_pb2.ActionResult:
        def do(ref: SessionRef, s: fix.Session) -> Outcome:
            not_persisted = self._hold(ref, False)
            was = bool(s.isLoggedOn())
            s.logon()
            if was:
                message = f"{ref.name} is already logged on"
            elif ref.role == ROLE_OMS:
                message = f"{ref.name} enabled: the acceptor takes the OMS's next Logon"
            else:
                message = f"{ref.name} enabled: connecting and logging on"
            return self._with_note(message, not_persisted)
        return self._session_action("logon", {"name": request.name}, "connecting", do)

    def Logout(self, request: admin_pb2.LogoutRequest,
               context: grpc.ServicerContext) -> admin_pb2.ActionResult:
        reason = request.reason or "logout by gateway operator"

        def do(ref: SessionRef, s: fix.Session) -> Outcome:
            # Held first, so a venue reconnect cannot undo the Logout; the Logout goes out
            # even when the hold cannot be written (the answer says so).
            not_persisted = self._hold(ref, True, reason)
            was = bool(s.isLoggedOn())
            s.logout(reason)
            state = "Logout sent" if was else "was not logged on"
            until = ("across restarts too" if not_persisted is None
                     else "while this gateway runs")
            return self._with_note(
                f"{ref.name}: {state}; session disabled until `fixgwctl logon {ref.name}`, "
                f"{until}" + (" (reconnects held)" if ref.role != ROLE_OMS else ""),
                not_persisted)
        return self._session_action("logout", {"name": request.name, "reason": reason},
                                    "logout", do)

    def Disconnect(self, request: admin_pb2.DisconnectRequest,
                   context: grpc.ServicerContext) -> admin_pb2.ActionResult:
        def do(ref: SessionRef, s: fix.Session) -> str:
            connected = _connected(s)
            s.disconnect()
            return disconnect_reply(ref.name, ref.role != ROLE_OMS, connected,
                                    self._held(ref) or not s.isEnabled())
        return self._session_action("disconnect", {"name": request.name}, "disconnect", do)

    def ResetSequence(self, request: admin_pb2.ResetSequenceRequest,
                      context: grpc.ServicerContext) -> admin_pb2.ActionResult:
        def do(ref: SessionRef, s: fix.Session) -> str:
            was_logged_on = bool(s.isLoggedOn())
            s.reset()
            return reset_reply(ref.name, was_logged_on)
        return self._session_action("reset_sequence", {"name": request.name},
                                    "sequence_reset", do, seq_reset=(1, "outbound"))

    def SetSequence(self, request: admin_pb2.SetSequenceRequest,
                    context: grpc.ServicerContext) -> admin_pb2.ActionResult:
        args: dict[str, Any] = {"name": request.name, "next_sender": request.next_sender,
                                "next_target": request.next_target}
        if request.force:
            args["force"] = True
        if not request.next_sender and not request.next_target:
            return self._act("set_sequence", args, lambda: (
                False, "nothing to set: give a next sender and/or next target MsgSeqNum (> 0)"))

        def do(ref: SessionRef, s: fix.Session) -> str | Outcome:
            # Live, a wrong number is a gap or a too-low MsgSeqNum for one side, and the
            # session falls into a logon/logout loop while the command said success: only
            # when the operator says so (force) after being told it is logged on.
            live = bool(s.isLoggedOn())
            if live and not request.force:
                return Outcome(False, f"{ref.name} is logged on: nothing changed. Setting a "
                               "sequence number live knocks the session into a logon/logout "
                               "loop if it is wrong; log it out first (`fixgwctl logout`), or "
                               "apply it live with force (`fixgwctl set-seq --force`)")
            done = []
            if request.next_sender:
                s.setNextSenderMsgSeqNum(int(request.next_sender))
                done.append(f"next outgoing MsgSeqNum {request.next_sender}")
            if request.next_target:
                s.setNextTargetMsgSeqNum(int(request.next_target))
                done.append(f"next expected incoming MsgSeqNum {request.next_target}")
            return f"{ref.name}: " + ", ".join(done) + (
                " (applied live: the session is logged on)" if live else "")
        # NewSeqNo as a SequenceReset would carry it: ours when we set our next outgoing number
        # (what the counterparty must expect next), else the incoming one we now expect.
        seq_reset: tuple[int, Literal["inbound", "outbound"]] = (
            (int(request.next_sender), "outbound") if request.next_sender
            else (int(request.next_target), "inbound"))
        return self._session_action("set_sequence", args, "sequence_reset", do, seq_reset)

    # ---- gate ----------------------------------------------------------------------------------
    def KillSwitch(self, request: admin_pb2.KillSwitchRequest,
                   context: grpc.ServicerContext) -> admin_pb2.ActionResult:
        on = bool(request.on)

        def action() -> Outcome:
            was_on = self.gw.gate.kill_switch
            not_persisted = self.gw.set_kill_switch(on, str(current_principal()))
            not_sent: list[str] = []
            if not on:
                message = "kill switch off: new orders pass the gate again"
            else:
                # Turned on again while on: it sweeps again (a cancel not sent, an order
                # placed before), skipping each order a cancel is on its way for already.
                swept = self.gw.kill_sweeper.sweep(
                    f"kill switch turned on by {current_principal()}")
                not_sent = swept.not_sent
                message = (f"kill switch {'already on' if was_on else 'on'}: new orders "
                           f"blocked; cancel sent for {swept.sent} open order(s) at the venue")
                if swept.already:
                    message += (f"; {len(swept.already)} already had a cancel on its way, not "
                                f"sent again ({'; '.join(swept.already[:5])})")
                if not_sent:
                    message += (f"; {len(not_sent)} NOT sent ({'; '.join(not_sent[:5])}): "
                                "sent when the venue trading session logs on again, while the "
                                "kill switch stays on; see `fixgwctl orders`")
            self._publish(builders.gate_decision(
                rule="kill_switch", action="block" if on else "allow",
                reasons=[f"{message} (by {current_principal()})"],
                source=builders.EventSource.gateway("admin")))
            done = self._with_note(message, not_persisted)
            return Outcome(True, done.message, partial=done.partial or bool(not_sent))
        return self._act("kill_switch", {"on": on}, action)

    # ---- orders --------------------------------------------------------------------------------
    def _order_match(self, session: str, symbol: str, order_id: str,
                     open_only: bool) -> Callable[[Order], bool] | str:
        """The filter of ListOrders and CancelOrders, or what to tell the operator."""
        key = None
        if session:
            ref = self.find(session)
            if isinstance(ref, str):
                return ref
            if ref.role != ROLE_OMS:
                oms = ", ".join(r.name for r in self.refs if r.role == ROLE_OMS)
                return f"{ref.name} is a venue session; orders belong to OMS sessions: {oms}"
            key = ref.name
        sym = symbol.strip().upper()

        def match(o: Order) -> bool:
            return ((key is None or o.oms_session == key)
                    and (not sym or o.symbol.upper() == sym)
                    and (not open_only or o.is_open)
                    and (not order_id or order_id == o.order_id or order_id in o.oms_history
                         or order_id in o.venue_ids))
        return match

    def ListOrders(self, request: admin_pb2.ListOrdersRequest,
                   context: grpc.ServicerContext) -> admin_pb2.ListOrdersResponse:
        oid = request.id.strip()
        match = self._order_match(request.session, request.symbol, oid,
                                  open_only=not (request.include_closed or oid))
        if isinstance(match, str):
            context.abort(grpc.StatusCode.NOT_FOUND, match)
        assert not isinstance(match, str)
        orders, matched = self.gw.router.store.select(match, request.limit or 100)
        router = self.gw.router
        return admin_pb2.ListOrdersResponse(
            orders=[_order_message(o, router.cancel_in_flight(o)) for o in orders],
            matched=matched)

    def CancelOrders(self, request: admin_pb2.CancelOrdersRequest,
                     context: grpc.ServicerContext) -> admin_pb2.ActionResult:
        oid, session, symbol = request.id.strip(), request.session, request.symbol
        args: dict[str, Any] = {k: v for k, v in (("id", oid), ("session", session),
                                                  ("symbol", symbol), ("all", request.all)) if v}

        def action() -> tuple[bool, str] | Outcome:
            if request.all and (oid or session or symbol):
                return False, "`all` cancels every open order: give it alone, or give filters"
            if not (request.all or oid or session or symbol):
                return False, ("say which orders to cancel: an order id, a session and/or a "
                               "symbol, or all")
            match = self._order_match(session, symbol, oid, open_only=False)
            if isinstance(match, str):
                return False, match
            store = self.gw.router.store
            targets = [o for o in store.open_orders() if match(o)]
            scope = " and ".join(f"{k} {v}" for k, v in args.items() if k != "all")
            if oid and len(targets) != 1:
                if targets:
                    names = ", ".join(f"{o.oms_cl_ord_id} ({o.oms_session})" for o in targets)
                    return False, (f"{oid} names {len(targets)} open orders: {names}; say which "
                                   "with the session")
                closed, _ = store.select(match, 1)
                if closed:
                    o = closed[0]
                    return False, (f"order {o.oms_cl_ord_id} ({o.oms_session}) is "
                                   f"{_status_name(o.status)}: nothing to cancel")
                return False, (f"no order named {oid} (an OMS ClOrdID, a venue ClOrdID or an "
                               "OrderID)" + (f" in {session}" if session else ""))
            if not targets:
                return True, f"no open order with {scope or 'any id'}: nothing to cancel"
            # Named before the cancel: it gives the order the request's ClOrdID, at once for a
            # held order.
            one = targets[0]
            name, path = f"{one.oms_cl_ord_id} ({one.oms_session}, {one.symbol})", one.transport
            sent, failed, already = self.gw.router.cancel_each_unasked(
                targets, "OPS", "admin", f"canceled by operator {current_principal()}")
            message = f"cancel sent for {sent} open order(s) at the venue"
            if already:
                message += (f"; {len(already)} already had a cancel on its way, not sent "
                            f"again ({'; '.join(already[:5])})")
            if oid:
                message = (f"{name}: {already[0].partition(': ')[2]} and not answered yet; "
                           "not sent again" if already else
                           f"{name} not canceled" if not sent else
                           f"{name} canceled: it was held, never sent to the venue"
                           if path == "held" else f"cancel sent for {name} at the venue")
            if failed:
                message += f"; {len(failed)} NOT sent ({'; '.join(failed[:5])})"
            # Some sent, some not: done in part (fixgwctl exits 6), not a success to a script.
            # A cancel on its way already is what the operator asked for: no failure.
            return Outcome(sent > 0 or bool(already), message, partial=bool(failed))
        return self._act("cancel_orders", args, action)

    def GateRules(self, request: admin_pb2.GateRulesRequest,
                  context: grpc.ServicerContext) -> admin_pb2.GateRulesResponse:
        gate = self.gw.gate
        rules = [admin_pb2.GateRule(name=r.name, kind=r.kind, action=r.action, enabled=r.enabled,
                                    stale_policy=r.stale_policy or "", params=dict(r.params),
                                    symbols=list(r.symbols))
                 for r in gate.rules()]
        return admin_pb2.GateRulesResponse(kill_switch=gate.kill_switch, rules=rules)

    def SetGateRule(self, request: admin_pb2.SetGateRuleRequest,
                    context: grpc.ServicerContext) -> admin_pb2.ActionResult:
        def action() -> tuple[bool, str]:
            if request.name == "kill_switch":
                return False, ("the kill switch is not a rule toggle: "
                               "use `fixgwctl kill-switch on|off`")
            try:
                self.gw.gate.set_rule_enabled(request.name, request.enabled)
            except KeyError as exc:
                return False, str(exc.args[0]) + " (see `fixgwctl gate rules`)"
            message = f"gate rule {request.name} {'enabled' if request.enabled else 'disabled'}"
            self._publish(builders.gate_decision(
                rule=request.name, action="allow",
                reasons=[f"{message} (by {current_principal()})"],
                source=builders.EventSource.gateway("admin")))
            return True, message
        return self._act("set_gate_rule", {"name": request.name, "enabled": request.enabled},
                         action)

    # ---- transport ---------------------------------------------------------------------------
    def ForceTransport(self, request: admin_pb2.ForceTransportRequest,
                       context: grpc.ServicerContext) -> admin_pb2.ActionResult:
        want = request.transport.strip().lower()

        def action() -> tuple[bool, str]:
            if want not in ("fix", "ws", "rest", "auto"):
                return False, (f"unknown transport {request.transport!r}: give fix, ws, rest or "
                               "auto")
            fallback = self.gw.fallback
            policy = fallback.policy if fallback is not None else None
            if fallback is None or policy is None:
                return False, ("no transport to switch to: the REST fallback is not configured "
                               "(set [venue.fallback] enabled = true with venue api_key/api_secret"
                               "), so orders always go over FIX")
            if want == "ws" and not fallback.ws_url:
                return False, ("no private WebSocket is configured for orders: set "
                               "[venue.fallback] ws_url (Kraken: wss://ws-auth.kraken.com/v2)")
            before, active_before = self._order_transport(), policy.active
            # ws and rest are both the fallback path; they differ in what it prefers.
            fallback.prefer(want if want in ("ws", "rest") else None)
            policy.set_force("rest" if want in ("ws", "rest") else want)  # type: ignore[arg-type]
            now = self._order_transport()
            if policy.active == active_before:
                # No switch, so no transport_switch event from the policy; the operator's pin
                # (or release) is published all the same: the stream records every change.
                self.gw.publish_transport_switch(
                    before, now, f"admin force_transport {want} by {current_principal()}",
                    automatic=False)
            if want == "auto":
                return True, f"transport follows health again (orders now over {now.upper()})"
            message = f"transport forced to {want.upper()} (orders now over {now.upper()})"
            if now != want:
                message += f"; {want.upper()} is not usable yet, the switch happens when it is"
            return True, message
        return self._act("force_transport", {"transport": want}, action)

    def _order_transport(self) -> str:
        """Where a new order goes now: fix, or the fallback's path (ws or rest)."""
        fallback = self.gw.fallback
        if fallback is None or not self.gw.router._rest_active():
            return "fix"
        return fallback.order_transport()

    # ---- health ----------------------------------------------------------------------------
    def Health(self, request: admin_pb2.HealthRequest,
               context: grpc.ServicerContext) -> admin_pb2.HealthResponse:
        def up(role: int) -> bool:
            return any(bool(s is not None and s.isLoggedOn())
                       for r in self.refs if r.role == role
                       for s in [fix.Session.lookupSession(r.session_id)])

        rest = self.gw.router._rest_active()
        trd, md = up(ROLE_TRD), up(ROLE_MD)
        oms_refs = [r for r in self.refs if r.role == ROLE_OMS]
        oms_down = [r.name for r in oms_refs
                    if (s := fix.Session.lookupSession(r.session_id)) is None
                    or not s.isLoggedOn()]
        kill = self.gw.gate.kill_switch
        problems = []
        schedule = self.gw.config.schedule
        # The venue's daily rollover is scheduled downtime, not a fault to page anyone for.
        rolling_over = not (trd and md) and schedule.in_rollover(datetime.now(UTC))
        if rolling_over:
            problems.append(f"venue daily rollover: sessions down until {schedule.back_at()} "
                            "(scheduled)"
                            + ("; orders go over the REST fallback" if rest else ""))
        else:
            if not trd:
                problems.append("venue trading session down"
                                + (" (orders go over the REST fallback)" if rest else ""))
            if not md:
                problems.append("venue market-data session down")
        if kill:
            problems.append("kill switch on: new orders blocked")
        if oms_down:
            # Named, but not unhealthy: an OMS logs off at its end of day, and a pager must
            # not ring for a client that went home. The gateway itself is fine.
            problems.append(f"OMS not logged on: {', '.join(oms_down)}")
        healthy = (((trd or rest) and md) or rolling_over) and not kill
        return admin_pb2.HealthResponse(
            healthy=healthy, summary="; ".join(problems) or "ok", venue_trading_up=trd,
            venue_md_up=md, kill_switch=kill, oms_sessions_up=len(oms_refs) - len(oms_down),
            oms_sessions=len(oms_refs), order_transport=self._order_transport(),
            open_orders=len(self.gw.router.store.open_orders()), version=self._version,
            uptime_s=int(time.monotonic() - self._started))


def _connected(s: fix.Session) -> bool:
    """Whether the session has a counterparty on the line: logged on, or a Logon on its way
    (QuickFIX clears these when the connection goes)."""
    return bool(s.isLoggedOn() or s.receivedLogon() or s.sentLogon())


def disconnect_reply(name: str, initiator: bool, connected: bool, held: bool) -> str:
    """What `disconnect` did, from the session's state before it: no connection means nothing
    was dropped, and a held session (logged out by an operator) does not come back by itself,
    whatever the role; telling the operator otherwise sends them looking for a reconnect or a
    drop that never happens."""
    done = (f"{name}: connection dropped without a Logout" if connected
            else f"{name}: not connected: nothing to drop")
    if held:
        again = (f"it stays down: held by an operator's logout until `fixgwctl logon {name}`"
                 if initiator else
                 f"the OMS's Logon is refused until `fixgwctl logon {name}` (logged out by an "
                 "operator)")
    elif initiator:
        again = "the initiator reconnects" if connected else "the initiator keeps connecting"
    else:
        again = "the OMS may connect and log on again" if connected else ""
    return f"{done}; {again}" if again else done


def reset_reply(name: str, was_logged_on: bool) -> str:
    """What `reset-seq` did: QuickFIX logs a logged-on session out before the reset, and only
    then is that worth saying."""
    return (f"{name}: sequence numbers reset to 1/1"
            + (" (it was logged on, so it was logged out first)" if was_logged_on else ""))


def _status_name(status: str) -> str:
    return "Sent" if status == order_state.SENT else order_state.NAMES.get(status, status)


def _order_message(o: Order, cancel: CancelInFlight | None = None) -> admin_pb2.Order:
    """The admin view of `o`. `cancel`: the cancel on its way for it, in fields of its own
    (the FIX OrdStatus stays as the venue last reported it, New until the venue answers the
    cancel, so a script comparing `status` is not misled), so ops see why another cancel would
    not be sent."""
    dec = builders.decimal_str  # plain digits: 0.00000000, not the 0E-8 of str()
    out = admin_pb2.Order(
        oms_session=o.oms_session, cl_ord_id=o.oms_cl_ord_id,
        cl_ord_id_history=o.oms_history, venue_cl_ord_id=o.venue_cl_ord_id,
        venue_cl_ord_ids=o.venue_ids, order_id=o.order_id, symbol=o.symbol,
        side=side_name(o.side), ord_type=o.ord_type, time_in_force=o.tif, account=o.account,
        order_qty=dec(o.qty), price=dec(o.price), status=_status_name(o.status),
        open=o.is_open, cum_qty=dec(o.cum_qty), leaves_qty=dec(o.leaves_qty),
        avg_px=dec(o.avg_px), transport=o.transport)
    if cancel is not None:
        out.cancel_pending_cl_ord_id = cancel.cl_ord_id
        out.cancel_pending_age_s = cancel.age_s
    closed = _ts(o.closed_at or None)
    if closed is not None:
        out.closed_time.CopyFrom(closed)
    return out


class AdminTlsError(Exception):
    """The admin listener's TLS files cannot be used; the message names the file and the fix."""


def _read_pem(path: Path, what: str, key: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AdminTlsError(f"admin TLS: cannot read the {what} {path} ({exc.strerror}); fix "
                            f"[admin] {key} in the config") from None
    if b"-----BEGIN " not in data:
        raise AdminTlsError(f"admin TLS: {path} is not a PEM file (no -----BEGIN line); "
                            f"[admin] {key} must name the PEM {what}")
    return data


def admin_server_credentials(cert_file: Path, key_file: Path,
                             client_ca_file: Path | None) -> grpc.ServerCredentials:
    """TLS for the admin listener; with ``client_ca_file`` every client must present a
    certificate signed by it (mutual TLS): a stolen token alone is then not enough."""
    cert = _read_pem(cert_file, "certificate", "tls_cert_file")
    key = _read_pem(key_file, "private key", "tls_key_file")
    ca = (_read_pem(client_ca_file, "client CA certificate", "tls_client_ca_file")
          if client_ca_file is not None else None)
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                       require_client_auth=ca is not None)


class AdminServer:
    """The admin gRPC listener. ``start()`` returns the bound port (``port=0`` picks one).

    With ``tls_cert_file``/``tls_key_file`` it speaks TLS only; with ``tls_client_ca_file`` as
    well, mutual TLS. The bearer token is checked in both cases: TLS protects it on the wire and
    mutual TLS limits who may present one."""

    def __init__(self, gateway: Gateway, *, operator_token: str, audit_path: Path,
                 read_only_token: str | None = None, host: str = "127.0.0.1",
                 port: int = 50052, max_workers: int = 4, tls_cert_file: Path | None = None,
                 tls_key_file: Path | None = None,
                 tls_client_ca_file: Path | None = None) -> None:
        self.host, self.port = host, port
        self._credentials: grpc.ServerCredentials | None = None
        if tls_cert_file is not None or tls_key_file is not None:
            if tls_cert_file is None or tls_key_file is None:
                raise AdminTlsError("admin TLS needs both [admin] tls_cert_file and "
                                    "tls_key_file")
            self._credentials = admin_server_credentials(tls_cert_file, tls_key_file,
                                                         tls_client_ca_file)
        elif tls_client_ca_file is not None:
            raise AdminTlsError("[admin] tls_client_ca_file (mutual TLS) needs tls_cert_file "
                                "and tls_key_file too")
        self.tls = self._credentials is not None
        self.mutual_tls = self.tls and tls_client_ca_file is not None
        self.audit = AuditLog(audit_path)
        self.servicer = AdminServicer(gateway, self.audit)
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="admin"),
            interceptors=[AuthInterceptor(TokenTable(operator_token, read_only_token),
                                          self.audit)])
        admin_pb2_grpc.add_AdminServiceServicer_to_server(self.servicer, self._server)

    def start(self) -> int:
        bound = grpc_bind(self._server, f"{self.host}:{self.port}", self._credentials,
                          "admin service")
        self._server.start()
        self.port = bound
        log.info("gRPC AdminService on %s:%d%s (audit log %s)", self.host, bound,
                 ", mutual TLS" if self.mutual_tls else ", TLS" if self.tls else "",
                 self.audit.path)
        return bound

    def stop(self, grace: float = 1.0) -> None:
        self._server.stop(grace).wait()
        self.audit.close()
