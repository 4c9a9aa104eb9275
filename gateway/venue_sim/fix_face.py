"""The simulator's FIX face: Kraken-dialect trading and market-data acceptor sessions over one
matching engine.

Reports are made by the engine's listener, i.e. under the engine lock, in engine order, and
queued on the client session's outbox (`fix_outbox`), whose own thread sends them. Every other
message to a session (status answers, mass-cancel reports, market data, instrument lists) goes
through the same outbox, so a fill by the synthetic flow and a cancel by the client still reach
the client in the order they happened, while a client that stops reading delays only itself:
no socket write happens under the engine's lock (nor the market-data publisher's), and a
session that falls too far behind is disconnected.

Orders are owned by the client's account, named by the client's CompID, so a gateway that
restarts (or later fails over to REST/WS) finds its orders again; unless its trading Logon
asked otherwise: Kraken's 8674 CancelOrdersOnDisconnect is 0 (cancel) by default, and then the
orders that session placed are canceled when it drops (its other orders, REST's and WS's, stay).
A single cancel (35=F) or cancel/replace (35=G) reaches only the orders placed on the same FIX
session, as at Kraken ("Cancel scope", kraken-api.md): one placed over REST or WS is refused as
an unknown order (35=9, CxlRejReason 1), so a client must cancel it over REST/WS or with a mass
cancel (35=q), which covers every order of the account. Status requests (35=H) are not scoped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from decimal import Decimal

import quickfix as fix

from gateway.fix import messages as m
from gateway.fix.application import BaseHandler
from gateway.fix.kraken_logon import KrakenCredentials, verify_trading_logon
from gateway.fix.messages import CANCEL_ON_DISCONNECT, USERNAME, Fields, get
from gateway.venue_sim import engine as e
from gateway.venue_sim.accounts import ApiAccount
from gateway.venue_sim.fix_outbox import DEFAULT_LIMIT, Outbox, Outboxes
from gateway.venue_sim.md_publisher import MdPublisher, Subscription

log = logging.getLogger("fixgw.venue_sim")

TRADING_COMP_ID = "KRAKEN-TRD"
MD_COMP_ID = "KRAKEN-MD"

# InstrumentList (35=y) tags; see fix_specs/README.md for Kraken's custom ones.
SECURITY_REQ_ID = 320
SECURITY_RESPONSE_ID = 322
SECURITY_REQUEST_RESULT = 560
MIN_TRADE_VOL = 562
MIN_PRICE_INCREMENT = 969
PRICE_PRECISION = 2349
QTY_PRECISION = 5010
QTY_MIN = 5011
TICK_SIZE = 5022

_ORD_TYPES = {"1": e.OrdType.MARKET, "2": e.OrdType.LIMIT}
_TIFS = {"1": e.TimeInForce.GTC, "3": e.TimeInForce.IOC, "4": e.TimeInForce.FOK}


def _session(client: str) -> str:
    """The engine's name for a client's FIX trading session: the origin of the orders it
    places, and the cancel scope of its single cancels and cancel/replaces (see the module
    docstring). One trading session per client CompID, kept across its reconnects."""
    return f"FIX {client}"


def _s(d: Decimal | None) -> str:
    return "0" if d is None else m.decimal_field(d)


class SimFixFace(BaseHandler):
    def __init__(self, engine: e.MatchingEngine, credentials: KrakenCredentials | None,
                 accounts: Sequence[ApiAccount] = (), *,
                 outbox_limit: int = DEFAULT_LIMIT, clients: Sequence[str] = ()) -> None:
        self.engine = engine
        # The client CompIDs the acceptor has trading sessions for (the simulator's --client
        # list and the accounts' owners): their reports are kept for a resend even before
        # their first logon, as a venue does for a session it knows.
        self._clients = frozenset(clients)
        self.credentials = credentials
        # `--accounts` keys: each logs on as its own owner's CompID only.
        self._accounts = {a.api_key: a for a in accounts}
        self.outboxes = Outboxes(outbox_limit)
        self._roles_by_ptr: dict[int, tuple[str, str]] = {}
        self._trading: dict[str, Outbox] = {}   # owner (client CompID) -> its session's outbox
        # Kraken's 8674 CancelOrdersOnDisconnect, per client, from its last trading Logon
        # (0 or absent: the venue cancels the session's orders when the session drops), and
        # the orders each trading session placed that may still be open. `_cod_lock` is only
        # ever held for a dict or set operation (the engine listener takes it under the
        # engine lock; nothing takes the engine lock under it).
        self._cancel_on_disconnect: dict[str, bool] = {}
        self._session_orders: dict[str, set[str]] = {}
        self._cod_lock = threading.Lock()
        self.md = MdPublisher(engine)
        # ExecIDs of the reports that are not the engine's (rejects, status answers): unique
        # across sequence resets and restarts, as a venue's are (a receiver dedupes on them).
        self._reject_ids = m.ExecIdSource("R")
        self._status_ids = m.ExecIdSource("S")
        engine.add_listener(self._on_engine_events)

    def stop(self) -> None:
        """Stop taking engine events and send what is queued (before the acceptor stops)."""
        self.engine.remove_listener(self._on_engine_events)
        self.outboxes.stop()

    def _outbox(self, session_id: fix.SessionID) -> Outbox | None:
        me, client = self._roles(session_id)
        if me == MD_COMP_ID:
            # A market-data client cut off for lagging loses its subscriptions with the queue.
            return self.outboxes.get(session_id, droppable=True,
                                     on_cut=lambda: self.md.client_gone(client))
        return self.outboxes.get(session_id)

    def _send(self, msg: fix.Message, session_id: fix.SessionID) -> None:
        box = self._outbox(session_id)
        if box is not None:
            box.put(msg)

    # ---- session events --------------------------------------------------------------------
    def _roles(self, session_id: fix.SessionID) -> tuple[str, str]:
        """(our CompID, the client's), by the address of QuickFIX's SessionID (sessions live
        as long as the acceptor): four binding calls saved per message."""
        ptr = int(session_id.this)
        roles = self._roles_by_ptr.get(ptr)
        if roles is None:
            roles = self._roles_by_ptr[ptr] = (session_id.getSenderCompID().getValue(),
                                               session_id.getTargetCompID().getValue())
        return roles

    def on_admin_in(self, msg: fix.Message, session_id: fix.SessionID) -> None:
        me, client = self._roles(session_id)
        if m.msg_type(msg) == "A" and me == TRADING_COMP_ID:
            problem = self._logon_problem(msg, client)
            if problem is not None:
                log.warning("refused trading logon from %s: %s", client, problem)
                raise fix.RejectLogon(problem)
            self._cancel_on_disconnect[client] = get(msg, CANCEL_ON_DISCONNECT) != "1"

    def _logon_problem(self, msg: fix.Message, client: str) -> str | None:
        """An `--accounts` key is checked against its own secret and owner; any other against
        the simulator's key (none configured: any logon passes, for hand testing)."""
        key = get(msg, USERNAME)
        account = self._accounts.get(key) if key is not None else None
        if account is not None:
            if account.owner != client:
                return f"EAPI:Invalid key (not the key of CompID {client})"
            return verify_trading_logon(msg, KrakenCredentials(account.api_key,
                                                               account.api_secret))
        if self.credentials is None:
            return None
        return verify_trading_logon(msg, self.credentials)

    def on_logon(self, session_id: fix.SessionID) -> None:
        me, client = self._roles(session_id)
        if me == TRADING_COMP_ID:
            box = self._outbox(session_id)
            if box is not None:
                self._trading[client] = box

    def on_logout(self, session_id: fix.SessionID) -> None:
        me, client = self._roles(session_id)
        if me == MD_COMP_ID:
            self.md.client_gone(client)
        elif me == TRADING_COMP_ID:
            # The session's orders are the ones placed since its logon: a later session with
            # 8674=0 does not cancel what an earlier one with 8674=1 left resting.
            with self._cod_lock:
                placed = self._session_orders.pop(client, set())
            if placed and self._cancel_on_disconnect.get(client, True):
                # Not here: QuickFIX calls onLogout holding the session's mutex, and the
                # engine's lock is not to be waited for under it (gateway.fix.application).
                # The reports go to the session's store, for the resend at its next logon.
                threading.Thread(target=self._cancel_session_orders, args=(client, placed),
                                 name=f"venue-sim-cod-{client}", daemon=True).start()

    def _cancel_session_orders(self, client: str, placed: set[str]) -> None:
        events = self.engine.cancel_orders(client, placed)
        n = sum(1 for ev in events if isinstance(ev, e.Canceled))
        log.info("%s's trading session dropped with CancelOrdersOnDisconnect: %d open order(s) "
                 "canceled", client, n)

    def on_app_message(self, msg: fix.Message, session_id: fix.SessionID,
                       fields: Fields) -> None:
        me, client = self._roles(session_id)
        t = fields["35"]
        if me == TRADING_COMP_ID:
            if t == "D":
                self._new_order(msg, fields, client)
            elif t == "F":
                # Under a ClOrdID no live order has, naming the order's Side and Symbol.
                self.engine.cancel(client, msg.getField(m.CL_ORD_ID), get(msg, m.ORIG_CL_ORD_ID),
                                   get(msg, m.ORDER_ID), session=_session(client),
                                   require_new_cl_ord_id=True, side=get(msg, m.SIDE),
                                   symbol=get(msg, m.SYMBOL))
            elif t == "G":
                self._replace(msg, client)
            elif t == "H":
                self._status(msg, client, session_id)
            elif t == "q":
                self._mass_cancel(msg, client, session_id)
            elif t == "x":
                self._instrument_list(msg, session_id)
            else:
                raise fix.UnsupportedMessageType()
        elif t == "V":
            self._md_request(msg, client, session_id)
        elif t == "x":
            self._instrument_list(msg, session_id)
        else:
            raise fix.UnsupportedMessageType()

    # ---- trading ---------------------------------------------------------------------------
    def _new_order(self, msg: fix.Message, f: Fields, owner: str) -> None:
        """Read from the parsed fields (`split_fields`), not through the binding: a dozen calls
        saved per order, each of which gives up the GIL. QuickFIX has checked the required
        ones against the dictionary."""
        ord_type = _ORD_TYPES.get(f["40"])
        tif = _TIFS.get(f.get("59") or "1")
        side = f["54"]
        if ord_type is None or tif is None or side not in ("1", "2"):
            self._send_reject(owner, msg, "EGeneral:Invalid arguments:unsupported order type, "
                                          "side or time in force")
            return
        price = f.get("44")
        events = self.engine.submit(owner, f["11"], f["55"], e.Side(side), Decimal(f["38"]),
                                    Decimal(price) if price is not None else None, ord_type,
                                    tif, origin=_session(owner))
        first = events[0]
        if isinstance(first, e.Accepted):
            order_id, last = first.order.order_id, first.order
            for ev in events:
                if isinstance(ev, (e.Filled, e.Canceled)) and ev.order.order_id == order_id:
                    last = ev.order
            if last.is_open:  # closed later: the listener drops it from the session's orders
                with self._cod_lock:
                    self._session_orders.setdefault(owner, set()).add(order_id)

    def _send_reject(self, owner: str, msg: fix.Message, text: str) -> None:
        self._to_owner(owner, m.message_from_fields("8", {
            m.ORDER_ID: "NONE", m.CL_ORD_ID: msg.getField(m.CL_ORD_ID),
            m.EXEC_ID: self._reject_ids.next(), m.EXEC_TYPE: "8", m.ORD_STATUS: "8",
            m.SYMBOL: msg.getField(m.SYMBOL), m.SIDE: msg.getField(m.SIDE),
            m.LEAVES_QTY: "0", m.CUM_QTY: "0", m.AVG_PX: "0", m.ORD_REJ_REASON: "11",
            m.TEXT: text}))

    def _replace(self, msg: fix.Message, owner: str) -> None:
        """Only OrderQty and Price can change, under a new ClOrdID: the engine refuses (35=9)
        a request whose Side, Symbol, OrdType or TimeInForce is not the order's, or whose
        ClOrdID the order already had."""
        qty, price = get(msg, m.ORDER_QTY), get(msg, m.PRICE)
        self.engine.replace(owner, msg.getField(m.CL_ORD_ID), get(msg, m.ORIG_CL_ORD_ID),
                            Decimal(qty) if qty else None, Decimal(price) if price else None,
                            order_id=get(msg, m.ORDER_ID), session=_session(owner),
                            require_new_cl_ord_id=True, side=get(msg, m.SIDE),
                            symbol=get(msg, m.SYMBOL), ord_type=get(msg, m.ORD_TYPE),
                            tif=get(msg, m.TIME_IN_FORCE))

    def _status(self, msg: fix.Message, owner: str, session_id: fix.SessionID) -> None:
        """Answer with the order as it stands, queued under the engine lock with the snapshot
        (the engine's ``then``): queued after the lock is released, a fill queued meanwhile
        overtook it and the client saw 150=F, then a stale 150=I (even New after Canceled)."""
        cl, order_id = get(msg, m.CL_ORD_ID), get(msg, m.ORDER_ID)
        unknown = {m.ORDER_ID: order_id or "NONE", m.CL_ORD_ID: cl or "NONE", m.EXEC_TYPE: "I",
                   m.ORD_STATUS: "8", m.SYMBOL: get(msg, m.SYMBOL) or "[N/A]",
                   m.SIDE: get(msg, m.SIDE) or "1", m.LEAVES_QTY: "0", m.CUM_QTY: "0",
                   m.AVG_PX: "0", m.TEXT: e.TEXT_UNKNOWN_ORDER}

        def answer(snap: e.OrderSnapshot | None) -> None:
            if snap is None:
                f = {**unknown, m.EXEC_ID: self._status_ids.next()}
            else:
                f = self._report(snap, "I", self._status_ids.next())
            self._send(m.message_from_fields("8", f), session_id)

        self.engine.order_status(owner, cl, order_id, then=answer)

    def _mass_cancel(self, msg: fix.Message, owner: str, session_id: fix.SessionID) -> None:
        req_type = msg.getField(m.MASS_CANCEL_REQUEST_TYPE)
        cl, report_id = msg.getField(m.CL_ORD_ID), f"M{msg.getHeader().getField(m.MSG_SEQ_NUM)}"
        symbol = get(msg, m.SYMBOL) if req_type == "1" else None
        side = get(msg, m.SIDE)
        refused = None
        if req_type not in ("1", "7"):
            refused = ("0", f"MassCancelRequestType {req_type} not supported: 1 (by Symbol) or "
                            "7 (all orders)")  # 532=0: mass cancel not supported
        elif req_type == "1" and not symbol:
            # By Symbol without one: canceling everything would be the widest reading of a
            # malformed request. 532=1: invalid or unknown security.
            refused = ("1", "MassCancelRequestType 1 (by Symbol) needs Symbol (55)")
        elif side and side not in (s.value for s in e.Side):
            refused = ("99", f"Side {side} not supported: 1 (Buy) or 2 (Sell)")
        rep = m.mass_cancel_report(cl, req_type, report_id, refused)
        if refused is not None:  # nothing canceled: a refusal, never a wider cancel
            rep.setField(m.TOTAL_AFFECTED_ORDERS, "0")
            self._send(rep, session_id)
            return
        events = self.engine.mass_cancel(owner, symbol, e.Side(side) if side else None, cl)
        rep.setField(m.MASS_CANCEL_RESPONSE, req_type)
        rep.setField(m.TOTAL_AFFECTED_ORDERS,
                     str(sum(1 for ev in events if isinstance(ev, e.Canceled))))
        self._send(rep, session_id)  # behind the Canceled reports, queued during the call

    @staticmethod
    def _report(o: e.OrderSnapshot, exec_type: str, exec_id: str) -> dict[int, str]:
        """An ExecutionReport's fields for the order as it stands (a dict, so a caller can add
        or override some before `m.message_from_fields` builds it in one parse)."""
        f = {m.ORDER_ID: o.order_id, m.CL_ORD_ID: o.cl_ord_id, m.EXEC_ID: exec_id,
             m.EXEC_TYPE: exec_type, m.ORD_STATUS: o.status.value, m.SYMBOL: o.symbol,
             m.SIDE: o.side.value, m.ORDER_QTY: _s(o.qty), m.ORD_TYPE: o.ord_type.value}
        if o.price is not None:
            f[m.PRICE] = _s(o.price)
        f[m.TIME_IN_FORCE] = o.tif.value
        f[m.LEAVES_QTY] = _s(o.leaves_qty)
        f[m.CUM_QTY] = _s(o.cum_qty)
        f[m.AVG_PX] = _s(o.avg_px)
        f[m.TRANSACT_TIME] = m.utc_timestamp()
        return f

    def _to_owner(self, owner: str, msg: fix.Message) -> None:
        box = self._trading.get(owner)
        if box is None and owner in self._clients:
            # Not logged on since the simulator started (an order placed over REST, or left
            # from before a restart): QuickFIX stores what is sent to a configured session
            # that is not logged on, and resends it on the client's ResendRequest. Dropping
            # it here lost reports a later drop would have kept.
            box = self.outboxes.get(fix.SessionID("FIX.4.4", TRADING_COMP_ID, owner))
            if box is not None:
                self._trading[owner] = box
        if box is not None:
            # Sent (or stored for resend) even if the client is disconnected right now: it will
            # ask for it by ResendRequest when it logs on again, as with a real venue.
            box.put(msg)

    def _on_engine_events(self, events: tuple[e.Event, ...]) -> None:
        book_changes: list[e.BookChanged | e.TradePrinted] = []
        session_orders = self._session_orders
        for ev in events:
            if isinstance(ev, (e.BookChanged, e.TradePrinted)):
                book_changes.append(ev)
                continue
            if (session_orders and isinstance(ev, (e.Filled, e.Canceled, e.Replaced))
                    and not ev.order.is_open and ev.order.owner in session_orders):
                with self._cod_lock:
                    placed = session_orders.get(ev.order.owner)
                    if placed is not None:
                        placed.discard(ev.order.order_id)
            if isinstance(ev, e.Accepted):
                self._to_owner(ev.order.owner, m.message_from_fields(
                    "8", self._report(ev.order, "0", ev.exec_id)))
            elif isinstance(ev, e.Filled):
                f = self._report(ev.order, "F", ev.exec_id)
                f[m.LAST_QTY] = _s(ev.last_qty)
                f[m.LAST_PX] = _s(ev.last_px)
                self._to_owner(ev.order.owner, m.message_from_fields("8", f))
            elif isinstance(ev, e.Canceled):
                f = self._report(ev.order, "4", ev.exec_id)
                # A REST cancel has no ClOrdID of its own: reported under the order's, as an
                # unsolicited cancel, not under the one the REST face made up for the engine.
                req = ev.request_cl_ord_id
                if req is not None and not e.is_made_up_cl_ord_id(req):
                    # A 35=F's ClOrdID is the order's latest now (the engine chained it), so
                    # the one before it is the OrigClOrdID; a mass cancel's is not chained.
                    o = ev.order
                    f[m.CL_ORD_ID] = req
                    f[m.ORIG_CL_ORD_ID] = (o.orig_cl_ord_id or req) if o.cl_ord_id == req \
                        else o.cl_ord_id
                f[m.TEXT] = ev.text
                self._to_owner(ev.order.owner, m.message_from_fields("8", f))
            elif isinstance(ev, e.Replaced):
                f = self._report(ev.order, "5", ev.exec_id)
                f[m.ORIG_CL_ORD_ID] = ev.orig_cl_ord_id
                self._to_owner(ev.order.owner, m.message_from_fields("8", f))
            elif isinstance(ev, e.Rejected):
                self._to_owner(ev.owner, m.message_from_fields("8", {
                    m.ORDER_ID: "NONE", m.CL_ORD_ID: ev.cl_ord_id, m.EXEC_ID: ev.exec_id,
                    m.EXEC_TYPE: "8", m.ORD_STATUS: "8", m.SYMBOL: ev.symbol,
                    m.SIDE: ev.side.value, m.ORDER_QTY: _s(ev.qty), m.LEAVES_QTY: "0",
                    m.CUM_QTY: "0", m.AVG_PX: "0", m.ORD_REJ_REASON: str(int(ev.reason_code)),
                    m.TEXT: ev.text}))
            elif isinstance(ev, e.CancelRejected):
                self._to_owner(ev.owner, m.message_from_fields("9", {
                    m.ORDER_ID: ev.order_id or "NONE", m.CL_ORD_ID: ev.cl_ord_id,
                    m.ORIG_CL_ORD_ID: ev.orig_cl_ord_id or "NONE",
                    m.ORD_STATUS: ev.ord_status.value,
                    m.CXL_REJ_RESPONSE_TO: ev.response_to.value,
                    m.CXL_REJ_REASON: str(int(ev.reason_code)), m.TEXT: ev.reason}))
        if book_changes:
            self.md.on_events(book_changes)

    # ---- market data -------------------------------------------------------------------------
    def _md_request(self, msg: fix.Message, client: str, session_id: fix.SessionID) -> None:
        req_id = msg.getField(m.MD_REQ_ID)
        sub_type = msg.getField(m.SUBSCRIPTION_REQUEST_TYPE)
        if sub_type == "2":
            self.md.unsubscribe(client, req_id)
            return
        depth = int(get(msg, m.MARKET_DEPTH) or "10") or 1000
        symbols: list[str] = []
        group = fix.Group(m.NO_RELATED_SYM, m.SYMBOL)
        for i in range(1, int(get(msg, m.NO_RELATED_SYM) or "0") + 1):
            msg.getGroup(i, group)
            symbols.append(group.getField(m.SYMBOL))
        unknown = [s for s in symbols if s not in self.engine.instruments]
        if unknown or not symbols:
            rej = m.new_message("Y")
            rej.setField(m.MD_REQ_ID, req_id)
            rej.setField(m.MD_REQ_REJ_REASON, "0")
            rej.setField(m.TEXT, f"EQuery:Unknown asset pair {','.join(unknown)}" if unknown
                         else "no symbols requested")
            self._send(rej, session_id)
            return
        box = self._outbox(session_id)
        if box is None:
            return
        sub = Subscription(req_id, set(symbols), depth, box)
        if sub_type == "1":
            self.md.subscribe(client, sub)  # queues the snapshots, ahead of any incremental
        else:
            self.md.snapshot_once(sub)

    def _instrument_list(self, msg: fix.Message, session_id: fix.SessionID) -> None:
        y = m.new_message("y")
        y.setField(SECURITY_REQ_ID, msg.getField(SECURITY_REQ_ID))
        y.setField(SECURITY_RESPONSE_ID, f"IL{msg.getHeader().getField(m.MSG_SEQ_NUM)}")
        y.setField(SECURITY_REQUEST_RESULT, "0")
        for inst in self.engine.instruments.values():
            g = fix.Group(m.NO_RELATED_SYM, m.SYMBOL)
            g.setField(m.SYMBOL, inst.symbol)
            # Kraken's meaning, not FIX's: 562 is the quantity step, 5011 the order minimum
            # (their doc's example: 562=0.00000001|5010=8|5011=0.0001).
            g.setField(MIN_TRADE_VOL, _s(inst.lot_size))
            g.setField(MIN_PRICE_INCREMENT, _s(inst.price_tick))
            g.setField(PRICE_PRECISION, str(inst.price_decimals))
            g.setField(QTY_PRECISION, str(inst.qty_decimals))
            g.setField(QTY_MIN, _s(inst.min_qty))
            g.setField(TICK_SIZE, _s(inst.price_tick))
            y.addGroup(g)
        self._send(y, session_id)
