"""The order path between OMS sessions and the venue trading session.

Everything here runs on QuickFIX callback threads: an OMS order is validated, gated, recorded
and sent to the venue inside the OMS session's fromApp; a venue report is mapped and sent to
the owning OMS inside the venue session's fromApp. No queue, no asyncio hop.

Ordering rules that make a kill -9 lose nothing and report nothing twice:
- a new order is journaled before it is sent (a restart knows every venue ClOrdID we used);
- a venue report is journaled, together with the exact ExecutionReport for the OMS, before
  that is sent. A restart then knows every report it meant to forward: the last one (reports
  go one at a time under `report_lock`, so only the last can be in doubt) is looked up in the
  OMS session's QuickFIX store, which records a message as sent before it reaches the socket,
  and sent now if it is not there (`unforwarded_report`, `redeliver`). A venue resend of a
  journaled FIX report is then a duplicate ExecID and dropped; a REST/WS report is never
  derived again, since the journal already has the state it reported. Forwarding first would
  leave a report the venue never resends (REST, WS) to be re-derived after a restart under
  another ExecID, possibly merged with later fills: the OMS would count the fill twice.
- a cancel or replace the gateway answers with its own 35=9 (refused before it could reach
  the venue, its send failed, or the REST/WS fallback refused it) is journaled with that
  answer, CxlRejReason and Text, before the 35=9 is sent (`_refuse`). The ClOrdID is taken
  from then on, so the OMS's resend of the request after a kill in between (PossDupFlag=Y:
  QuickFIX had not advanced the session's sequence) is no new request; it gets that answer
  again rather than being ignored like a request the venue answers (`_refused_before`).
- two answers no OMS resend asks for again are journaled with their exact message and sent
  under `report_lock`, like a report, and taken up by the same restart path
  (`unforwarded_report`, `redeliver`; looked up in the OMS store by ClOrdID, resp. the
  report's OrderID): the 35=9 the fallback's poller sends for a request it settles later
  (`cancel_reject_for`: the OMS request was handled long before), and a mass cancel's 35=r
  (its ClOrdID is taken by the same record, so the OMS's PossDup resend of the request is
  ignored).
- an accepted mass cancel's U also names the orders it covers; its cancels, one per order,
  are each journaled before they are sent. A kill -9 anywhere from the U to the last cancel
  (its 35=r unsent, so none of the cancels; or in the middle of them) leaves covered orders
  open with no cancel under its ClOrdID: the restart finds them (`MassCancel`) and cancels
  them at the first `reconcile`, an order with a cancel on its way excepted
  (`_finish_mass_cancels`). Cancels a venue drop kept from going out go the same way, at
  the reconcile after the next logon (`_cancel_at_logon`).
- a venue report the journal refuses (a full disk) is parked, in order, not dropped: every
  later report queues behind it (the OMS must not see a Filled before the PartiallyFilled it
  follows), and `flush_parked` journals and sends them, one at a time as above, once the
  journal takes records again. Held only in memory until then: a restart before that loses
  them from the journal (the venue's status answer after the logon still shows the state).
  The gateway's own answers journaled with their message take the same path (`_journaled`):
  its reject of an accepted order, the poller's 35=9 (its request is answered in memory
  already: nothing else would send it) and a mass cancel's 35=r, whose cancels then wait
  for it (the OMS sees the 35=r first; `flush_parked` carries them out once it is sent).

Which path a cancel or replace takes: the venue's FIX session for an order placed on it, the
REST/WS fallback's API while failed over and, whatever the order flow is on, for an order the
fallback placed (transport "rest"/"ws", `_by_fallback`). Kraken's cancel scope is the reason:
a single cancel or cancel/replace over FIX only reaches orders placed on that FIX session
(kraken-api.md), so after failback one of those sent over FIX would be refused as an unknown
order. This covers the OMS's cancel and replace, per-order mass cancel, the operator's cancel,
the kill switch's sweep and the OMS cancel-on-disconnect (`_cancel_one_of_many`); each is
journaled and answered as the fallback answers while failed over, and its poller keeps polling
while any is pending. A FIX Canceled that beats the fallback's own answer to such a cancel is
reported under the cancel's ClOrdID (`_answers_fallback_cancel`). Later fills and cancels of
such orders are taken from the venue's FIX session, which reports every order of the account
(as the simulator does; the fact sheet says nothing either way).
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Final

import quickfix as fix

from gateway.config.model import CANCEL_IN_FLIGHT_S, ScheduleConfig
from gateway.fix import messages as m
from gateway.fix.application import BaseHandler
from gateway.fix.blocked_send import close_blocked_send
from gateway.fix.dictionary import message_tags
from gateway.fix.kraken_logon import KrakenCredentials, add_trading_logon_fields
from gateway.fix.messages import Fields
from gateway.fix.settings import data_dictionary_path, session_key
from gateway.fix.store_reader import SentStore, store_prefix
from gateway.marketdata.fanout import OmsMarketData
from gateway.orders import state
from gateway.orders.model import Order
from gateway.orders.store import (
    ForwardedReport,
    MassCancel,
    OrderKey,
    OrderStore,
    ReportTarget,
    RequestDetails,
)
from gateway.risk import validation as v
from gateway.risk.gate import Gate, GateDecision, GateOrder
from gateway.routing.oms_disconnect import OmsDisconnectCanceller
from gateway.routing.sinks import NullSink, RoutingSink
from gateway.routing.trading_status import CLOSED, HALTED, OPEN, Status, TradingStatusFeed

if TYPE_CHECKING:
    from gateway.routing.failover import RestFallback

log = logging.getLogger("fixgw.routing")
# What the OMS-side dictionary allows in the venue messages passed on (see _strip_unknown).
_OMS_TAGS: Final = {t: message_tags(t) for t in ("8", "9")}

# CxlRejReason (102)
TOO_LATE: Final = "0"
UNKNOWN_ORDER: Final = "1"
BROKER_OPTION: Final = "2"
DUPLICATE_CL_ORD_ID: Final = "6"


# TEST-ONLY fault injection, never set in production: "after_journal" or "after_forward",
# optionally ":<ExecType>" (default F), makes the gateway exit at once (os._exit(137), as a
# kill -9 would leave it) at that point of `Router._apply_execution_report`, for the first
# report of that ExecType; "request_journaled:<MsgType>" (F or G) between journaling a cancel
# or replace for the venue's FIX session and sending it, "request_journaled:<kind>" (cancel,
# mass or amend) the same for one sent over REST/WS by the fallback; "refusal_journaled:
# <MsgType>" (F or G) between journaling the gateway's own refusal of an OMS cancel or replace
# and sending its 35=9 (`Router._refuse`); "answer_journaled:9" between journaling (an R with
# the message) and sending a 35=9 the fallback's poller answers a request with later
# (`Router.cancel_reject_for`), "answer_journaled:r" between journaling a mass cancel's U with
# its 35=r and sending that (`Router._mass_cancel`); "mass_cancel_sent:<n>" (n required)
# between an OMS mass cancel's per-order cancels, after the n-th was sent and before the next
# is journaled (`Router._cancel_targets`). The windows are microseconds wide; tests need them
# on demand.
CRASH_ENV: Final = "FIXGW_TEST_CRASH_IN_REPORT"
_CRASH_POINTS: Final = ("after_journal", "after_forward", "request_journaled",
                        "refusal_journaled", "answer_journaled", "mass_cancel_sent")


def _crash_point_from_env() -> tuple[str, str] | None:
    """The test-only crash point from `CRASH_ENV`, read once (see there)."""
    raw = os.environ.get(CRASH_ENV, "")
    if not raw:
        return None
    point, _, exec_type = raw.partition(":")
    if point not in _CRASH_POINTS:
        raise ValueError(f"{CRASH_ENV}={raw!r}: point must be one of {_CRASH_POINTS}")
    log.warning("%s=%s: TEST-ONLY crash point armed", CRASH_ENV, raw)
    return point, exec_type or "F"


@dataclass(frozen=True, slots=True)
class UnforwardedReport:
    """A journaled answer (a report, the poller's 35=9, a mass cancel's 35=r; see
    `ForwardedReport`) the OMS session's QuickFIX store shows was never sent."""

    ctx: OmsContext
    report: ForwardedReport
    # True when the store cannot say (no store, or reset the second the report was
    # journaled): sent marked PossResend (97=Y) with its ExecID, which an OMS dedupes.
    poss_resend: bool


@dataclass(frozen=True, slots=True)
class _Parked:
    """An answer applied in memory whose journal record the journal refused (a full disk),
    waiting in `Router._parked`: `write` journals it, then `msg` goes to `ctx` (None: nothing
    to send); `mass`, for an accepted mass cancel's 35=r, is its cancels to carry out once it
    is sent (as `Router._unfinished_mass`)."""

    write: Callable[[], None]
    msg: fix.Message | None
    ctx: OmsContext | None
    mass: MassCancel | None = None


@dataclass(frozen=True, slots=True)
class CancelInFlight:
    """A cancel of an order sent and not answered yet (see `Router.cancel_in_flight`)."""

    venue_cl_ord_id: str
    cl_ord_id: str  # the request's: the OMS's, a mass cancel's, the gateway's (KILL-, OPS-)
    age_s: float

    def describe(self) -> str:
        """What ops read: which request, and how long it has been on its way."""
        return f"cancel {self.cl_ord_id} sent {self.age_s:.0f} s ago"


ORD_STATUS_REQ_ID: Final = 790

# OMS messages whose ClOrdID (and a NewOrderSingle's Account) the journal records.
_JOURNALED_FROM: Final = frozenset({"D", "F", "G", "q"})

# How far along an order is, for telling a new report from a repeat (see `_advances`).
_STAGE: Final[dict[str, int]] = {
    state.SENT: 0, state.PENDING_NEW: 1, state.NEW: 2, state.PARTIALLY_FILLED: 2,
    state.PENDING_CANCEL: 3, state.PENDING_REPLACE: 3, state.REPLACED: 3,
}


def _advances(order: Order, exec_type: str, ord_status: str, cum_qty: str | None) -> bool:
    """True when a report tells something the order's record does not have yet: more filled,
    or a later state. Answers to requests (status, replace) always pass."""
    if exec_type in ("I", "5", "E"):
        return True
    return _is_news(order, ord_status, cum_qty)


def _fills_since(msg: fix.Message, f: Fields, order: Order) -> bool:
    """Turn a status answer that shows more filled than the record into the trade report the
    OMS books fills from (ExecType F), in place: LastQty the difference, LastPx the average
    price of what was filled since (from the two CumQty/AvgPx pairs), ExecID the answer's
    plus "-F". Only for answers after a new venue session began: the venue's own reports of
    those fills were sent in the old session and can never be resent, so this is the only
    report of them the OMS will get. False (nothing changed) when no more is filled."""
    cum = Decimal(f.get("14") or 0)
    delta = cum - order.cum_qty
    if delta <= 0:
        return False
    avg = Decimal(f.get("6") or 0)
    px = (cum * avg - order.cum_qty * order.avg_px) / delta
    exponent = avg.as_tuple().exponent
    places = max(8, -exponent if isinstance(exponent, int) else 8)
    px = px.quantize(Decimal(1).scaleb(-places)).normalize()
    updates = {"150": "F", "17": f["17"] + "-F", "32": m.decimal_field(delta),
               "31": m.decimal_field(px),
               "58": "fill(s) during the venue's session change, from its status answer (the "
                     "old session's reports cannot be resent); LastPx is their average price"}
    for tag, value in updates.items():
        msg.setField(int(tag), value)
    f.update(updates)
    return True


def _order_input(f: Fields) -> v.OrderInput:
    """A NewOrderSingle's order fields as the OMS sent them."""
    return v.OrderInput(f.get("55"), f.get("54"), f.get("38"), f.get("40"), f.get("44"),
                        f.get("59"), f.get("1"))


def _gate_order(order: Order, qty: Decimal, price: Decimal | None) -> GateOrder:
    """An accepted order as the gate sees it, at `qty` and `price` (a replace's new version,
    or the order itself)."""
    return GateOrder(order.symbol, order.side, qty, price, order.ord_type, order.oms_session,
                     order.account)


def _not_the_order(order: Order, f: Fields) -> str | None:
    """Why a cancel or replace does not describe the order its OrigClOrdID names, or None.
    FIX 4.4 has the request repeat the order's Side and Instrument: a mismatch means the OMS
    has the wrong order in mind, and acting on OrigClOrdID alone would cancel or re-price
    another instrument's order (a BTC sell re-priced at an ETH price)."""
    symbol, side = f.get("55"), f.get("54")
    if symbol is not None and symbol != order.symbol:
        return f"Symbol {symbol} is not the order's ({order.symbol}); request not sent"
    if side is not None and side != order.side:
        return (f"Side {side} is not the order's ({order.side}, "
                f"{m.side_name(order.side)}); request not sent")
    return None


def _behind(order: Order, cum_qty: str | None) -> bool:
    """Whether the venue's word has less filled than the order's record: a report older than
    ones already applied (the same venue, over another transport)."""
    return bool(cum_qty) and Decimal(cum_qty or 0) < order.cum_qty


def _replace_caught_up(msg: fix.Message, f: Fields, order: Order) -> None:
    """Bring a Replaced (or PendingReplace) report that is behind the order's record (it was
    resent over FIX after fills already reported over REST/WS) up to the record, in place:
    CumQty, AvgPx, LeavesQty and OrdStatus from the fills already booked, the new OrderQty
    and Price from the report. Applied as sent, it would move the record's CumQty back, and
    the venue's resend of those fills would then be news: the OMS would book them twice. Its
    OMS still gets the answer to its replace."""
    qty = Decimal(f["38"]) if f.get("38") else order.qty
    cum = order.cum_qty
    if state.is_terminal(order.status):
        status, leaves = order.status, Decimal(0)
    else:
        status = state.FILLED if cum >= qty else state.PARTIALLY_FILLED
        leaves = max(qty - cum, Decimal(0))
    updates = {"14": m.decimal_field(cum), "6": m.decimal_field(order.avg_px),
               "151": m.decimal_field(leaves), "39": status}
    for tag, value in updates.items():
        msg.setField(int(tag), value)
    f.update(updates)


