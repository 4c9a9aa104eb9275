"""The gateway's order book of record: every order, every ClOrdID it has had on both sides,
and the venue ExecIDs already forwarded, rebuilt from the journal at start.

Two QuickFIX threads (OMS acceptor, venue initiator) use it, so each public method takes the
one lock; methods are small so the lock is held for microseconds.

Journal records are tab-separated lines, one per change, first field the record type:

    N  oms_session  cl_ord_id  venue_cl_ord_id  symbol  side  ord_type  qty  price  tif  account
       transport                                   a new order
    U  oms_session  cl_ord_id                      a ClOrdID the gateway rejected (stays used)
    Q  venue_cl_ord_id  oms_session  first_cl_ord_id  request_cl_ord_id  kind
                                                   a cancel/replace/status/mass request
    E  oms_session  first_cl_ord_id  exec_id  ord_status  cum_qty  avg_px  order_id
       cur_oms_cl  cur_venue_cl  qty  price         a venue report applied ("" = unchanged)
       [epoch_ms  oms_message]                      and, for a report forwarded to the OMS,
                                                   the exact message, journaled *before* it
                                                   is sent (see `commit_forward`)
    S  oms_session  first_cl_ord_id  transport     a held order released onto a transport
    A  venue_cl_ord_id  oms_session  first_cl_ord_id  oms_cl_ord_id
                                                   the venue still knows the order by this
                                                   ClOrdID (an in-place REST amend keeps it)
    T  transport  previous  epoch_ms               order flow switched transport

Transports (``N``/``S``): ``fix``, ``rest``, or ``held`` (accepted while no transport was up,
not sent yet; see routing.failover). The last ``T`` tells a restarted gateway which path it was
on, so it reconciles and resumes there rather than assuming FIX.

Positional text rather than JSON: on the order path every microsecond of encoding is paid on
a cold cache per message (see tools/bench_fix.py's profile); FIX values never contain a tab.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from gateway.orders import state
from gateway.orders.journal import Journal
from gateway.orders.model import Order

OrderKey = tuple[str, str]  # (oms_session, first OMS ClOrdID)

_E_FIELDS = 12  # "E" and the report's 11 fields; a forwarded report has 2 more


def _escape(text: str) -> str:
    """A FIX message as one journal field: tab, newline and CR (possible in Text, never in
    the fields the journal is split on) and the backslash are escaped."""
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return (text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
                .replace("\r", "\\r"))
    return text


_UNESCAPE = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(_UNESCAPE.get(text[i + 1], text[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


@dataclass(slots=True, frozen=True)
class ForwardedReport:
    """The last report journaled for forwarding to an OMS (from the journal's last ``E``
    record that carries a message): the only one a kill -9 can have left unsent, because the
    router journals and sends reports one at a time under its report lock."""

    oms_session: str
    exec_id: str
    epoch_ms: int
    message: str  # the ExecutionReport as it was to be sent (QuickFIX string)


@dataclass(slots=True, frozen=True)
class VenueRef:
    """What one venue ClOrdID stands for on the OMS side."""

    order_key: OrderKey
    oms_cl_ord_id: str
    kind: str  # "new" | "cancel" | "replace" | "status" | "mass"


@dataclass(slots=True, frozen=True)
class ReportTarget:
    """Where a venue report goes and how its ClOrdIDs read on the OMS side."""

    order: Order
    oms_cl_ord_id: str
    oms_orig_cl_ord_id: str | None
    kind: str
    duplicate: bool


class VenueIdSource:
    """Kraken spot takes "an ever-increasing positive number" (<= 18 digits) as ClOrdID: we use
    microseconds since the epoch, bumped past the last one issued so it never repeats, even
    across a restart (the journal gives back the high-water mark)."""

    def __init__(self, last: int = 0) -> None:
        self._last = last
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            v = max(time.time_ns() // 1000, self._last + 1)
            self._last = v
            return str(v)

    def observe(self, value: str) -> None:
        if value.isdigit():
            self._last = max(self._last, int(value))


class OrderStore:
    def __init__(self, journal_path: Path, fsync_interval_ms: int = 50) -> None:
        self.lock = threading.Lock()
        self.orders: dict[OrderKey, Order] = {}
        self._oms_index: dict[tuple[str, str], OrderKey] = {}
        self._used_cl_ord_ids: set[tuple[str, str]] = set()
        self._venue_refs: dict[str, VenueRef] = {}
        self._seen_exec: set[str] = set()
        self.venue_ids = VenueIdSource()
        #: The transport of the last journaled switch ("fix" when none was ever journaled).
        self.last_transport = "fix"
        #: The journal's last report record written for forwarding (see `ForwardedReport`).
        self.last_forward: ForwardedReport | None = None
        for line in Journal.replay_lines(journal_path):
            self._replay(line.split("\t"))
        self._journal = Journal(journal_path, fsync_interval_ms)

    # ---- queries -------------------------------------------------------------------------
    def is_used(self, oms_session: str, cl_ord_id: str) -> bool:
        return (oms_session, cl_ord_id) in self._used_cl_ord_ids

    def find(self, oms_session: str, cl_ord_id: str) -> Order | None:
        key = self._oms_index.get((oms_session, cl_ord_id))
        return None if key is None else self.orders[key]

    def open_orders(self, oms_session: str | None = None) -> list[Order]:
        with self.lock:
            return [o for o in self.orders.values()
                    if o.is_open and (oms_session is None or o.oms_session == oms_session)]

    def venue_ref(self, venue_cl_ord_id: str) -> VenueRef | None:
        return self._venue_refs.get(venue_cl_ord_id)

    # ---- changes (journaled, then visible) -----------------------------------------------
    def mark_used(self, oms_session: str, cl_ord_id: str) -> None:
        """Remember a ClOrdID the gateway rejected, so a retry with it is still a duplicate."""
        with self.lock:
            self._journal.append_line(f"U\t{oms_session}\t{cl_ord_id}")
            self._used_cl_ord_ids.add((oms_session, cl_ord_id))

    def add_order(self, order: Order) -> None:
        o = order
        line = (f"N\t{o.oms_session}\t{o.oms_cl_ord_id}\t{o.venue_cl_ord_id}\t{o.symbol}\t"
                f"{o.side}\t{o.ord_type}\t{o.qty}\t{'' if o.price is None else o.price}\t"
                f"{o.tif}\t{o.account}\t{o.transport}")
        with self.lock:
            self._journal.append_line(line)
            self._index_new(o)

    def add_request(self, venue_cl_ord_id: str, order_key: OrderKey, oms_cl_ord_id: str,
                    kind: str) -> None:
        with self.lock:
            self._journal.append_line(f"Q\t{venue_cl_ord_id}\t{order_key[0]}\t{order_key[1]}\t"
                                      f"{oms_cl_ord_id}\t{kind}")
            self._index_request(venue_cl_ord_id, order_key, oms_cl_ord_id, kind)

    def resolve_report(self, venue_cl_ord_id: str, venue_orig: str | None,
                       exec_id: str | None) -> ReportTarget | None:
        with self.lock:
            ref = self._venue_refs.get(venue_cl_ord_id)
            if ref is None:
                return None
            orig = None
            if venue_orig:
                oref = self._venue_refs.get(venue_orig)
                orig = oref.oms_cl_ord_id if oref is not None else None
            dup = exec_id is not None and exec_id in self._seen_exec
            return ReportTarget(self.orders[ref.order_key], ref.oms_cl_ord_id, orig, ref.kind, dup)

    def apply_report(self, target: ReportTarget, *, venue_cl_ord_id: str, exec_id: str,
                     exec_type: str, ord_status: str, cum_qty: str | None, avg_px: str | None,
                     order_id: str | None, qty: str | None, price: str | None
                     ) -> tuple[bool, str]:
        """Apply a venue report to the in-memory order, and return (legal, journal line).

        The line is not journaled here: the caller journals it with the message it forwards
        (`commit_forward`) before sending that, so a restart can tell whether the OMS got it
        (see routing.router). The in-memory state moves first so that an OMS acting on the
        forwarded report (a replace right after a fill) already sees the new state. `legal` is
        False when FIX 4.4 does not allow the status move; the venue's word is kept anyway and
        the caller logs it.
        """
        cur_oms = cur_venue = ""
        if exec_type in ("4", "5") or (exec_type == "0" and target.kind == "replace"):
            # The cancel/replace request became the order's current version.
            cur_oms, cur_venue = target.oms_cl_ord_id, venue_cl_ord_id
        if exec_type != "5":
            qty = price = None
        o = target.order
        fields = [o.oms_session, o.oms_history[0], exec_id, ord_status, cum_qty or "",
                  avg_px or "", order_id or "", cur_oms, cur_venue, qty or "", price or ""]
        with self.lock:
            legal = state.can_transition(o.status, ord_status)
            self._apply_report(fields)
        return legal, "E\t" + "\t".join(fields)

    def set_transport(self, order: Order, transport: str) -> None:
        """Journal that a held order is about to go out on `transport` (before it is sent:
        a restart then knows which path to ask about it, and never sends it again blind)."""
        key = (order.oms_session, order.oms_history[0])
        with self.lock:
            self._journal.append_line(f"S\t{key[0]}\t{key[1]}\t{transport}")
            order.transport = transport

    def rebind_venue_id(self, order: Order, venue_cl_ord_id: str) -> None:
        """The venue knows `order` by `venue_cl_ord_id` again, under its current OMS ClOrdID.

        Kraken's AmendOrder changes an order in place and keeps its cl_ord_id, unlike a FIX
        replace, which gives the order the request's ClOrdID. After a REST amend the order's
        venue ClOrdID is therefore rebound to the one the venue still uses, so later reports
        under it (FIX after failback, WS, REST) reach the OMS under the replace's ClOrdID, and
        a later FIX cancel or replace names the order as the venue knows it."""
        key = (order.oms_session, order.oms_history[0])
        with self.lock:
            self._journal.append_line(f"A\t{venue_cl_ord_id}\t{key[0]}\t{key[1]}\t"
                                      f"{order.oms_cl_ord_id}")
            self._rebind(venue_cl_ord_id, key, order.oms_cl_ord_id)

    def record_switch(self, old: str, new: str) -> None:
        """Journal a transport switch of the order flow (see `last_transport`)."""
        with self.lock:
            self._journal.append_line(f"T\t{new}\t{old}\t{time.time_ns() // 1_000_000}")
            self.last_transport = new

    def commit(self, line: str) -> None:
        """Journal a record already applied in memory."""
        self._journal.append_line(line)

    def commit_forward(self, line: str, oms_message: str) -> None:
        """Journal a report record (from `apply_report`) with the exact message about to be
        forwarded to the OMS, in the same single write, before it is sent.

        Journal first, because only the journal can say what was meant to be sent: a restart
        compares the last such record with what QuickFIX stored as sent on the OMS session
        and sends it if it never left (routing.router.Router.unforwarded_report). The time
        tells a record from before an OMS store reset (new session period) from one after."""
        self._journal.append_line(
            f"{line}\t{time.time_ns() // 1_000_000}\t{_escape(oms_message)}")

    def close(self) -> None:
        self._journal.close()

    # ---- internals -------------------------------------------------------------------------
    def _index_new(self, o: Order) -> None:
        key = (o.oms_session, o.oms_cl_ord_id)
        self.orders[key] = o
        self._oms_index[key] = key
        self._used_cl_ord_ids.add(key)
        self._venue_refs[o.venue_cl_ord_id] = VenueRef(key, o.oms_cl_ord_id, "new")

    def _index_request(self, venue_id: str, key: OrderKey, oms_cl: str, kind: str) -> None:
        self._venue_refs[venue_id] = VenueRef(key, oms_cl, kind)
        if kind in ("cancel", "replace"):
            self._used_cl_ord_ids.add((key[0], oms_cl))
            self._oms_index[(key[0], oms_cl)] = key

    def _rebind(self, venue_id: str, key: OrderKey, oms_cl: str) -> None:
        self._venue_refs[venue_id] = VenueRef(key, oms_cl, "new")
        self.orders[key].venue_cl_ord_id = venue_id

    def _apply_report(self, f: list[str]) -> None:
        (session, first, exec_id, status, cum, avg, order_id, cur_oms, cur_venue, qty,
         price) = f
        o = self.orders[(session, first)]
        self._seen_exec.add(exec_id)
        o.status = status
        if cum:
            o.cum_qty = Decimal(cum)
        if avg:
            o.avg_px = Decimal(avg)
        if order_id:
            o.order_id = order_id
        if cur_oms:
            o.oms_cl_ord_id, o.venue_cl_ord_id = cur_oms, cur_venue
            if cur_oms not in o.oms_history:
                o.oms_history.append(cur_oms)
        if qty:
            o.qty = Decimal(qty)
        if price:
            o.price = Decimal(price)

    def _replay(self, f: list[str]) -> None:
        t = f[0]
        if t == "N":
            (_, session, cl, venue, sym, side, ot, q, p, tif, acct, tr) = f
            self._index_new(Order(oms_session=session, oms_cl_ord_id=cl, venue_cl_ord_id=venue,
                                  symbol=sym, side=side, ord_type=ot, qty=Decimal(q),
                                  price=Decimal(p) if p else None, tif=tif, account=acct,
                                  transport=tr, oms_history=[cl]))
            self.venue_ids.observe(venue)
        elif t == "U":
            self._used_cl_ord_ids.add((f[1], f[2]))
        elif t == "Q":
            self._index_request(f[1], (f[2], f[3]), f[4], f[5])
            self.venue_ids.observe(f[1])
        elif t == "E":
            self._apply_report(f[1:_E_FIELDS])
            if len(f) >= _E_FIELDS + 2:
                self.last_forward = ForwardedReport(f[1], f[3], int(f[_E_FIELDS]),
                                                    _unescape(f[_E_FIELDS + 1]))
        elif t == "S":
            self.orders[(f[1], f[2])].transport = f[3]
        elif t == "A":
            self._rebind(f[1], (f[2], f[3]), f[4])
        elif t == "T":
            self.last_transport = f[1]