def _is_news(order: Order, ord_status: str, cum_qty: str | None) -> bool:
    """Whether the venue's word (state and filled quantity) is ahead of the order's record."""
    if state.is_terminal(order.status):
        return False
    cum = Decimal(cum_qty) if cum_qty else order.cum_qty
    if cum != order.cum_qty:
        return cum > order.cum_qty
    return _STAGE.get(ord_status, 4) > _STAGE.get(order.status, 4)


@dataclass
class OmsContext:
    key: str
    session_id: fix.SessionID
    accounts: tuple[str, ...]
    session: fix.Session | None = None
    # A send in progress (monotonic start, OS thread): QuickFIX's send blocks while the OMS
    # does not read, holding the session's lock; the gateway's send watch cuts such an OMS.
    sending_since: float = 0.0
    sending_tid: int = 0

    def send(self, msg: fix.Message) -> None:
        # Sent even while the OMS is logged out: QuickFIX stores it and the OMS gets it through
        # its ResendRequest at the next logon. That is how the OMS never misses a report.
        if self.session is None:
            self.session = fix.Session.lookupSession(self.session_id)
        if self.session is not None:
            started = time.monotonic()
            self.sending_tid, self.sending_since = threading.get_native_id(), started
            try:
                self.session.send(msg)
            finally:
                if self.sending_since == started:
                    self.sending_since = 0.0


def cut_stalled_oms(contexts: Iterable[OmsContext], limit_s: float, local_port: int,
                    now: float | None = None) -> list[str]:
    """Cut the OMS sessions whose send has been blocked longer than `limit_s` (the OMS reads
    nothing): QuickFIX holds the session's lock through the send, so the session's own
    timeouts cannot fire, and the thread blocked may be the venue's, holding up every report.
    Only a socket bound to `local_port` (the OMS acceptor's) is shut down. Returns the keys
    of the sessions cut; the OMS may log on again and gets what it missed by resend."""
    now = time.monotonic() if now is None else now
    cut = []
    for ctx in contexts:
        since = ctx.sending_since
        if since and now - since > limit_s and close_blocked_send(ctx.sending_tid, 0.05,
                                                                   local_port=local_port):
            log.warning("OMS session %s has read nothing for %.0f s while the gateway sent to "
                        "it; its connection is cut (it may log on again: reports come by "
                        "resend)", ctx.key, now - since)
            cut.append(ctx.key)
    return cut


class VenueTrading:
    """The venue trading session as the router sees it.

    Whether it is logged on is a flag the session's onLogon/onLogout keep, not a call to
    `Session.isLoggedOn`: each binding call releases the GIL, and on the order path that hands
    it to the other FIX thread for a whole report (see tools/bench_fix.py). QuickFIX calls
    onLogout from its disconnect, so the flag goes down with the session.
    """

    def __init__(self) -> None:
        self.session: fix.Session | None = None
        self.session_id: fix.SessionID | None = None
        self.name = "venue trading session"
        self.logged_on = False
        # Wall-clock ms of the last logon: a FIX cancel sent before it and never answered
        # was lost with the connection (see `Router.cancel_in_flight`).
        self.logged_on_ms = 0
        # The venue's daily rollover ([schedule]), named in what a refusal says while it lasts.
        self.rollover: ScheduleConfig | None = None

    def not_logged_on(self) -> str:
        """Why an order or request cannot go over FIX now, for the Text the OMS reads."""
        return f"{self.name} is not logged on{self.rollover_note()}"

    def rollover_note(self) -> str:
        """' (the venue's daily rollover, until 22:00:30 UTC)' while it lasts, else ''."""
        r = self.rollover
        if r is None or not r.in_rollover(datetime.now(UTC)):
            return ""
        return f" (the venue's daily rollover, until {r.back_at()})"

    def on_logon(self, session_id: fix.SessionID) -> None:
        self.session_id = session_id
        self.session = fix.Session.lookupSession(session_id)
        self.name = f"venue trading session {session_key(session_id)}"
        self.logged_on_ms = time.time_ns() // 1_000_000
        self.logged_on = self.session is not None

    def on_logout(self) -> None:
        self.logged_on = False

    def is_up(self) -> bool:
        return self.logged_on

    def send(self, msg: fix.Message) -> bool:
        """Send only while logged on: QuickFIX would otherwise store the message and replay
        it at the next logon, a silent queue the gateway never wants."""
        s = self.session
        return self.logged_on and s is not None and bool(s.send(msg))


class Router:
    def __init__(
        self,
        store: OrderStore,
        validator: v.OrderValidator,
        sink: RoutingSink | None = None,
        gate: Gate | None = None,
        cancel_in_flight_s: float = CANCEL_IN_FLIGHT_S,
    ) -> None:
        self.store = store
        self.validator = validator
        self.sink: RoutingSink = sink or NullSink()
        self.gate = gate
        self.venue = VenueTrading()
        self.md: OmsMarketData | None = None  # OMS market-data requests, when a feed exists
        # Venue ClOrdIDs asked about by `reconcile` -> whether asked after a logon that began a
        # new venue session (what the venue reported in the old one cannot be resent).
        self._recon: dict[str, bool] = {}
        # Venue ClOrdIDs of new orders journaled and about to be sent on FIX: not in doubt, so
        # `reconcile` must not ask about them (its question could overtake the order).
        self._sending: set[str] = set()
        # Cancels and replaces journaled before a restart with no answer, by venue ClOrdID
        # (`find_unanswered_requests`): sent again by the first `reconcile`.
        self._unanswered: dict[str, RequestDetails] = {}
        # Mass cancels with cancels still to send: found unfinished in the journal at start
        # (`find_unanswered_requests`, `redeliver`), carried out by the first `reconcile`;
        # or whose parked 35=r `flush_parked` just sent (see `_finish_mass_cancels`).
        self._unfinished_mass: list[MassCancel] = []
        # (when asked, monotonic s; OrdStatusReqID (790), None: not given) of each OMS status
        # request the venue is asked and has not answered yet, oldest first, by the venue
        # ClOrdID asked about: FIX 4.4 echoes it on the answer, and the venue answers in the
        # order it was asked (see `_status_req_id`). Changed under `report_lock`.
        self._status_req_ids: dict[str, deque[tuple[float, str | None]]] = {}
        self.reconcile_delay_s = 1.0
        self.exec_ids = m.ExecIdSource("GW")
        self._oms_by_sid: dict[str, OmsContext] = {}
        self._oms_by_key: dict[str, OmsContext] = {}
        # REST order entry while the FIX trading session is down ([venue.fallback]); None = off.
        self.fallback: RestFallback | None = None
        # Venue reports arrive on the FIX thread and, with a fallback, on its poller thread.
        # The store's: its snapshots must not see a report applied but not yet journaled.
        self.report_lock = store.report_lock
        self._stripped: set[str] = set()  # venue tags not passed on, logged once each
        self._unasked_ids = itertools.count(1)  # see cancel_each_unasked
        # One unasked cancel decided at a time (in flight already, or send): two operator
        # commands, or one and a kill switch sweep, must not both find an order without one.
        self._unasked_lock = threading.Lock()
        # How long an unanswered cancel counts as on its way (`cancel_in_flight`);
        # `[gateway] cancel_in_flight_s`.
        self.cancel_in_flight_s = cancel_in_flight_s
        # Cancels journaled before a restart and sent again after it (`_send_unanswered_
        # requests`), by venue ClOrdID: when, wall-clock ms (they are on their way from then).
        self._resent_ms: dict[str, int] = {}
        # Answers applied in memory that the journal refused (disk full), in order: venue
        # reports, the gateway's rejects, the poller's 35=9, mass cancels' 35=r; see
        # `_journaled` and `flush_parked`.
        self._parked: deque[_Parked] = deque()
        self._crash_at = _crash_point_from_env()  # TEST-ONLY (see CRASH_ENV)
        # Accepted orders whose events are not published yet (see `_announce`).
        self._unannounced: dict[OrderKey, tuple[Order, GateOrder | None,
                                                GateDecision | None]] = {}
        self._announce_lock = threading.Lock()
        # Per OMS session, when configured: its open orders canceled once it is gone too long.
        self.disconnects = OmsDisconnectCanceller(self.store.open_orders,
                                                  self.cancel_each_unasked)
        # TradingSessionStatus for the OMS sessions that ask (35=g).
        self.trading_status_feed = TradingStatusFeed(self.trading_status)

    # ---- wiring ----------------------------------------------------------------------------
    def register_oms(self, session_id: fix.SessionID, accounts: tuple[str, ...],
                     cancel_on_disconnect_s: float | None = None) -> None:
        ctx = OmsContext(session_key(session_id), session_id, accounts)
        self._oms_by_sid[session_id.toString()] = ctx
        self._oms_by_key[ctx.key] = ctx
        if cancel_on_disconnect_s is not None:
            self.disconnects.watch(ctx.key, cancel_on_disconnect_s)

    def watch_absent_oms(self) -> None:
        """At start, before the acceptor opens: an OMS session with cancel-on-disconnect and
        open orders is down until it logs on, like one that dropped."""
        for key in self._oms_by_key:
            if self.disconnects.watches(key) and self.store.open_orders(key):
                self.disconnects.down(key, "has not logged on since the gateway started")

    def settle_interrupted(self) -> None:
        """At start: an order the gateway was closing itself when it stopped (a held order
        being canceled or rejected: journaled as leaving with no transport, its report not
        yet journaled) is closed now, so it is not left open for ever with its OMS told only
        PendingNew. Canceled if a cancel was asked for it, else Rejected."""
        for order in self.store.open_orders():
            ctx = self._oms_by_key.get(order.oms_session)
            if order.transport != "none" or ctx is None:
                continue
            refused = ("cancel", "a cancel was asked for it") if self.store.cancel_asked(
                order) is not None else ("stopped", "the gateway stopped while closing it")
            self._settle_unsent(ctx, order, refused, "at start")

    def close(self) -> None:
        """The gateway is stopping: it logs the OMS sessions out itself, which must not read
        as an OMS going away."""
        self.disconnects.close()

    def oms_contexts(self) -> list[OmsContext]:
        return list(self._oms_by_key.values())

    def oms_handler(self) -> OmsHandler:
        return OmsHandler(self)

    def venue_handler(
        self, credentials: KrakenCredentials | None, cancel_on_disconnect: bool
    ) -> VenueHandler:
        return VenueHandler(self, credentials, cancel_on_disconnect)

    # ---- OMS -> venue ------------------------------------------------------------------------
    def on_oms_message(self, msg: fix.Message, sid: fix.SessionID, f: Fields) -> None:
        ctx = self._oms_by_sid.get(sid.toString())
        if ctx is None:
            raise fix.UnsupportedMessageType()
        t = f["35"]
        if t in _JOURNALED_FROM and not (f.get("11", "").isprintable()
                                         and f.get("1", "").isprintable()):
            self._refuse_unprintable(ctx, t, f)
        elif t == "D":
            self._new_order(ctx, f)
        elif t == "F":
            self._cancel(ctx, f)
        elif t == "G":
            self._replace(ctx, f)
        elif t == "H":
            self._status(ctx, f)
        elif t == "q":
            self._mass_cancel(ctx, f)
        elif t == "AF":
            self._mass_status(ctx, f)
        elif t == "g":
            self.trading_status_feed.on_request(ctx.key, ctx.send, f)
        elif t == "V" and self.md is not None:
            self.md.on_request(msg, ctx.key, ctx.send)
        else:
            raise fix.UnsupportedMessageType()

    def _refuse_unprintable(self, ctx: OmsContext, t: str, f: Fields) -> None:
        """A ClOrdID or Account with a control character (a tab, a newline): FIX allows it, but
        it could not be journaled as one record, and a journal that cannot be read back stops
        the gateway's next start. Refused before anything is journaled, so the ClOrdID is not
        taken either (it can never be used)."""
        tag = "11" if not f.get("11", "").isprintable() else "1"
        name = "ClOrdID" if tag == "11" else "Account"
        cl = f.get("11", "")
        text = (f"{name} ({tag}) holds a control character ({f[tag]!r}); use printable "
                "characters")
        log.warning("refused %s from %s: %s", t, ctx.key, text)
        if t == "D":
            self._reject_new(ctx, cl, _order_input(f), v.OTHER, text, mark=False)
        elif t in ("F", "G"):
            self._cancel_reject(ctx, cl, f.get("41", ""), "1" if t == "F" else "2", "99", text,
                                None)
        else:
            ctx.send(m.mass_cancel_report(cl, f.get("530", "7"), "NONE", ("99", text)))

    def on_oms_logout(self, sid: fix.SessionID) -> None:
        ctx = self._oms_by_sid.get(sid.toString())
        if ctx is None:
            return
        if self.md is not None:
            self.md.drop(ctx.key)
        self.trading_status_feed.drop(ctx.key)
        self.disconnects.down(ctx.key, "logged out or lost its connection")

    def on_oms_logon(self, sid: fix.SessionID) -> None:
        ctx = self._oms_by_sid.get(sid.toString())
        if ctx is not None:
            self.disconnects.up(ctx.key)

    def trading_status(self) -> Status:
        """(TradSesStatus, Text) for the OMS: can a new order reach the venue now?"""
        if self.gate is not None and self.gate.kill_switch:
            return HALTED, "kill switch on: every new order is rejected"
        if self.venue.is_up():
            return OPEN, f"new orders go to the venue over FIX ({self.venue.name})"
        if self.fallback is not None and self._rest_active():
            return OPEN, (f"new orders go to the venue over "
                          f"{self.fallback.order_transport().upper()}: "
                          f"{self.venue.not_logged_on()}")
        then = ("held until FIX or the fallback is up, for up to "
                f"{self.fallback.hold_max_s:g}s" if self.fallback is not None
                and self.fallback.hold_max_s > 0 else "rejected")
        return CLOSED, f"{self.venue.not_logged_on()}; new orders are {then}"

    def _new_order(self, ctx: OmsContext, f: Fields) -> None:
        cl = f["11"]
        inp = _order_input(f)
        dup = self._taken(ctx, f, "order")
        if dup is not None:
            if dup:  # the original order is untouched; only this message is refused
                self._reject_new(ctx, cl, inp, v.DUPLICATE_ORDER, dup, mark=False)
            return
        checked = self.validator.validate(inp, ctx.accounts)
        if isinstance(checked, v.Rejection):
            self._reject_new(ctx, cl, inp, checked.reason, checked.text)
            return
        gate_order = decided = decision = None
        if self.gate is not None:
            decided = GateOrder(checked.symbol, checked.side, checked.qty, checked.price,
                                checked.ord_type, ctx.key, checked.account)
            decision = self._gate_check(decided, inp, ctx.accounts)
            if decision.action == "block":
                self.sink.gate_decided(decided, cl, decision)
                self._reject_new(ctx, cl, inp, v.EXCEEDS_LIMIT, decision.text)
                return
            gate_order = decided  # `decided` as the gate saw it, for its decision event
            if decision.action == "reduce" and decision.reduced_qty is not None:
                checked = replace(checked, qty=decision.reduced_qty)
                gate_order = replace(decided, qty=decision.reduced_qty)
        # Past the gate, the order holds a slot of its symbol's rate window (taken by its
        # check): counted once the order is routed (sent, held or placed over REST), given
        # back on every other way out, an exception included.
        routed = False
        try:
            rest = self._rest_active()
            hold = self.fallback is not None and self.fallback.should_hold(
                self.venue.is_up() and not rest, rest and self.fallback.rest_ok)
            if not hold and not rest and not self.venue.is_up():
                self._reject_new(ctx, cl, inp, v.EXCHANGE_CLOSED,
                                 f"{self.venue.not_logged_on()}; order not sent "
                                 "(no fallback transport available)")
                return
            venue_id = self.store.venue_ids.next()
            if not hold and not rest:
                self._sending.add(venue_id)
            order = Order(oms_session=ctx.key, oms_cl_ord_id=cl, venue_cl_ord_id=venue_id,
                          symbol=checked.symbol, side=checked.side, ord_type=checked.ord_type,
                          qty=checked.qty, price=checked.price, tif=checked.tif,
                          account=checked.account,
                          transport=self._transport_for_new(hold, rest),
                          oms_history=[cl])
            try:
                self.store.add_order(order)
            except OSError as exc:  # the journal cannot take it (disk full): nothing was sent
                self._sending.discard(venue_id)
                log.error("order %s from %s not journaled: %s", cl, ctx.key, exc)
                self._reject_new(ctx, cl, inp, v.OTHER, f"not accepted: the gateway could not "
                                 f"journal it ({exc.strerror or exc}); order not sent", mark=False)
                return
            if self.gate is not None and self.gate.kill_switch:
                # Turned on since this order passed the gate: the operator's sweep of open
                # orders may have run before the order was in the store. Checked after
                # add_order, so either the sweep sees the order or this sees the switch.
                self._sending.discard(venue_id)
                self._reject_recorded(ctx, order, "kill switch turned on while the order was "
                                      "being accepted; order not sent", v.EXCEEDS_LIMIT)
                return
            if hold or rest:
                if decided is not None and decision is not None:
                    self.sink.gate_decided(decided, cl, decision)
            else:
                key = (ctx.key, cl)
                self._unannounced[key] = (order, decided, decision)
            if hold:
                assert self.fallback is not None
                if not self.fallback.hold(order):
                    self._reject_recorded(ctx, order, f"{self.venue.not_logged_on()} and "
                                          f"{self.fallback.hold_max_orders} orders are already "
                                          "held; order not sent")
                    return
                routed = True
                self.sink.order_accepted(order)
                self._pending_new(ctx, order, f"held: {self.venue.not_logged_on()}; sent "
                                  "once FIX or the REST fallback is up, or rejected after "
                                  f"{self.fallback.hold_max_s:g}s")
                return
            if rest:
                assert self.fallback is not None
                placed = self.fallback.place(order)
                if isinstance(placed, tuple):
                    self._reject_recorded(ctx, order, placed[1], placed[0])
                    return
                routed = True
                self.sink.order_accepted(order)
                if placed is not None:
                    self.on_venue_report(placed, order.transport)  # the venue's acknowledgement
                return
            out = self._order_message("D", venue_id, order, f.get("60"))
            sent = self.venue.send(out)
            self._sending.discard(venue_id)
            # The gate decision and "accepted" events are published after the send, off the
            # order's way to the venue; `_announce` keeps them ahead of the venue's answer.
            self._announce(key)
            if not sent:
                # The venue dropped between the check and the send: tell the OMS now, and record
                # the order as rejected so a late venue report cannot revive it unseen.
                self._reject_recorded(ctx, order, f"{self.venue.name} disconnected while sending")
                return
            routed = True
        finally:
            if gate_order is not None and self.gate is not None:
                if routed:
                    self.gate.on_order_routed(gate_order)
                else:
                    self.gate.on_order_not_routed(gate_order)

    def _gate_check(self, order: GateOrder, inp: v.OrderInput, accounts: tuple[str, ...],
                    amend: bool = False) -> GateDecision:
        """The gate's decision, with a reduction the venue would refuse (a quantity under its
        minimum or off its step; the gate floors to the step only once the venue has said
        it) turned into a block that says why: the venue's reject would cost a rate-limit
        point and tell the OMS less. A new order's check takes a rate slot when it passes
        (see Gate.check): such a block gives it back; any other passing decision leaves it
        to the caller to count (routed) or give back."""
        assert self.gate is not None
        decision = self.gate.check(order, amend)
        if decision.action != "reduce" or decision.reduced_qty is None:
            return decision
        try:
            smaller = self.validator.validate(
                replace(inp, qty=m.decimal_field(decision.reduced_qty)), accounts)
        except BaseException:
            if not amend:
                self.gate.on_order_not_routed(order)
            raise
        if not isinstance(smaller, v.Rejection):
            return decision
        if not amend:  # a new order: its check took a rate slot, and it goes nowhere
            self.gate.on_order_not_routed(order)
        text = f"{decision.text}; but {smaller.text}: not sent"
        return replace(decision, action="block", text=text, reasons=(*decision.reasons, text),
                       reduced_qty=None)

    def _announce(self, key: OrderKey) -> None:
        """Publish an accepted order's gate decision and "accepted" events, once: by the OMS
        thread right after it sends the order, or by the venue thread if the venue's answer
        gets there first. Under `_announce_lock`, so the venue thread, which calls this before
        it publishes any report of the order, never overtakes an announcement in progress."""
        with self._announce_lock:
            item = self._unannounced.pop(key, None)
            if item is None:
                return
            order, gate_order, decision = item
            if gate_order is not None and decision is not None:
                self.sink.gate_decided(gate_order, key[1], decision)
            self.sink.order_accepted(order)

    def _reject_new(self, ctx: OmsContext, cl: str, inp: v.OrderInput, reason: str, text: str,
                    mark: bool = True) -> None:
        if mark:
            self.store.mark_used(ctx.key, cl)
        er = self._reject_message(cl, inp, reason, text, self.exec_ids.next())
        self._send_reject(ctx, er, cl, inp, reason, text)

    def _send_reject(self, ctx: OmsContext, er: fix.Message, cl: str, inp: v.OrderInput,
                     reason: str, text: str, send: bool = True) -> None:
        if send:
            ctx.send(er)
        log.info("rejected order %s from %s: %s", cl, ctx.key, text)
        self.sink.order_rejected(ctx.key, cl, inp.symbol or "", reason, text, inp)

    @staticmethod
    def _reject_message(cl: str, inp: v.OrderInput, reason: str, text: str,
                        exec_id: str) -> fix.Message:
        """The ExecutionReport (150=8, 39=8) that rejects an order, for the OMS."""
        er = m.new_message("8")
        er.setField(m.ORDER_ID, "NONE")
        er.setField(m.CL_ORD_ID, cl)
        er.setField(m.EXEC_ID, exec_id)
        er.setField(m.EXEC_TYPE, "8")
        er.setField(m.ORD_STATUS, "8")
        er.setField(m.SYMBOL, inp.symbol or "[N/A]")
        er.setField(m.SIDE, inp.side or "1")  # as the OMS sent it (the dictionary checked it)
        if inp.qty:
            er.setField(m.ORDER_QTY, inp.qty)
        if inp.account:
            er.setField(m.ACCOUNT, inp.account)
        er.setField(m.LEAVES_QTY, "0")
        er.setField(m.CUM_QTY, "0")
        er.setField(m.AVG_PX, "0")
        er.setField(m.ORD_REJ_REASON, reason)
        er.setField(m.TEXT, text)
        er.setField(m.TRANSACT_TIME, m.utc_timestamp())
        return er

    def _rest_active(self) -> bool:
        return self.fallback is not None and self.fallback.active()

    def _by_fallback(self, order: Order) -> bool:
        """Whether a cancel or replace of `order` goes over the fallback's REST/WS API rather
        than the venue's FIX session: while failed over (every order), and for an order the
        fallback placed (transport "rest"/"ws") whatever the order flow is on now. Kraken's
        cancel scope: a single cancel (or cancel/replace) over FIX only reaches orders placed
        on that FIX session, so after failback the venue would refuse one of those as an
        unknown order and the OMS could no longer cancel or replace it (kraken-api.md, FIX
        "Session and connectivity"). Orders placed over FIX keep going over FIX."""
        fb = self.fallback
        return fb is not None and (fb.active() or order.transport in ("rest", "ws"))

    def _transport_for_new(self, hold: bool, failed_over: bool) -> str:
        """Journaled with the new order: "held", "fix", or while failed over "ws" (private
        WebSocket up) or "rest"."""
        if hold:
            return "held"
        if failed_over and self.fallback is not None:
            return self.fallback.order_transport()
        return "fix"

    def _pending_new(self, ctx: OmsContext, order: Order, text: str) -> None:
        """ExecType A (PendingNew) for an accepted order not sent yet (held): the order
        record stays SENT, so the venue's New that follows is the next state, as ever."""
        er = self._record_report(order, order.oms_cl_ord_id, "A", "A")
        er.setField(m.TEXT, text)
        er.setField(m.TRANSACT_TIME, m.utc_timestamp())
        ctx.send(er)

    def release_held(self, order: Order, path: str, held_s: float) -> None:
        """Send a held order on `path` ("fix" | "rest"), or reject it ("expired"). Runs on the
        fallback's thread; the transport is journaled before the order leaves."""
        ctx = self._oms_by_key.get(order.oms_session)
        if ctx is None or not order.is_open:
            return
        if path == "expired":
            self.store.set_transport(order, "none")
            self._reject_recorded(ctx, order, f"held {held_s:.1f}s while no venue transport "
                                  f"was up ({self.venue.name} not logged on); order not sent")
            self._closed_at_gate(order)
            return
        if path == "rest":
            assert self.fallback is not None
            path = self.fallback.order_transport()  # "ws" while the private socket is up
        refused = self._refused_now(order)
        if refused is not None:
            self.store.set_transport(order, "none")
            self._settle_unsent(ctx, order, refused, f"held {held_s:.1f}s")
            return
        if path == "fix":
            self._sending.add(order.venue_cl_ord_id)
        self.store.set_transport(order, path)
        log.info("held order %s sent over %s after %.2fs", order.oms_cl_ord_id, path.upper(),
                 held_s)
        if path in ("rest", "ws"):
            assert self.fallback is not None
            placed = self.fallback.place(order)
            if isinstance(placed, tuple):
                self._reject_recorded(ctx, order, placed[1], placed[0])
                self._closed_at_gate(order)
            elif placed is not None:
                self.on_venue_report(placed, order.transport)
            return
        sent = self._send_new(order)
        self._sending.discard(order.venue_cl_ord_id)
        if not sent:
            self._reject_recorded(ctx, order, f"{self.venue.name} disconnected while sending")
            self._closed_at_gate(order)

    def _refused_now(self, order: Order) -> tuple[str, str] | None:
        """Whether an accepted order that has not reached the venue may still be sent now
        (a held order released, or one the venue never got before a restart or disconnect):
        None if so, else ("cancel", why) when a cancel has been asked for it since, or
        ("gate", why) when the pre-trade gate would stop it now (the kill switch, or a price
        collar the market has moved away from). The gate's two order-counting limits do not
        apply: the order was counted when it was accepted."""
        if self.store.cancel_asked(order) is not None:
            return "cancel", "a cancel was asked for it before it could be sent"
        if self.gate is None:
            return None
        decision = self.gate.check(_gate_order(order, order.qty, order.price), amend=True)
        if decision.action == "block":
            return "gate", decision.text
        if decision.action == "reduce" and decision.reduced_qty is not None:
            return "gate", (f"{decision.text} (the gate would now reduce it to "
                            f"{m.decimal_field(decision.reduced_qty)})")
        return None

    def _settle_unsent(self, ctx: OmsContext, order: Order, refused: tuple[str, str],
                       when: str) -> None:
        """Close an accepted order that never reached the venue and will not be sent: Canceled
        if a cancel was asked for it (kind "cancel"), else Rejected with the reason (kind
        "gate": the gate's). Either way the gate's count of open orders lets it go."""
        kind, why = refused
        log.warning("order %s (%s) not sent: %s", order.oms_cl_ord_id, when, why)
        if kind == "cancel":
            self._cancel_unsent(order, order.venue_cl_ord_id,
                                f"canceled: it had not reached the venue ({why})")
        else:
            self._reject_recorded(ctx, order, f"not sent: it had not reached the venue, and "
                                  f"{why}", v.EXCEEDS_LIMIT if kind == "gate" else v.OTHER)
            self._closed_at_gate(order)

    def _closed_at_gate(self, order: Order) -> None:
        if self.gate is not None:
            self.gate.on_order_closed(order.oms_session, order.symbol)

    def cancel_reject_for(self, order: Order, vid: str, oms_cl: str, response_to: str,
                          reason: str, text: str) -> None:
        """Answer request `vid` (the OMS's `oms_cl`), accepted and then found refused by the
        fallback's poller, with a 35=9 to the order's OMS: journaled as answered (an ``R``)
        with that exact message, then sent, under `report_lock` (so it is the journal's last
        answer until sent, as a report would be).

        Why the message is journaled: the OMS request was handled long before, so no OMS
        resend asks for its answer again; a kill -9 between the record and the send would
        lose it. With the message on record, a restart finds it missing from the OMS store
        and sends it (`unforwarded_report`, `redeliver`)."""
        ctx = self._oms_by_key.get(order.oms_session)
        with self.report_lock:
            if ctx is None:
                self.store.mark_answered(vid)
                log.error("cancel reject for %s: OMS session %s is not configured any more",
                          oms_cl, order.oms_session)
                return
            r = self._cancel_reject_message(oms_cl, order.oms_cl_ord_id, response_to, reason,
                                            text, order)
            sent = self._journaled(self.store.answered_with(vid, ctx.key, r.toString()), r, ctx,
                                   f"cancel reject for {oms_cl}")  # parked: sent later
            if sent:
                self.maybe_crash("answer_journaled", "9")
            self._send_cancel_reject(ctx, r, oms_cl, order.oms_cl_ord_id, response_to, reason,
                                     text, order, send=sent)

    def _reject_recorded(self, ctx: OmsContext, order: Order, text: str,
                         reason: str = v.EXCHANGE_CLOSED) -> None:
        """Reject an order already journaled as accepted: the reject is journaled with the
        exact message for the OMS, under the same ExecID, before it is sent, like a venue
        report (and under the report lock, so that only the journal's last report can be in
        doubt at a restart; see the module docstring)."""
        exec_id = self.exec_ids.next()
        target = ReportTarget(order, order.oms_cl_ord_id, None, "new", False)
        inp = v.OrderInput(order.symbol, order.side, m.decimal_field(order.qty),
                           order.ord_type,
                           None if order.price is None else m.decimal_field(order.price),
                           order.tif, order.account)
        er = self._reject_message(order.oms_cl_ord_id, inp, reason, text, exec_id)
        with self.report_lock:
            _legal, rec = self.store.apply_report(
                target, venue_cl_ord_id=order.venue_cl_ord_id, exec_id=exec_id, exec_type="8",
                ord_status="8", cum_qty="0", avg_px="0", order_id=None, qty=None, price=None)
            sent = self._journaled(self._report_write(rec, er), er, ctx,  # parked: sent later
                                   f"reject {exec_id} of order {order.oms_cl_ord_id}")
            self._send_reject(ctx, er, order.oms_cl_ord_id, inp, reason, text, send=sent)

    def _cancel_reject(self, ctx: OmsContext, cl: str, orig: str, response_to: str,
                       reason: str, text: str, order: Order | None) -> None:
        r = self._cancel_reject_message(cl, orig, response_to, reason, text, order)
        self._send_cancel_reject(ctx, r, cl, orig, response_to, reason, text, order)

    @staticmethod
    def _cancel_reject_message(cl: str, orig: str, response_to: str, reason: str, text: str,
                               order: Order | None) -> fix.Message:
        r = m.new_message("9")
        r.setField(m.ORDER_ID, order.order_id if order and order.order_id else "NONE")
        r.setField(m.CL_ORD_ID, cl)
        r.setField(m.ORIG_CL_ORD_ID, orig)
        # 39 is the order's status as the OMS knows it: one accepted but not yet acknowledged
        # by the venue (or held) is PendingNew; "8" only when there is no such order.
        r.setField(m.ORD_STATUS, "8" if order is None else
                   state.PENDING_NEW if order.status == state.SENT else order.status)
        r.setField(m.CXL_REJ_RESPONSE_TO, response_to)
        r.setField(m.CXL_REJ_REASON, reason)
        r.setField(m.TEXT, text)
        return r

    def _send_cancel_reject(self, ctx: OmsContext, r: fix.Message, cl: str, orig: str,
                            response_to: str, reason: str, text: str,
                            order: Order | None, send: bool = True) -> None:
        """Send `r` (unless parked: `send` False, `flush_parked` sends it) and tell the log
        and the event stream, now either way, as for a parked venue report."""
        if send:
            ctx.send(r)
        log.info("cancel/replace %s on %s rejected: %s", cl, ctx.key, text)
        self.sink.cancel_rejected(ctx.key, cl, orig, text, order=order,
                                  response_to=response_to, reason=reason)

    def _check_amend(self, ctx: OmsContext, f: Fields, response_to: str
                     ) -> tuple[str, Order] | None:
        cl = f["11"]
        orig = f["41"]
        order = self.store.find(ctx.key, orig)
        if order is None:
            self._cancel_reject(ctx, cl, orig, response_to, UNKNOWN_ORDER,
                                f"unknown order: OrigClOrdID {orig} was never accepted on this "
                                f"session{self._forgotten_hint()}", None)
            return None
        if f.get("43") == "Y" and self.store.is_used(ctx.key, cl):
            again = self._refused_before(ctx.key, cl)
            if again is not None:
                log.warning("PossDup resend of request %s from %s: the gateway refused it before "
                            "(its answer may never have left): answered again", cl, ctx.key)
                self._cancel_reject(ctx, cl, orig, response_to, again[0], again[1], order)
                return None
        dup = self._taken(ctx, f, "request")
        if dup is not None:
            if dup:
                self._cancel_reject(ctx, cl, orig, response_to, DUPLICATE_CL_ORD_ID, dup, order)
            return None
        if not order.is_open:
            self._cancel_reject(ctx, cl, orig, response_to, TOO_LATE,
                                f"too late: order {orig} is already "
                                f"{state.NAMES.get(order.status, order.status)}", order)
            return None
        mismatch = _not_the_order(order, f)
        if mismatch is not None:
            self._cancel_reject(ctx, cl, orig, response_to, BROKER_OPTION, mismatch, order)
            return None
        if (not self.venue.is_up() and not self._by_fallback(order)
                and not (response_to == "1" and order.transport == "held")):
            self._cancel_reject(ctx, cl, orig, response_to, BROKER_OPTION,
                                f"{self.venue.not_logged_on()}; request not sent", order)
            return None
        if order.transport == "held" and response_to == "2":
            self._refuse(ctx, cl, orig, response_to, BROKER_OPTION,
                         f"order {orig} is held (not sent yet: no venue transport up); "
                         "cancel it or wait for its New", order)
            return None
        return cl, order

    def _refuse(self, ctx: OmsContext, cl: str, orig: str, response_to: str, reason: str,
                text: str, order: Order, vid: str | None = None) -> None:
        """Answer an OMS cancel (`response_to` "1") or replace ("2") with the gateway's own
        refusal, journaled with its answer before the 35=9 is sent: as the answer to request
        `vid` (an ``R``) when the request was journaled under that venue ClOrdID, else as the
        ClOrdID taken (a ``U``) unless the fallback journaled the request and its refusal
        already (it did if the ClOrdID names the order now).

        Why the answer is journaled: the ClOrdID is taken from that record on, so after a
        kill -9 before the send the OMS's resend of the request (PossDupFlag=Y) is no new
        request; with the answer on record it is answered again (`_refused_before`), not
        ignored as one the venue answers."""
        if vid is not None:
            self.store.mark_answered(vid, (reason, text))
        elif self.store.find(ctx.key, cl) is None:
            self.store.mark_used(ctx.key, cl, (reason, text))
        self.maybe_crash("refusal_journaled", "F" if response_to == "1" else "G")
        self._cancel_reject(ctx, cl, orig, response_to, reason, text, order)

    def _refused_before(self, oms_session: str, cl: str) -> tuple[str, str] | None:
        """For a PossDup resend of a cancel or replace whose ClOrdID is taken: the (CxlRejReason,
        Text) to answer it with again if the gateway refused it itself, else None (it went to
        the venue, whose answer comes, or came, its own way: the venue resends it, or a restart
        sends a request the venue never got again; see `find_unanswered_requests`).

        Only the request being handled when the gateway died can come again this way (QuickFIX
        advances the session's incoming sequence once it is handled), so its refusal, if any,
        is the session's last one (`OrderStore.refusal`). A ClOrdID taken that names no order
        was refused by the gateway too, in a journal without the answer (an older gateway's):
        answered again with what can be said."""
        journaled = self.store.refusal(oms_session, cl)
        if journaled is not None:
            return journaled
        if self.store.find(oms_session, cl) is None:
            return BROKER_OPTION, (f"ClOrdID {cl} was refused before (the journal keeps no "
                                   "reason); this resend of it (PossDupFlag=Y) is refused again")
        return None

    def _taken(self, ctx: OmsContext, f: Fields, what: str) -> str | None:
        """None when the message's ClOrdID is new on this session. Otherwise "" for a PossDup
        resend of one the gateway already took (logged; nothing to answer: the OMS has, or will
        get, its answer, e.g. when we died before QuickFIX advanced its sequence), or the Text
        of the duplicate reject (also for a PossDup resend of a new order that was rejected).
        A PossDup resend of a cancel or replace the gateway refused itself is answered again
        before this is asked (`_check_amend`)."""
        cl = f["11"]
        if not self.store.is_used(ctx.key, cl):
            return None
        if f.get("43") == "Y":
            if what == "order" and self.store.find(ctx.key, cl) is None:
                # A new order rejected before: its reject is answered again, since the first
                # may never have left (the gateway died between journaling the ClOrdID as used
                # and sending the reject). A second reject of a rejected order changes nothing.
                return (f"ClOrdID {cl} was rejected before; this resend of it (PossDupFlag=Y) "
                        "gets a reject again")
            log.info("ignored PossDup resend of %s %s from %s", what, cl, ctx.key)
            return ""
        return f"duplicate ClOrdID {cl}: already used on this session"

    def _forgotten_hint(self) -> str:
        retention = self.store.retention_s
        return (f", or it closed more than {retention:g} s ago and was forgotten "
                "([gateway] closed_order_retention_s)" if retention > 0 else "")

    def _cancel(self, ctx: OmsContext, f: Fields) -> None:
        checked = self._check_amend(ctx, f, "1")
        if checked is None:
            return
        cl, order = checked
        if self._cancel_held(order, ctx, cl, "cancel"):
            return
        if self._by_fallback(order):
            assert self.fallback is not None
            refused = self.fallback.cancel(order, cl)
            if refused is not None:  # journaled by the fallback, with its answer
                self._refuse(ctx, cl, order.oms_cl_ord_id, "1", refused[0], refused[1], order)
            return
        self._send_cancel(order, ctx, cl, "cancel")

    def _cancel_held(self, order: Order, ctx: OmsContext, cl: str, kind: str) -> bool:
        """Cancel a held order here (it never left the gateway); False if it is not held."""
        if order.transport != "held" or self.fallback is None:
            return False
        if not self.fallback.unhold(order):
            if not self.fallback.releasing(order):
                return False
            # Leaving the hold queue this very moment (its transport was "held" just above, so
            # it may not have left yet): not canceled here, since it is being sent, and no
            # cancel to the venue, which may not know it yet. A refusal the OMS can send again
            # once the order is acknowledged (by then the cancel goes the transport's way).
            text = (f"order {order.oms_cl_ord_id} is leaving the hold queue right now (being "
                    "sent, or rejected as held too long); send the cancel again once it is "
                    "acknowledged")
            if kind == "cancel":
                self._refuse(ctx, cl, order.oms_cl_ord_id, "1", BROKER_OPTION, text, order)
            else:
                log.info("%s cancel %s: %s", kind, cl, text)
            return True
        vid = self.store.venue_ids.next()
        self.store.add_request(vid, (order.oms_session, order.oms_history[0]), cl, kind)
        self.store.set_transport(order, "none")
        self._cancel_unsent(order, vid, "canceled while held: it had not been sent to the venue")
        log.info("held order %s canceled before it was sent", order.oms_cl_ord_id)
        return True

    def _cancel_unsent(self, order: Order, vid: str, text: str) -> None:
        """Cancel, in the gateway, an order that never reached the venue: a Canceled report
        the gateway writes as the venue would, under venue ClOrdID `vid` (a cancel request's,
        or the order's own), through the venue reports' path (journal, OMS, events, gate)."""
        f: Fields = {
            "11": vid, "37": "NONE", "17": f"H{vid}-canceled", "150": "4", "39": "4",
            "55": order.symbol, "54": order.side, "38": m.decimal_field(order.qty),
            "40": order.ord_type, "59": order.tif, "151": "0", "14": "0", "6": "0",
            "60": m.utc_timestamp(), "58": text}
        if vid != order.venue_cl_ord_id:
            f["41"] = order.venue_cl_ord_id
        if order.price is not None:
            f["44"] = m.decimal_field(order.price)
        self.on_venue_report(f, "held")

    def _send_cancel(self, order: Order, ctx: OmsContext, cl: str, kind: str) -> bool:
        vid = self.store.venue_ids.next()
        self.store.add_request(vid, (order.oms_session, order.oms_history[0]), cl, kind,
                               RequestDetails(time.time_ns() // 1_000_000, None, None))
        self.maybe_crash("request_journaled", "F")
        sent = self.venue.send(self._cancel_message(order, vid))
        if not sent:  # refused here (a cancel) or by the caller (mass)
            if kind == "cancel":
                self._refuse(ctx, cl, order.oms_cl_ord_id, "1", BROKER_OPTION,
                             f"{self.venue.name} disconnected while sending", order, vid)
            else:
                self.store.mark_answered(vid)
        return sent

    @staticmethod
    def _cancel_message(order: Order, vid: str) -> fix.Message:
        """An OrderCancelRequest for the venue, under venue ClOrdID `vid`."""
        out = m.new_message("F")
        out.setField(m.CL_ORD_ID, vid)
        out.setField(m.ORIG_CL_ORD_ID, order.venue_cl_ord_id)
        if order.order_id:
            out.setField(m.ORDER_ID, order.order_id)
        out.setField(m.SYMBOL, order.symbol)
        out.setField(m.SIDE, order.side)
        out.setField(m.ORDER_QTY, m.decimal_field(order.qty))
        out.setField(m.TRANSACT_TIME, m.utc_timestamp())
        return out

    def _replace(self, ctx: OmsContext, f: Fields) -> None:
        checked = self._check_amend(ctx, f, "2")
        if checked is None:
            return
        cl, order = checked
        inp = v.OrderInput(order.symbol, f.get("54") or order.side, f.get("38"),
                           f.get("40") or order.ord_type, f.get("44"),
                           f.get("59") or order.tif, order.account or None)
        valid = self.validator.validate(inp, ())
        problem = None
        if isinstance(valid, v.Rejection):
            problem = valid.text
        elif (valid.side != order.side or valid.ord_type != order.ord_type
              or valid.tif != order.tif):
            # Kraken amends quantity and price only; another TimeInForce would be dropped
            # without a word, so it is refused like a new Side or OrdType.
            problem = ("a replace may change only OrderQty and Price (not Side, OrdType or "
                       "TimeInForce)")
        if problem is not None:
            self._refuse(ctx, cl, order.oms_cl_ord_id, "2", BROKER_OPTION, problem, order)
            return
        assert isinstance(valid, v.ValidOrder)
        qty, price = valid.qty, valid.price
        if self.gate is not None and (qty > order.qty or price != order.price):
            # The new version adds quantity or moves the price: it passes the gate like a new
            # order would (without the order-counting limits). Less quantity at the same price
            # only lowers risk and is never held back, not even by the kill switch.
            gate_order = _gate_order(order, qty, price)
            decision = self._gate_check(gate_order, inp, (), amend=True)
            self.sink.gate_decided(gate_order, cl, decision, amend=True)
            if decision.action == "block":
                self._refuse(ctx, cl, order.oms_cl_ord_id, "2", BROKER_OPTION, decision.text,
                             order)
                return
            if decision.action == "reduce" and decision.reduced_qty is not None:
                qty = decision.reduced_qty
        if qty <= order.cum_qty:
            # FIX's OrderQty is the whole order, fills included: at or below what is filled
            # nothing would be left to work, and a venue refuses it (or takes it for a cancel
            # of the rest); the OMS is told why here instead, with the figures.
            by_gate = "" if qty == valid.qty else " (reduced by the gate)"
            self._refuse(ctx, cl, order.oms_cl_ord_id, "2", BROKER_OPTION,
                         f"OrderQty {m.decimal_field(qty)}{by_gate} is not above the "
                         f"{m.decimal_field(order.cum_qty)} already filled: nothing would be "
                         "left to work; cancel the order instead", order)
            return
        if self._by_fallback(order):
            assert self.fallback is not None
            # The fallback journals the request (the ClOrdID is taken) and a refusal of it
            # with its answer; one it refuses before that is journaled by `_refuse`.
            refused = self.fallback.replace(order, cl, qty, price, f.get("59"))
            if refused is not None:
                self._refuse(ctx, cl, order.oms_cl_ord_id, "2", refused[0], refused[1], order)
            return
        vid = self.store.venue_ids.next()
        self.store.add_request(vid, (order.oms_session, order.oms_history[0]), cl, "replace",
                               RequestDetails(time.time_ns() // 1_000_000, qty, price))
        self.maybe_crash("request_journaled", "G")
        out = self._order_message("G", vid, order, None, qty, price)
        if not self.venue.send(out):
            self._refuse(ctx, cl, order.oms_cl_ord_id, "2", BROKER_OPTION,
                         f"{self.venue.name} disconnected while sending", order, vid)

    def _status(self, ctx: OmsContext, f: Fields) -> None:
        cl = f["11"]
        order = self.store.find(ctx.key, cl)
        # A closed order is answered from its record: the venue may have forgotten it, and its
        # "unknown order" would read as Rejected for an order that was, say, Canceled.
        if (order is not None and self.venue.is_up() and order.status != state.SENT
                and order.is_open):
            out = self._status_request(order)
            vid = order.venue_cl_ord_id
            with self.report_lock:  # echoed on the venue's answer
                self._status_req_ids.setdefault(vid, deque()).append(
                    (time.monotonic(), f.get("790")))
            if self.venue.send(out):
                return
            with self.report_lock:  # not asked after all: this request's own, the newest
                asked = self._status_req_ids.get(vid)
                if asked:
                    asked.pop()
                    if not asked:
                        del self._status_req_ids[vid]
        # Answer from our own record: the order is unknown, or the venue cannot be asked.
        if order is None:
            er = self._no_order_report(
                f.get("55"), f.get("54"), f"unknown order: ClOrdID {cl} was never accepted on "
                f"this session{self._forgotten_hint()}", cl)
        else:
            er = self._record_report(order, cl)
            er.setField(m.TEXT, "from the gateway's record: " + (
                "the order is closed" if not order.is_open
                else "held, not sent to the venue yet" if order.transport == "held"
                else "sent, not acknowledged by the venue yet" if order.status == state.SENT
                else "the venue session is not logged on"))
        if "790" in f:
            er.setField(ORD_STATUS_REQ_ID, f["790"])
        ctx.send(er)

    def _record_report(self, order: Order, cl: str, exec_type: str = "I",
                       ord_status: str | None = None) -> fix.Message:
        """An ExecutionReport the gateway writes from its record of `order` (which every venue
        report updates): a status answer (ExecType I) by default, under ClOrdID `cl`, the one
        the OMS asked about; OrdStatus the order's (PendingNew while the venue has not
        answered) unless given."""
        er = m.new_message("8")
        er.setField(m.EXEC_ID, self.exec_ids.next())
        er.setField(m.EXEC_TYPE, exec_type)
        er.setField(m.CL_ORD_ID, cl)
        er.setField(m.ORDER_ID, order.order_id or "NONE")
        er.setField(m.ORD_STATUS, ord_status or (
            order.status if order.status != state.SENT else "A"))
        er.setField(m.SYMBOL, order.symbol)
        er.setField(m.SIDE, order.side)
        er.setField(m.ORDER_QTY, m.decimal_field(order.qty))
        er.setField(m.ORD_TYPE, order.ord_type)
        if order.price is not None:
            er.setField(m.PRICE, m.decimal_field(order.price))
        er.setField(m.TIME_IN_FORCE, order.tif)
        if order.account:
            er.setField(m.ACCOUNT, order.account)
        er.setField(m.LEAVES_QTY, m.decimal_field(order.leaves_qty))
        er.setField(m.CUM_QTY, m.decimal_field(order.cum_qty))
        er.setField(m.AVG_PX, m.decimal_field(order.avg_px))
        return er

    def _no_order_report(self, symbol: str | None, side: str | None, text: str,
                         cl: str | None = None) -> fix.Message:
        """The status ExecutionReport for no order: OrdStatus Rejected, OrdRejReason unknown
        order, with the request's Symbol and Side where it gave them (both are required)."""
        er = m.new_message("8")
        er.setField(m.EXEC_ID, self.exec_ids.next())
        er.setField(m.EXEC_TYPE, "I")
        if cl is not None:
            er.setField(m.CL_ORD_ID, cl)
        er.setField(m.ORDER_ID, "NONE")
        er.setField(m.ORD_STATUS, "8")
        er.setField(m.SYMBOL, symbol or "[N/A]")
        er.setField(m.SIDE, side or "1")
        er.setField(m.LEAVES_QTY, "0")
        er.setField(m.CUM_QTY, "0")
        er.setField(m.AVG_PX, "0")
        er.setField(m.ORD_REJ_REASON, v.UNKNOWN_ORDER)
        er.setField(m.TEXT, text)
        return er

    def _mass_status(self, ctx: OmsContext, f: Fields) -> None:
        """OrderMassStatusRequest (AF): one ExecutionReport (ExecType I) per open order of the
        requesting OMS that matches, from the gateway's record (Kraken has no mass status to
        ask, and the record is what every venue report updates), each with the request's
        MassStatusReqID and TotNumReports, LastRptRequested=Y on the last. Types 1 (by Symbol)
        and 7 (all orders); Side and Account narrow either. No match: one report for no order,
        TotNumReports=0. Another type, or type 1 without Symbol: BusinessMessageReject."""
        req_id, req_type = f["584"], f["585"]
        symbol, side, account = f.get("55"), f.get("54"), f.get("1")
        if req_type not in ("1", "7") or (req_type == "1" and not symbol):
            rej = m.new_message("j")
            rej.setField(m.REF_SEQ_NUM, f["34"])
            rej.setField(m.REF_MSG_TYPE, "AF")
            rej.setField(m.BUSINESS_REJECT_REF_ID, req_id)
            if req_type not in ("1", "7"):
                rej.setField(m.BUSINESS_REJECT_REASON, "0")  # other
                rej.setField(m.TEXT, f"MassStatusReqType {req_type} is not supported; use 1 "
                                     "(by Symbol) or 7 (all orders)")
            else:
                rej.setField(m.BUSINESS_REJECT_REASON, "5")  # conditionally required missing
                rej.setField(m.TEXT, "MassStatusReqType 1 requires Symbol (55)")
            ctx.send(rej)
            return
        orders = [o for o in self.store.open_orders(ctx.key)
                  if (req_type == "7" or o.symbol == symbol) and (side is None or o.side == side)
                  and (account is None or o.account == account)]
        reports = [self._record_report(o, o.oms_cl_ord_id) for o in orders] or [
            self._no_order_report(symbol, side, "no open order matches the request")]
        for er in reports:
            er.setField(m.MASS_STATUS_REQ_ID, req_id)
            er.setField(m.TOT_NUM_REPORTS, str(len(orders)))
        reports[-1].setField(m.LAST_RPT_REQUESTED, "Y")
        for er in reports:
            ctx.send(er)

    def _mass_cancel(self, ctx: OmsContext, f: Fields) -> None:
        """Mass cancel is scoped to the requesting OMS's own orders: the gateway cancels them
        one by one at the venue, so one desk's request never touches another desk's orders."""
        cl = f["11"]
        req_type = f["530"]
        symbol, side = f.get("55"), f.get("54")
        report_id = f"MASS-{self.exec_ids.next()}"

        dup = self._taken(ctx, f, "mass cancel")
        if dup is not None:
            if dup:
                ctx.send(m.mass_cancel_report(cl, req_type, report_id, ("99", dup)))
            return
        targets: list[Order] = []
        refused: tuple[str, str] | None = None
        if req_type not in ("1", "7"):
            refused = ("99", f"MassCancelRequestType {req_type} is not supported; use 1 (by "
                             "symbol) or 7 (all orders)")
        elif req_type == "1" and not symbol:
            refused = ("1", "MassCancelRequestType 1 requires Symbol (55)")
        else:
            targets = self._mass_targets(ctx.key, req_type, symbol, side)
            # Held orders are canceled here and the fallback's go over REST/WS
            # (`_by_fallback`): only the others need the venue's FIX session.
            if not self.venue.is_up() and any(o.transport != "held" and not self._by_fallback(o)
                                              for o in targets):
                refused = ("99", f"{self.venue.not_logged_on()}; nothing canceled")
        if refused is None:
            targets = self._without_cancel_on_its_way(cl, targets)
        # The ClOrdID is used from now on, whatever the outcome, like any the OMS sent (the
        # per-order reports of an accepted one carry it); taken by the record that journals
        # the 35=r, as the OMS's PossDup resend of the request after a kill is ignored from
        # then on, and only the journal can tell a restart to send it (`ForwardedReport`).
        # A record the journal refuses (a full disk) is parked like a venue report, with the
        # cancels: they go out once the 35=r has (`flush_parked`), so the OMS sees it first.
        # An accepted one's record names the orders it covers (`MassCancel`): a kill before its
        # last cancel is journaled leaves the rest for the restart to send.
        with self.report_lock:
            # Orders close only under the report lock: one that closed since it was listed
            # (filled on the venue's thread) gets no cancel, and is not counted, so that
            # TotalAffectedOrders is the number of cancels this request sends.
            targets = [o for o in targets if o.is_open]
            rep = self._mass_cancel_report(cl, req_type, report_id, refused, symbol, side,
                                           len(targets))
            covered = [o.oms_history[0] for o in targets] if refused is None else None
            sent = self._journaled(
                self.store.used_for_answer(ctx.key, cl, rep.toString(), covered), rep, ctx,
                f"mass cancel report {report_id} for {cl}",
                MassCancel(ctx.key, cl, targets) if refused is None else None)
            if sent:
                self.maybe_crash("answer_journaled", "r")
                ctx.send(rep)
        if sent and refused is None:
            self._cancel_targets(ctx, cl, targets)

    @staticmethod
    def _mass_cancel_report(cl: str, req_type: str, report_id: str,
                            refused: tuple[str, str] | None, symbol: str | None,
                            side: str | None, affected: int) -> fix.Message:
        """The 35=r for mass cancel `cl`. It acknowledges the request before any of its
        cancels can be reported back, so an OMS sees it first and then one ExecutionReport per
        canceled order. It names the request's scope (Symbol, Side), which a restart that
        sends it also cancels by."""
        rep = m.mass_cancel_report(cl, req_type, report_id, refused)
        if refused is None:
            rep.setField(m.MASS_CANCEL_RESPONSE, req_type)
            rep.setField(m.TOTAL_AFFECTED_ORDERS, str(affected))
        if symbol:
            rep.setField(m.SYMBOL, symbol)
        if side:
            rep.setField(m.SIDE, side)
        return rep

    def _without_cancel_on_its_way(self, cl: str, targets: list[Order]) -> list[Order]:
        """A mass cancel's `targets` less the orders with a cancel already on its way
        (`cancel_in_flight`: the OMS's own, an operator's, the kill switch's), as the restart's
        completion of a mass cancel, the kill switch and cancel-on-disconnect skip them: the
        order is being canceled, and a second cancel would only draw a venue reject once the
        first has closed it. Its Canceled reaches the OMS under the request that canceled it,
        and it is not counted in TotalAffectedOrders."""
        kept = []
        for o in targets:
            on_its_way = self.cancel_in_flight(o)
            if on_its_way is None:
                kept.append(o)
            else:
                log.info("mass cancel %s: order %s has a %s; not sent again", cl,
                         o.oms_cl_ord_id, on_its_way.describe())
        return kept

    def _mass_targets(self, oms_session: str, req_type: str, symbol: str | None,
                      side: str | None) -> list[Order]:
        """The open orders of `oms_session` a mass cancel of `req_type` (1 by symbol, 7 all),
        narrowed by Side, covers."""
        return [o for o in self.store.open_orders(oms_session)
                if (req_type == "7" or o.symbol == symbol) and (side is None or o.side == side)]

    def _cancel_targets(self, ctx: OmsContext, cl: str, targets: list[Order]) -> None:
        """A mass cancel's cancels: one by one, this OMS's orders only, over REST too (Kraken
        CancelAll would cancel every desk's orders on the account). Each is journaled before
        it is sent; a kill between two leaves the rest to the restart (`MassCancel`).

        Whether a cancel is on its way is decided and the cancel sent under `_unasked_lock`,
        as the restart's completion of a mass cancel, the kill switch and operator cancels do
        (`_without_cancel_on_its_way` listed the targets before the 35=r, outside that lock):
        a kill switch between the two would otherwise send its cancel and this one too."""
        later: list[Order] = []
        for n, o in enumerate(targets, 1):
            with self._unasked_lock:
                on_its_way = self.cancel_in_flight(o)
                if on_its_way is None and not self._cancel_target(ctx, cl, o):
                    later.append(o)
            if on_its_way is not None:
                log.info("mass cancel %s: order %s has a %s; not sent again", cl,
                         o.oms_cl_ord_id, on_its_way.describe())
            self.maybe_crash("mass_cancel_sent", str(n))
        self._cancel_at_logon(ctx.key, cl, later)

    def _cancel_target(self, ctx: OmsContext, cl: str, o: Order) -> bool:
        """One order of mass cancel `cl`: sent, or logged and published as not sent. False
        when it was not sent because the venue's FIX session is down (it dropped during the
        mass cancel): the cancel is then due at the next logon (`_cancel_at_logon`)."""
        why = self._cancel_one_of_many(o, ctx, cl)
        if why is None:
            return True
        log.warning("mass cancel %s: order %s not canceled: %s", cl, o.oms_cl_ord_id, why)
        self.sink.cancel_rejected(ctx.key, cl, o.oms_cl_ord_id, f"not sent: {why}",
                                  order=o, response_to="1")
        return (o.transport == "held" or self._by_fallback(o)) or self.venue.is_up()

    def _cancel_at_logon(self, oms_session: str, cl: str, orders: list[Order]) -> None:
        """Mass cancel `cl`'s `orders` that the venue's FIX session dropped before they were
        sent: carried out at the reconcile after its next logon (`_finish_mass_cancels`), as
        the OMS was told they were affected and sends no other request for them. (The journal
        keeps the mass cancel unfinished meanwhile, so a restart does the same.)"""
        if not orders:
            return
        log.warning("mass cancel %s: %d order(s) not sent while the venue session is down; "
                    "canceled after its next logon", cl, len(orders))
        with self.report_lock:
            self._unfinished_mass.append(MassCancel(oms_session, cl, orders))

    def _finish_mass_cancels(self) -> None:
        """Carry out the rest of the mass cancels in `_unfinished_mass`: those the journal
        held unfinished at start (`MassCancel`: the gateway died after journaling the 35=r,
        before sending it, so before any of its cancels, or in the middle of its cancels),
        and one whose 35=r the journal refused and `flush_parked` sent once it took it.

        The orders are the ones it covered when it was accepted (from its record: an order
        placed since was not its to cancel), those still open now (one closed meanwhile is
        reported its own way) with no cancel journaled under its ClOrdID (sent before the
        kill, or by the restart: the venue's resend answers it, or `reconcile` sends it
        again). An order with another cancel on its way (`cancel_in_flight`: its OMS's own, or
        the kill switch's re-sweep after the logon) gets no second one; decided and sent under
        `_unasked_lock`, as the kill switch and operator cancels are, so that neither can
        find the order without a cancel while the other sends one."""
        with self.report_lock:  # `flush_parked` appends under it, from the upkeep thread
            todo, self._unfinished_mass = self._unfinished_mass, []
        for mass in todo:
            cl = mass.cl_ord_id
            ctx = self._oms_by_key.get(mass.oms_session)
            if ctx is None:
                log.error("mass cancel %s: OMS session %s is not configured any more; its "
                          "orders are not canceled", cl, mass.oms_session)
                continue
            sent, already, later = 0, [], []
            for o in mass.orders:
                with self._unasked_lock:
                    if not o.is_open or self.store.mass_cancel_sent(o, cl):
                        continue
                    on_its_way = self.cancel_in_flight(o)
                    if on_its_way is None:
                        if self._cancel_target(ctx, cl, o):
                            sent += 1
                        else:
                            later.append(o)
                if on_its_way is not None:
                    already.append(f"{o.oms_cl_ord_id}: {on_its_way.describe()}")
            self._cancel_at_logon(mass.oms_session, cl, later)
            log.warning("mass cancel %s of %s: %d covered order(s) still open had no cancel "
                        "under it (its 35=r was sent late, or the gateway stopped while "
                        "sending its cancels); canceled now%s", cl, mass.oms_session, sent,
                        f"; not sent again, a cancel on its way: {'; '.join(already)}"
                        if already else "")

    def cancel_unasked(self, order: Order, cl: str, by: str, why: str) -> str | None:
        """Cancel an open order its OMS did not ask to cancel (`by` the kill switch, an
        operator, the OMS session's cancel-on-disconnect), under the request ClOrdID `cl`, as
        one order of a mass cancel. None when the cancel is on its way (or done, for a held
        order); else why it was not sent.

        Announced first (`RoutingSink.cancel_requested`, with `why`), so the event is ahead of
        the venue's answer; the outcome follows as the order's Canceled report, or a cancel
        reject (the venue's refusal, or why it was not sent)."""
        ctx = self._oms_by_key.get(order.oms_session)
        if ctx is None:
            return f"OMS session {order.oms_session} is not in this gateway's configuration"
        if not self._sent_or_settled(order):
            return "its NewOrderSingle is still being sent; cancel it again"
        if not order.is_open:
            return None  # rejected while it was being sent (the kill switch): nothing to cancel
        self.sink.cancel_requested(order, cl, by, why)
        refused = self._cancel_one_of_many(order, ctx, cl)
        if refused is not None:
            self.sink.cancel_rejected(order.oms_session, cl, order.oms_cl_ord_id,
                                      f"not sent: {refused}", order=order, response_to="1")
        return refused

    def cancel_each_unasked(self, orders: Iterable[Order], prefix: str, by: str,
                            why: str) -> tuple[int, list[str], list[str]]:
        """`cancel_unasked` for each of `orders` that has no cancel on its way already
        (`cancel_in_flight`), each under its own request ClOrdID ``<prefix>-<µs>-<n>``; (how
        many were sent, "<ClOrdID>: why not" for those not sent, "<ClOrdID>: <the cancel on
        its way>" for those skipped).

        Why skip: an order's status stays New until the venue answers its cancel, so a second
        kill switch or operator cancel while the venue is slow would send another cancel for
        every order (double the traffic against the venue's rate limits, in an incident), and
        each second one draws a cancel reject once the first has closed the order."""
        sent, not_sent, already = 0, [], []
        for order in orders:
            refused: str | None = None
            with self._unasked_lock:
                on_its_way = self.cancel_in_flight(order)
                if on_its_way is None:
                    cl = f"{prefix}-{time.time_ns() // 1000}-{next(self._unasked_ids)}"
                    refused = self.cancel_unasked(order, cl, by, why)
            if on_its_way is not None:
                log.info("order %s: %s; not sent again (%s)", order.oms_cl_ord_id,
                         on_its_way.describe(), why)
                already.append(f"{order.oms_cl_ord_id}: {on_its_way.describe()}")
            elif refused is None:
                sent += 1
            else:
                not_sent.append(f"{order.oms_cl_ord_id}: {refused}")
        return sent, not_sent, already

    def cancel_in_flight(self, order: Order) -> CancelInFlight | None:
        """The cancel of `order` that is on its way (sent, no answer yet), or None: then a
        new cancel is the only way to get the order canceled.

        The journal's record of unanswered cancels (`OrderStore.unanswered_cancel`) decides,
        so the answer is the same after a restart; on top of it, a cancel counts as on its
        way only while it can still be answered: for at most `cancel_in_flight_s` after it
        was sent (or sent again after a restart), so a cancel whose answer never comes does
        not block every later one; and, over the venue's FIX session, only if sent since the
        session's last logon, unless the venue acknowledged it (PendingCancel): the session
        keeps no copy of what it sent (PersistMessages=N), so one written just before a
        disconnect may never have reached the venue, and the venue's answers to those it did
        get arrive with its resend right after the logon.

        One journaled before a restart and not answered since, which the first `reconcile`
        after this logon sends again (`_send_unanswered_requests`: the venue session is up, the
        order acknowledged), is on its way whatever its age: the kill switch's re-sweep after
        that logon may run before the reconcile (two timers), and a cancel it sent then would
        be the order's second once the reconcile sends the first again."""
        found = self.store.unanswered_cancel(order)
        if found is None:
            return None
        vid, details = found
        sent_ms = max(details.journaled_ms, self._resent_ms.get(vid, 0))
        now_ms = time.time_ns() // 1_000_000
        if vid in self._unanswered and self.venue.is_up() and order.status != state.SENT:
            ref = self.store.venue_ref(vid)
            return CancelInFlight(vid, vid if ref is None else ref.oms_cl_ord_id,
                                  max(now_ms - sent_ms, 0) / 1000)
        if now_ms - sent_ms > self.cancel_in_flight_s * 1000:
            return None
        if (details.transport == "fix" and sent_ms < self.venue.logged_on_ms
                and order.status != state.PENDING_CANCEL and vid not in self._unanswered):
            return None  # (one a restart found unanswered is sent again by `reconcile`)
        ref = self.store.venue_ref(vid)
        return CancelInFlight(vid, vid if ref is None else ref.oms_cl_ord_id,
                              max(now_ms - sent_ms, 0) / 1000)

    def _sent_or_settled(self, order: Order, wait_s: float = 0.5) -> bool:
        """Wait (up to `wait_s`) while an OMS thread is sending the order's NewOrderSingle,
        so a cancel follows it to the venue rather than overtaking it (the venue would refuse
        the cancel as for an unknown order, and the order would rest). The send takes
        microseconds; False only if it did not end in time."""
        deadline = time.monotonic() + wait_s
        while order.venue_cl_ord_id in self._sending:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0005)
        return True

    def _cancel_one_of_many(self, order: Order, ctx: OmsContext, cl: str) -> str | None:
        """Cancel `order` as part of a request about many (kind "mass"): the venue's
        confirmation reaches the OMS under `cl`; a venue refusal is only logged, as the OMS
        asked about no single order. None when sent (or done, for a held order); else why
        not."""
        if self._cancel_held(order, ctx, cl, "mass"):
            return None if order.transport == "none" else (
                "leaving the hold queue right now; cancel it again once it is acknowledged")
        if self._by_fallback(order):
            assert self.fallback is not None
            refused = self.fallback.cancel(order, cl, "mass")
            return None if refused is None else refused[1]
        if not self.venue.is_up():
            return self.venue.not_logged_on()
        if not self._send_cancel(order, ctx, cl, "mass"):
            return f"{self.venue.name} disconnected while sending"
        return None

    # ---- reconciliation ----------------------------------------------------------------------
    def reconcile(self, new_venue_session: bool = False) -> int:
        """Ask the venue about every order we journaled but never heard back about.

        Such an order was journaled and then the gateway died, before or after the NewOrderSingle
        left. The OMS's resend of it is (rightly) not taken as a new order, so the question is
        settled here: the venue's status answer either gives the order's state, or says it never
        arrived, and then it is sent now under the same venue ClOrdID (a venue refuses a second
        open order with one ClOrdID, so this cannot create a duplicate).

        After a logon that began a new venue session (both sides from sequence number 1: the
        daily rollover, or stores reset), every open FIX order is asked about: a report the
        venue sent in the old session but we never got (a fill during the rollover) can no
        longer be resent. An answer that tells nothing new is not forwarded (`_apply_...`).
        """
        pending = [o for o in self.store.open_orders() if o.transport == "fix"
                   and (new_venue_session or o.status == state.SENT)
                   and o.venue_cl_ord_id not in self._sending]
        if pending and new_venue_session:
            log.info("new venue session (sequence numbers reset): asking the venue about %d "
                     "open order(s), as what it reported in the old session cannot be resent",
                     len(pending))
        elif pending:
            log.info("reconciling %d order(s) with no venue report since before the restart",
                     len(pending))
        for o in pending:
            self._ask_status(o, new_venue_session)
        if self._unanswered:
            self._send_unanswered_requests()
        if self._unfinished_mass:
            self._finish_mass_cancels()
        return len(pending)

    def ask_about_fallback_orders(self) -> int:
        """Once the order flow is back on FIX, ask the venue about each open order the REST/WS
        fallback placed: a change the fallback's last poll did not see, or that FIX reports
        under a ClOrdID we never used (a REST cancel's), reaches the OMS as a status report.
        An answer that tells nothing new is not forwarded, and "unknown order" is not taken as
        a reject (the venue's FIX side may not find an order placed over REST by ClOrdID).
        Orders still unacknowledged are the fallback's to look up. Returns how many."""
        pending = [o for o in self.store.open_orders() if o.transport in ("rest", "ws")
                   and o.status != state.SENT]
        for o in pending:
            self._ask_status(o, False)
        if pending:
            log.info("order flow back on FIX: asking the venue about %d order(s) placed over "
                     "the fallback", len(pending))
        return len(pending)

    def _ask_status(self, o: Order, new_venue_session: bool) -> None:
        """Ask the venue about `o`; the answer is settled through `_recon` (see `reconcile`)."""
        self._recon[o.venue_cl_ord_id] = new_venue_session
        self.venue.send(self._status_request(o))

    @staticmethod
    def _status_request(o: Order) -> fix.Message:
        """An OrderStatusRequest for the venue about `o`, by its ClOrdID and OrderID there."""
        out = m.new_message("H")
        out.setField(m.CL_ORD_ID, o.venue_cl_ord_id)
        if o.order_id:
            out.setField(m.ORDER_ID, o.order_id)
        out.setField(m.SYMBOL, o.symbol)
        out.setField(m.SIDE, o.side)
        return out

    def _send_new(self, order: Order) -> bool:
        return self.venue.send(self._order_message("D", order.venue_cl_ord_id, order, None))

    @staticmethod
    def _order_message(msg_type: str, venue_cl_ord_id: str, order: Order,
                       transact_time: str | None, qty: Decimal | None = None,
                       price: Decimal | None = None) -> fix.Message:
        """A NewOrderSingle (D) or, with the order's venue ids as the original, a
        CancelReplaceRequest (G) for the venue; `qty`/`price` override the order's (replace).

        Built as one string (`m.message_from_body`: one parse rather than a dozen setField
        calls, each of which releases the GIL; see `VenueTrading`). Every value here was
        validated or issued by the gateway or the venue, so none holds a SOH."""
        parts = [f"11={venue_cl_ord_id}\x01"]
        if msg_type == "G":
            parts.append(f"41={order.venue_cl_ord_id}\x01")
            if order.order_id:
                parts.append(f"37={order.order_id}\x01")
        px = order.price if price is None else price
        parts.append(f"55={order.symbol}\x0154={order.side}\x01"
                     f"38={order.qty if qty is None else qty:f}\x0140={order.ord_type}\x01")
        if px is not None:
            parts.append(f"44={px:f}\x01")
        parts.append(f"59={order.tif}\x0160={transact_time or m.utc_timestamp()}\x01")
        return m.message_from_body(msg_type, "".join(parts))

    # ---- venue -> OMS ------------------------------------------------------------------------
    def on_venue_message(self, msg: fix.Message, f: Fields) -> None:
        t = f["35"]
        if t == "8":
            self._execution_report(msg, f)
        elif t == "9":
            self._venue_cancel_reject(msg, f)
        elif t == "r":
            pass  # we mass-cancel order by order; the venue's own mass report has no owner
        else:
            raise fix.UnsupportedMessageType()

    def _forward(self, msg: fix.Message, f: Fields, target: ReportTarget) -> None:
        ctx = self._oms_message(msg, f, target)
        if ctx is not None:
            ctx.send(msg)

    def _oms_message(self, msg: fix.Message, f: Fields, target: ReportTarget
                     ) -> OmsContext | None:
        """Turn the venue message into the OMS's (its ClOrdIDs, Account, resend marker) in
        place; returns the OMS session to send it on, or None (logged) when there is none."""
        msg.setField(m.CL_ORD_ID, target.oms_cl_ord_id)
        if target.oms_orig_cl_ord_id is not None:
            msg.setField(m.ORIG_CL_ORD_ID, target.oms_orig_cl_ord_id)
        elif "41" in f:
            msg.removeField(m.ORIG_CL_ORD_ID)
        if target.order.account:
            msg.setField(m.ACCOUNT, target.order.account)
        elif "1" in f:
            msg.removeField(m.ACCOUNT)
        was_resent = f.get("43") == "Y"
        if was_resent or "97" in f or "122" in f:
            m.strip_resend_header(msg)
        if was_resent:
            # The venue resent it after our restart: the OMS may have it already (same ExecID).
            msg.getHeader().setField(m.POSS_RESEND, "Y")
        allowed = _OMS_TAGS.get(f.get("35", "8"))
        if allowed is not None and not allowed.issuperset(f):
            self._strip_unknown(msg, f, allowed)
        ctx = self._oms_by_key.get(target.order.oms_session)
        if ctx is None:
            log.error("report for %s: OMS session %s is not configured any more",
                      target.oms_cl_ord_id, target.order.oms_session)
        return ctx

    def _strip_unknown(self, msg: fix.Message, f: Fields, allowed: frozenset[str]) -> None:
        """Drop the venue's fields the OMS-side dictionary does not allow in this message:
        the venue sessions accept them (see gateway.fix.dictionary), an OMS engine would
        Reject the whole report for one. Logged once per tag."""
        for tag in f.keys() - allowed:
            msg.removeField(int(tag))
            if tag not in self._stripped:
                self._stripped.add(tag)
                log.warning("venue field %s=%r (not in the FIX 4.4 dictionary for 35=%s) is "
                            "not passed on to OMS sessions", tag, f[tag], f.get("35", "8"))

    def on_venue_report(self, fields: Fields, from_transport: str) -> None:
        """A report that did not arrive as a FIX message (the REST fallback builds the fields of
        a venue ExecutionReport): same mapping, dedupe and journal path as a FIX report."""
        msg = m.new_message("8")
        for tag, value in fields.items():
            msg.setField(int(tag), value)
        self._execution_report(msg, fields, from_transport)

    def _execution_report(self, msg: fix.Message, f: Fields, transport: str = "fix") -> None:
        with self.report_lock:
            self._apply_execution_report(msg, f, transport)

    def _apply_execution_report(self, msg: fix.Message, f: Fields, transport: str) -> None:
        venue_cl = f.get("11", "")
        exec_id = f["17"]
        target = self.store.resolve_report(venue_cl, f.get("41"), exec_id)
        if target is None:
            log.warning("venue report %s for unknown ClOrdID %r (OrderID %s) not forwarded",
                        exec_id, venue_cl, f.get("37"))
            return
        if target.duplicate:
            return
        exec_type = f["150"]
        ord_status = f["39"]
        if (exec_type == "4" and transport == "fix" and self.fallback is not None
                and target.kind not in ("cancel", "mass")):
            target = self._answers_fallback_cancel(msg, f, target, exec_id)
            venue_cl = f.get("11", "")
        if (exec_type == "5" and target.kind not in ("replace", "amend")
                and (self.fallback is not None or target.order.transport in ("rest", "ws"))):
            # A replace is answered under the replace request's ClOrdID. One under the order's
            # own is the venue's FIX echo of an in-place REST amend, reported already.
            log.info("order %s: %s replace report %s under the order's own ClOrdID (echo of a "
                     "REST amend); not forwarded", target.oms_cl_ord_id, transport, exec_id)
            return
        fallback_routed = target.order.transport in ("rest", "ws")
        if (self.fallback is not None or fallback_routed) and not _advances(
                target.order, exec_type, ord_status, f.get("14")):
            # With a REST fallback an order is reported by both the REST poller and the FIX
            # session (resending what it stored while we were away), under different ExecIDs.
            # Only the first report of each state goes to the OMS.
            log.info("order %s: %s report %s repeats a state already reported; not forwarded",
                     target.oms_cl_ord_id, transport, exec_id)
            return
        if exec_type == "I" and venue_cl in self._recon:
            new_session = self._recon.pop(venue_cl)
            if ord_status == "8" and target.order.transport in ("rest", "ws"):
                log.info("order %s placed over the fallback: the venue's FIX side does not "
                         "find it (%s); its state stays as the fallback last reported",
                         target.oms_cl_ord_id, f.get("58", "no reason given"))
                return
            if ord_status == "8" and target.order.status == state.SENT:
                refused = self._refused_now(target.order)
                ctx = self._oms_by_key.get(target.order.oms_session)
                if refused is not None:
                    if ctx is not None:
                        self._settle_unsent(ctx, target.order, refused, "in doubt")
                    else:
                        log.warning("order %s not sent: %s", target.oms_cl_ord_id, refused[1])
                    return
                log.warning("order %s never reached the venue before the restart; sending it now",
                            target.oms_cl_ord_id)
                self._send_new(target.order)
                return
            if not _is_news(target.order, ord_status, f.get("14")):
                return  # our own question, and the venue agrees: nothing for the OMS
            if new_session and _fills_since(msg, f, target.order):
                exec_type, exec_id = "F", f["17"]
        elif exec_type == "I" and (_behind(target.order, f.get("14"))
                                   or (ord_status == state.REJECTED and fallback_routed)):
            # A status answer older than reports already applied (a fill that came first over
            # the WS or REST): applied, it would move the record back and make the fill news
            # again when the venue's FIX report of it arrives. Or "unknown order" for one the
            # REST/WS fallback placed, which the venue's FIX session need not know (Kraken
            # scopes FIX to the session's own orders): applied, it would reject a live order.
            # The OMS asked, so it is answered, from the record.
            ctx = self._oms_by_key.get(target.order.oms_session)
            unknown_here = ord_status == state.REJECTED
            log.info("order %s: venue status answer %s %s; answered from the record",
                     target.oms_cl_ord_id, exec_id,
                     f"does not know this {target.order.transport} order over FIX"
                     if unknown_here else
                     f"is behind the record (CumQty {f.get('14')} < {target.order.cum_qty})")
            if ctx is not None:
                er = self._record_report(target.order, target.oms_cl_ord_id)
                er.setField(m.TEXT, "from the gateway's record: "
                            + (f"the venue's FIX session does not know orders placed over "
                               f"{target.order.transport.upper()}" if unknown_here else
                               "the venue's answer was older than reports already received"))
                req_id = self._status_req_id(venue_cl)
                if req_id is not None:
                    er.setField(ORD_STATUS_REQ_ID, req_id)
                ctx.send(er)
            return
        elif exec_type in ("5", "E") and _behind(target.order, f.get("14")):
            log.info("order %s: venue replace report %s is behind the record (CumQty %s < %s); "
                     "forwarded with the record's fills", target.oms_cl_ord_id, exec_id,
                     f.get("14"), target.order.cum_qty)
            _replace_caught_up(msg, f, target.order)
            ord_status = f["39"]
        elif (exec_type == "8" and target.kind == "new"
              and target.order.status not in (state.SENT, state.PENDING_NEW)):
            # A venue cannot reject an order it has acknowledged: this answers a duplicate
            # submission of it (a resend racing the reconciliation), not the order itself.
            log.warning("ignored venue reject %s for order %s, already %s: %s", exec_id,
                        target.oms_cl_ord_id, state.NAMES.get(target.order.status), f.get("58"))
            return
        last_qty, last_px = f.get("32"), f.get("31")
        order = target.order
        self._announce((order.oms_session, order.oms_history[0]))
        was_open = order.is_open
        legal, rec = self.store.apply_report(
            target, venue_cl_ord_id=venue_cl, exec_id=exec_id, exec_type=exec_type,
            ord_status=ord_status, cum_qty=f.get("14"), avg_px=f.get("6"),
            order_id=f.get("37"), qty=f.get("38"), price=f.get("44"))
        if exec_type == "I" and self._status_req_ids:
            req_id = self._status_req_id(venue_cl)
            if req_id is not None:
                msg.setField(ORD_STATUS_REQ_ID, req_id)
        ctx = self._oms_message(msg, f, target)
        # Journal, then send: see the module docstring for why not the other way round.
        forward = msg if ctx is not None else None
        if self._journaled(self._report_write(rec, forward), forward, ctx, "venue report ",
                           ident=exec_id) and ctx is not None:
            self.maybe_crash("after_journal", exec_type)
            ctx.send(msg)
            self.maybe_crash("after_forward", exec_type)
        if was_open and not target.order.is_open and self.gate is not None:
            self.gate.on_order_closed(target.order.oms_session, target.order.symbol)
        if not legal:
            log.warning("order %s: venue moved OrdStatus to %s from a state FIX 4.4 does not "
                        "allow it from; kept the venue's word", target.oms_cl_ord_id, ord_status)
        self.sink.execution(target.order, exec_type, ord_status, exec_id,
                            Decimal(last_qty) if last_qty else None,
                            Decimal(last_px) if last_px else None, transport)

    def _status_req_id(self, venue_cl: str) -> str | None:
        """The OrdStatusReqID of the oldest OMS status request about `venue_cl` the venue has
        not answered yet, taken off as this answer's; None when it gave none (or none is on
        its way). Oldest first, as the venue answers in order: an OMS that asks twice before
        the first answer gets each request's 790 on its own answer. Caller holds
        `report_lock`."""
        asked = self._status_req_ids.get(venue_cl)
        if not asked:
            return None
        # One asked longer ago than a request counts as on its way (`cancel_in_flight_s`) was
        # lost with a connection (the venue session keeps no copy to resend): its answer
        # will not come, and this one is not it.
        horizon = time.monotonic() - self.cancel_in_flight_s
        asked_at, req_id = asked.popleft()
        while asked_at < horizon and asked:
            asked_at, req_id = asked.popleft()
        if not asked:
            del self._status_req_ids[venue_cl]
        return req_id

    def _answers_fallback_cancel(self, msg: fix.Message, f: Fields, target: ReportTarget,
                                 exec_id: str) -> ReportTarget:
        """A FIX Canceled under the order's own ClOrdID while a REST/WS cancel of it is
        pending (one of an order the fallback placed, sent after failback): the venue's FIX
        echo of that cancel, so it answers it. Rewritten in place to the cancel's venue
        ClOrdID, as the fallback's own report would be (`RestFallback._reports`), it reaches
        the OMS as the Canceled of its request; forwarded as is, the OMS would get a Canceled
        under the order's ClOrdID and then, from the next poll, a 35=9 "too late" for its
        cancel. Returns the target to report to (`target` when no cancel is pending)."""
        assert self.fallback is not None
        order = target.order
        vid = self.fallback.claim_cancel(order)
        claimed = None if vid is None else self.store.resolve_report(
            vid, order.venue_cl_ord_id, exec_id)
        if vid is None or claimed is None:
            return target
        log.info("order %s: FIX Canceled %s answers the REST/WS cancel %s", order.oms_cl_ord_id,
                 exec_id, claimed.oms_cl_ord_id)
        msg.setField(m.CL_ORD_ID, vid)
        msg.setField(m.ORIG_CL_ORD_ID, order.venue_cl_ord_id)
        f["11"], f["41"] = vid, order.venue_cl_ord_id
        return claimed

    def _journaled(self, write: Callable[[], None], msg: fix.Message | None,
                   ctx: OmsContext | None, what: str,
                   mass: MassCancel | None = None, *, ident: str = "") -> bool:
        """Journal an answer already applied in memory (`write`: a report's record, with the
        OMS's message when there is one to send, or the record of the poller's 35=9 or a mass
        cancel's 35=r); False when it was parked instead (see `_Parked`): answers parked
        before it are still waiting, or the journal refused it now. Caller holds
        `report_lock`; on True it sends `msg`, on False `flush_parked` does. `what` + `ident`
        name it in the log (apart, so a venue report's path builds no string for it)."""
        if not self._parked:
            try:
                write()
                return True
            except OSError as exc:
                log.error("%s not journaled (%s): parked, not sent to the OMS; sent in order "
                          "with any later ones once the journal takes records again (free "
                          "space in the data directory)", what + ident, exc.strerror or exc)
        self._parked.append(_Parked(write, msg, ctx, mass))
        return False

    def _report_write(self, rec: str, msg: fix.Message | None) -> Callable[[], None]:
        """How a report's record `rec` is journaled: with the message for the OMS, if any."""
        if msg is None:
            return lambda: self.store.commit(rec)
        return lambda: self.store.commit_forward(rec, msg.toString())

    def flush_parked(self) -> int:
        """Journal and send the parked answers, in order, while the journal takes them;
        returns how many are still parked. Called periodically (gateway upkeep). A mass
        cancel's cancels go out once its 35=r has (`_finish_mass_cancels`, outside the report
        lock, as the OMS's request would send them), so the OMS still sees the 35=r first."""
        if not self._parked:
            return 0
        with self.report_lock:
            while self._parked:
                p = self._parked[0]
                try:
                    p.write()
                except OSError:
                    return len(self._parked)
                self._parked.popleft()
                if p.msg is not None and p.ctx is not None:
                    p.ctx.send(p.msg)
                if p.mass is not None:
                    self._unfinished_mass.append(p.mass)
            log.warning("parked answers journaled and sent to the OMS: the journal takes "
                        "records again")
        if self._unfinished_mass:
            self._finish_mass_cancels()
        return 0

    def maybe_crash(self, point: str, exec_type: str) -> None:
        """TEST-ONLY (see CRASH_ENV): die here as a kill -9 would, journal and stores as is."""
        if self._crash_at is not None and self._crash_at == (point, exec_type):
            log.warning("TEST-ONLY crash point %s:%s reached: exiting", point, exec_type)
            for h in logging.getLogger().handlers:
                h.flush()
            os._exit(137)

    # ---- restart: an answer journaled but maybe never forwarded ------------------------------
    def unforwarded_report(self, store_dir: Path) -> UnforwardedReport | None:
        """The journal's last answer for an OMS (a report, the poller's 35=9, a mass cancel's
        35=r: see `ForwardedReport`), if the OMS session's QuickFIX store shows it was never
        sent (the gateway died between journaling and sending it); else None.

        Call it after the journal is replayed and the OMS sessions are registered, but before
        QuickFIX opens the OMS stores (it may reset one for a new session period, and the
        question is what the store held at the crash). Only the last such record can be in
        doubt: answers are journaled and sent one at a time under `report_lock`."""
        last = self.store.last_forward
        if last is None:
            return None
        ctx = self._oms_by_key.get(last.oms_session)
        if ctx is None:
            log.error("journaled report %s: OMS session %s is not configured any more",
                      last.exec_id, last.oms_session)
            return None
        sid = ctx.session_id
        sent = SentStore.load(store_prefix(
            store_dir, sid.getBeginString().getValue(), sid.getSenderCompID().getValue(),
            sid.getTargetCompID().getValue(), sid.getSessionQualifier()))
        if sent is None:
            return UnforwardedReport(ctx, last, poss_resend=True)
        journaled_s = last.epoch_ms // 1000
        if sent.created_epoch_s is not None and journaled_s < sent.created_epoch_s:
            # Journaled before this store began (a reset since): a gateway ran after it and
            # settled it then; the store no longer shows messages from before the reset.
            return None
        if sent.sent_messages(last.msg_type, last.id_tag, [last.exec_id]):
            return None  # sent (the OMS has it, or gets it through its ResendRequest)
        same_second = sent.created_epoch_s is not None and journaled_s == sent.created_epoch_s
        return UnforwardedReport(ctx, last, poss_resend=same_second)

    def find_unanswered_requests(self) -> int:
        """Find the cancels and replaces journaled for the venue's FIX session, on orders still
        open there, that have no answer in the journal; the first `reconcile` sends each again
        if it is still unanswered then. Returns how many. Call it once, after the replay. The
        mass cancels the journal holds unfinished are taken too (`MassCancel`): the first
        `reconcile` carries out the rest (`_finish_mass_cancels`).

        Why: the gateway may have died between journaling a request and sending it. The venue
        cannot answer what it never got, and the OMS's resend of the request (PossDupFlag) is
        taken as the one already journaled, so the OMS would wait for ever. The venue session
        keeps no copy of what it sent (PersistMessages=N), so whether the request left cannot
        be looked up; but an answer the venue did send reaches us by its resend after the
        logon, before `reconcile` runs. What is unanswered then goes out again under the venue
        ClOrdID it was journaled with, as a new order left in doubt does: a request the venue
        did get is refused as a duplicate ClOrdID (or its order is found closed), not done
        twice, and that refusal reaches the OMS like any other."""
        journaled = self.store.unanswered_fix_requests()
        found: dict[str, RequestDetails] = {}
        for order in self.store.open_orders():
            if order.transport == "fix":
                for vid in order.venue_ids[1:]:
                    req = journaled.get(vid)
                    if req is not None and vid != order.venue_cl_ord_id:
                        found[vid] = req
        self._unanswered = dict(sorted(found.items(), key=lambda kv: kv[1].journaled_ms))
        if found:
            log.warning("%d cancel/replace request(s) journaled before the restart have no "
                        "answer: each is sent again once the venue session is up, unless its "
                        "answer comes first (%s)", len(found), ", ".join(self._unanswered))
        # The same for OMS mass cancels stopped before their last cancel (`MassCancel`).
        mass = self.store.unfinished_mass_cancels()
        if mass:
            self._unfinished_mass.extend(mass)
            log.warning("%d mass cancel(s) journaled before the restart have covered orders "
                        "still open with no cancel sent: canceled once the venue session is "
                        "up (%s)", len(mass), ", ".join(
                            f"{x.cl_ord_id}: {len(x.orders)} order(s)" for x in mass))
        return len(found)

    def _send_unanswered_requests(self) -> None:
        """Send what `find_unanswered_requests` found, once, if still unanswered and its order
        still open on FIX.

        Each is decided and sent under `_unasked_lock`, its mark as sent again (`_resent_ms`)
        set before the lock is let go: the kill switch's re-sweep after the same logon runs on
        a timer of its own, and must find such a cancel either still to be sent again or sent
        again (on its way either way, `cancel_in_flight`), never taken out of `_unanswered`
        and not marked yet, which would send the order a second cancel. A cancel is not sent
        again when a later cancel of its order is on its way (the kill switch's, sent over the
        REST fallback before this logon): the order needs one."""
        for vid in list(self._unanswered):
            with self._unasked_lock:
                self._send_unanswered(vid)

    def _send_unanswered(self, vid: str) -> None:
        """`_send_unanswered_requests` for request `vid` (caller holds `_unasked_lock`)."""
        req = self._unanswered.pop(vid, None)  # or a venue refusal took it just now
        if req is None:
            return
        ref = self.store.venue_ref(vid)
        order = None if ref is None else self.store.orders.get(ref.order_key)
        if (ref is None or order is None or not order.is_open or order.transport != "fix"
                or order.venue_cl_ord_id == vid or order.status == state.SENT):
            # Answered by the venue's resend, or settled another way: an order the venue
            # never acknowledged is asked about above, and a cancel asked for it meanwhile
            # is settled with that answer (sending it too would only draw a refusal).
            return
        if ref.kind != "replace":
            later = self.cancel_in_flight(order)
            if later is not None and later.venue_cl_ord_id != vid:
                log.warning("request %s (%s of %s) journaled before the restart and never "
                            "answered: not sent again, the order has a later %s", vid,
                            ref.kind, order.oms_cl_ord_id, later.describe())
                return
        out = (self._order_message("G", vid, order, None, req.qty, req.price)
               if ref.kind == "replace" else self._cancel_message(order, vid))
        if self.venue.send(out):
            if ref.kind != "replace":
                self._resent_ms[vid] = time.time_ns() // 1_000_000  # see cancel_in_flight
            log.warning("request %s (%s of %s) journaled before the restart and never "
                        "answered: sent to the venue again", vid, ref.kind, order.oms_cl_ord_id)
        else:
            log.error("request %s journaled before the restart could not be sent again "
                      "(venue session down); the OMS must send it again", vid)

    def redeliver(self, pending: UnforwardedReport) -> None:
        """Send an answer found by `unforwarded_report`, exactly as it was to be sent. Call it
        once the OMS session exists (QuickFIX stores it for the OMS's logon) and before any
        venue report can arrive, so the OMS gets reports in the order they happened. An
        accepted mass cancel's 35=r left none of its cancels sent: the journal's record of the
        orders it covered (`MassCancel`) has them canceled at the first `reconcile`
        (`_finish_mass_cancels`). A record that does not name them (written before it did)
        has the orders in its scope (Symbol, Side, from the 35=r) taken now instead, before
        the OMS can place more."""
        r = pending.report
        dd = fix.DataDictionary(str(data_dictionary_path()))
        msg = fix.Message(r.message, dd, False)  # with the dictionary: groups stay groups
        if pending.poss_resend:
            msg.getHeader().setField(m.POSS_RESEND, "Y")
        kind = {"8": "report", "9": "cancel reject", "r": "mass cancel report"}.get(
            r.msg_type, f"35={r.msg_type}")
        log.warning("%s %s was journaled but never sent to %s before the restart; sending "
                    "it now%s", kind, r.exec_id, r.oms_session,
                    " (PossResend: the OMS store cannot tell)" if pending.poss_resend else "")
        pending.ctx.send(msg)
        cl = m.get(msg, m.CL_ORD_ID) or ""
        if (r.msg_type == "r" and r.covered is None
                and m.get(msg, m.MASS_CANCEL_RESPONSE) not in (None, "0")
                and not any((x.oms_session, x.cl_ord_id) == (r.oms_session, cl)
                            for x in self._unfinished_mass)):  # (a snapshot's M has it)
            covered = self._mass_targets(r.oms_session,
                                         m.get(msg, m.MASS_CANCEL_REQUEST_TYPE) or "",
                                         m.get(msg, m.SYMBOL), m.get(msg, m.SIDE))
            self._unfinished_mass.append(MassCancel(r.oms_session, cl, covered))

    def _venue_cancel_reject(self, msg: fix.Message, f: Fields) -> None:
        venue_cl = f.get("11", "")
        target = self.store.resolve_report(venue_cl, f.get("41"), None)
        if target is None:
            log.warning("venue cancel reject for unknown ClOrdID %r not forwarded", venue_cl)
            return
        self.store.mark_answered(venue_cl)  # not to be sent again after a restart
        self._unanswered.pop(venue_cl, None)
        orig = target.oms_orig_cl_ord_id or ""
        if target.kind == "mass":
            # The OMS asked about many orders (a mass cancel) or nothing (the kill switch, an
            # operator): a per-order refusal is not its message. Ops and the event stream get
            # it, naming the order refused (whatever OrigClOrdID the venue echoed).
            orig = target.order.oms_cl_ord_id
            log.warning("venue refused to cancel order %s of %s (request %s): %s", orig,
                        target.order.oms_session, target.oms_cl_ord_id,
                        f.get("58", "no reason given"))
        else:
            self._forward(msg, f, target)
        self.sink.cancel_rejected(target.order.oms_session, target.oms_cl_ord_id, orig,
                                  f.get("58", ""), order=target.order,
                                  response_to=f.get("434"), reason=f.get("102"),
                                  ord_status=f.get("39"), order_id=f.get("37"))


class OmsHandler(BaseHandler):
    def __init__(self, router: Router) -> None:
        self.router = router

    def on_logon(self, session_id: fix.SessionID) -> None:
        self.router.on_oms_logon(session_id)

    def on_logout(self, session_id: fix.SessionID) -> None:
        self.router.on_oms_logout(session_id)

    def on_app_message(self, msg: fix.Message, session_id: fix.SessionID, f: Fields) -> None:
        self.router.on_oms_message(msg, session_id, f)


class VenueHandler(BaseHandler):
    """Both venue initiators (trading and market data) share this handler."""

    def __init__(self, router: Router, credentials: KrakenCredentials | None,
                 cancel_on_disconnect: bool) -> None:
        self.router = router
        self.credentials = credentials
        self.cancel_on_disconnect = cancel_on_disconnect
        self.trading_target = "KRAKEN-TRD"
        self.sender_comp_id = "FIXGW"
        self.md_handler: BaseHandler | None = None

    def _is_trading(self, session_id: fix.SessionID) -> bool:
        return bool(session_id.getTargetCompID().getValue() == self.trading_target)

    def on_admin_out(self, msg: fix.Message, session_id: fix.SessionID) -> None:
        if m.msg_type(msg) == "A" and self._is_trading(session_id) and self.credentials:
            add_trading_logon_fields(msg, self.credentials, self.cancel_on_disconnect)

    def on_logon(self, session_id: fix.SessionID) -> None:
        if self._is_trading(session_id):
            self.router.venue.on_logon(session_id)
            session = self.router.venue.session
            # The venue's Logon was its MsgSeqNum 1 and the one we expected: a new session.
            new_session = session is not None and session.getExpectedTargetNum() == 2
            # After the logon exchange settles (the venue's resend of anything we missed, and
            # ours of anything it missed), ask about orders left in doubt by a restart.
            t = threading.Timer(self.router.reconcile_delay_s, self.router.reconcile,
                                args=(new_session,))
            t.daemon = True
            t.start()
            if self.router.fallback is not None:
                self.router.fallback.kick()  # held orders may go now
        elif self.md_handler is not None:
            self.md_handler.on_logon(session_id)

    def on_logout(self, session_id: fix.SessionID) -> None:
        if self._is_trading(session_id):
            self.router.venue.on_logout()  # a flag only: see the lock rule in fix.application
        elif self.md_handler is not None:
            self.md_handler.on_logout(session_id)

    def on_app_message(self, msg: fix.Message, session_id: fix.SessionID, f: Fields) -> None:
        if f.get("56") == self.sender_comp_id and f.get("49") == self.trading_target:
            self.router.on_venue_message(msg, f)
        elif self.md_handler is not None:
            self.md_handler.on_app_message(msg, session_id, f)
