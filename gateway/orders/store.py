"""The gateway's order book of record: every order, every ClOrdID it has had on both sides,
and the venue ExecIDs already forwarded, rebuilt from the journal at start.

Two QuickFIX threads (OMS acceptor, venue initiator) use it, so each public method takes the
one lock; methods are small so the lock is held for microseconds.

Journal records are tab-separated lines, one per change, first field the record type:

    N  oms_session  cl_ord_id  venue_cl_ord_id  symbol  side  ord_type  qty  price  tif  account
       transport                                   a new order
    U  oms_session  cl_ord_id  [epoch_ms           a ClOrdID the gateway rejected (stays used);
       [cxl_rej_reason  text                       for a cancel or replace it refused, the
       [oms_message  [first_cl_ord_id...]]]]       answer it sent (see `Refusal`); for a mass
                                                   cancel (reason and text ""), its 35=r,
                                                   journaled before it is sent (see
                                                   `ForwardedReport`), and, if it accepted
                                                   the request, the orders it covers (their
                                                   first OMS ClOrdIDs; one empty field when
                                                   none; absent in records older gateways
                                                   wrote: see `MassCancel`)
    Q  venue_cl_ord_id  oms_session  first_cl_ord_id  request_cl_ord_id  kind
                                                   a cancel/replace/amend/status/mass
       [epoch_ms  qty  price  [transport]]         request, journaled before it is sent;
                                                   a cancel or replace (amend) has the time,
                                                   its figures and the transport that carries
                                                   it: ``fix`` (the venue's FIX session; a
                                                   record without the field, as written before
                                                   2026-11-28, is one), ``rest`` or ``ws`` (the
                                                   fallback's; see `RequestDetails`)
    E  oms_session  first_cl_ord_id  exec_id  ord_status  cum_qty  avg_px  order_id
       cur_oms_cl  cur_venue_cl  qty  price         a venue report applied ("" = unchanged);
                                                   an in-place amend's Replaced keeps
                                                   cur_venue_cl, which then names cur_oms_cl
       [epoch_ms  oms_message]                      and, for a report forwarded to the OMS,
                                                   the exact message, journaled *before* it
                                                   is sent (see `commit_forward`)
    R  venue_cl_ord_id  [cxl_rej_reason  text      a request answered without becoming the
       [epoch_ms  oms_session  oms_message]]       order's version: refused (by the venue, or
                                                   by the gateway when its send failed), or,
                                                   over REST/WS, too late or an amend's
                                                   Replaced (whose E names the order's own
                                                   venue ClOrdID, not the amend's); an OMS
                                                   request the gateway refused itself has the
                                                   answer it sent (see `Refusal`); one the
                                                   fallback's poller answers with a 35=9 has
                                                   that message (reason and text ""),
                                                   journaled before it is sent
    S  oms_session  first_cl_ord_id  transport     a held order released onto a transport
    A  venue_cl_ord_id  oms_session  first_cl_ord_id  oms_cl_ord_id
                                                   read only: an amend's rebind, as journals
                                                   written before 2026-11-27 kept it apart
                                                   from its E (a kill between lost it)
    T  transport  previous  epoch_ms               order flow switched transport

Written only by a compaction (`OrderStore.compact`), in a snapshot of the store as it is:
``V high_water_venue_cl_ord_id``; per order its ``N`` (current quantity and price), a ``Q``
for every venue ClOrdID that names it (with its details while it is unanswered: a restart
takes it up as if it had replayed the original), an ``R`` with the answer for the request the
gateway last refused on the order's OMS session if it is one of these, then ``O oms_session
first_cl_ord_id ord_status cum_qty avg_px order_id cur_oms_cl cur_venue_cl closed_at
oms_history...``, ``I oms_session first_cl_ord_id cl_ord_id...`` (the OMS ClOrdIDs that name
it) and ``X oms_session first_cl_ord_id exec_id...``; the ``U``s still in force (a session's
last refusal with its answer); ``M oms_session cl_ord_id first_cl_ord_id...`` per mass cancel
not finished yet, the covered orders still open with no cancel under its ClOrdID (see
`MassCancel`); and ``F oms_session answer_id epoch_ms oms_message``, the last answer journaled
for sending (see `ForwardedReport`). All of these are records a journal may
hold, so a snapshot replays like one, and one written before a field was added replays as the
journal it came from did.

Transports (``N``/``S``): ``fix``, ``rest``, or ``held`` (accepted while no transport was up,
not sent yet; see routing.failover). The last ``T`` tells a restarted gateway which path it was
on, so it reconciles and resumes there rather than assuming FIX.

Memory and journal stay bounded: with a retention (`[gateway] closed_order_retention_s`), an
order closed longer ago than that is forgotten (`evict_closed`) with every index entry that
points at it, and a ClOrdID the gateway rejected stops being a duplicate after the same time.
A report for a forgotten order is then an unknown one (not forwarded), a status request or
cancel for it gets an unknown-order answer, and its ClOrdID may be used again.

The journal is compacted when it is mostly history (`compact_min_records`, and more than twice
what a snapshot would hold), at start and by `maintain` while running: the journal is sealed
(gateway.orders.journal), a snapshot of the store is written in batches of orders, each under
the lock and `report_lock`, both let go with the GIL in between (a FIX thread waits for one
batch at most), and committed; replay then reads the snapshot and what was written since the
seal. The snapshot may already hold changes made after the seal, which replay applies again:
every record sets absolute values, so applying one again after a later state leaves the store
as the last record says (an order closed again gets the time of its last closing record).

Positional text rather than JSON: on the order path every microsecond of encoding is paid on
a cold cache per message (see tools/bench_fix.py's profile); FIX values never contain a tab.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from time import sleep as _sleep

from gateway.orders import state
from gateway.orders.journal import Journal, commit_snapshot
from gateway.orders.model import Order

log = logging.getLogger(__name__)

OrderKey = tuple[str, str]  # (oms_session, first OMS ClOrdID)
ClKey = tuple[str, str]  # (oms_session, an OMS ClOrdID)

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


#: The field that tells a journaled answer apart in the OMS session's QuickFIX store, by
#: MsgType: an ExecutionReport's ExecID; an OrderCancelReject's ClOrdID (the OMS request's,
#: which gets one answer: it has no id of its own); an OrderMassCancelReport's OrderID (the
#: report's own id, "MASS-...").
ANSWER_ID_TAG: dict[str, str] = {"8": "17", "9": "11", "r": "37"}


def message_field(message: str, tag: str) -> str:
    """The value of `tag` in a QuickFIX message string ("" when absent); the first one, so
    only for tags outside repeating groups."""
    needle = f"\x01{tag}="
    at = message.find(needle)
    if at < 0:
        return ""
    start = at + len(needle)
    end = message.find("\x01", start)
    return message[start:] if end < 0 else message[start:end]


@dataclass(slots=True, frozen=True)
class ForwardedReport:
    """The last answer journaled for sending to an OMS, with its exact message, before it is
    sent: the only one a kill -9 can have left unsent, because the router journals and sends
    them one at a time under its report lock. From the journal's last record that carries a
    message: an ``E`` (an ExecutionReport, the venue's or the gateway's), an ``R`` (the
    fallback poller's OrderCancelReject) or a ``U`` (a mass cancel's OrderMassCancelReport).
    The 35=9 and 35=r are here for the same reason as reports: no OMS resend asks for them
    again (the poller answers a request already taken; the mass cancel's ClOrdID is taken
    before its 35=r, so the OMS's PossDup resend of it is ignored)."""

    oms_session: str
    #: What identifies it in the OMS store (`ANSWER_ID_TAG`): for a 35=8 its ExecID.
    exec_id: str
    epoch_ms: int
    message: str  # the message as it was to be sent (QuickFIX string)
    #: For an accepted mass cancel's 35=r from its ``U``: the orders it covered (first OMS
    #: ClOrdIDs); None when the record does not say (an older gateway's, or the
    #: snapshot's ``F``), so the router takes them from the 35=r's scope (`Router.redeliver`).
    covered: tuple[str, ...] | None = None

    @property
    def msg_type(self) -> str:
        return message_field(self.message, "35")

    @property
    def id_tag(self) -> str:
        """The tag `exec_id` is the value of (see `ANSWER_ID_TAG`)."""
        return ANSWER_ID_TAG.get(self.msg_type, "17")


@dataclass(slots=True, frozen=True)
class MassCancel:
    """An OMS mass cancel (35=q) not finished: `orders` are the ones it covered that are still
    open and have no cancel journaled under its ClOrdID.

    Why the journal keeps the orders a mass cancel covers (in the ``U`` that journals its 35=r,
    before that is sent): its cancels go out one by one after the 35=r, each journaled before
    it is sent, and a kill -9 in between leaves the rest unsent while the OMS was told "N
    orders affected" and its PossDup resend of the request is (rightly) ignored as a ClOrdID
    already taken. A restart finds the covered orders still open with no cancel under the
    mass cancel's ClOrdID, and the router cancels them at its first reconcile
    (`Router._finish_mass_cancels`). The covered list, not the request's scope, says which:
    an order placed after the mass cancel was not its to cancel.

    Finished (forgotten, and written by no snapshot) once every covered order has a cancel
    journaled under its ClOrdID (sent; or refused, which was reported as for any of its
    cancels) or is closed (or forgotten). Until then each start takes it up again; an order
    skipped then because another cancel of it was on its way (`Router.cancel_in_flight`)
    keeps it unfinished until that order closes, so it is not re-checked for ever."""

    oms_session: str
    cl_ord_id: str
    orders: list[Order]


@dataclass(slots=True, frozen=True)
class VenueRef:
    """What one venue ClOrdID stands for on the OMS side."""

    order_key: OrderKey
    oms_cl_ord_id: str
    kind: str  # "new" | "cancel" | "replace" | "amend" (REST/WS, in place) | "status" | "mass"


@dataclass(slots=True, frozen=True)
class RequestDetails:
    """A cancel or replace journaled before it is sent: when, a replace's figures, and the
    transport that carries it ("fix": the venue's FIX session; "rest"/"ws": the fallback's).
    For a restart: a kill between the journal and the send leaves a request the venue never
    got, and a kill before its answer leaves one only the journal knows about. FIX ones are
    for `Router.find_unanswered_requests` (the venue session keeps no copy of what it sent,
    PersistMessages=N, to tell); REST/WS ones for `RestFallback.start` (their outcome is
    looked up, or a cancel sent again). The store keeps them until answered (or their order
    is forgotten), as replay does, so that a compaction's snapshot can write them again: a
    request still unanswered across a compaction is taken up by a later restart too."""

    journaled_ms: int
    qty: Decimal | None
    price: Decimal | None
    transport: str = "fix"


@dataclass(slots=True, frozen=True)
class Refusal:
    """An OMS cancel or replace the gateway refused itself (a 35=9 it wrote, not the venue's),
    with the answer, journaled before that answer is sent.

    Why: a kill -9 between the journal record and the send leaves the OMS without its answer,
    and QuickFIX, which had not advanced the session's incoming sequence, has the OMS resend
    the request (PossDupFlag=Y). Its ClOrdID is taken, so the resend is no new request; the
    journaled answer tells the router it is one the gateway refused (not one the venue will
    answer) and what to answer again (`OrderStore.refusal`). Only the last refusal per OMS
    session is kept: a session's messages are handled one at a time, and only the one being
    handled at the kill can come again as a PossDup resend."""

    cl_ord_id: str
    reason: str                  # CxlRejReason (102)
    text: str
    venue_cl_ord_id: str | None  # the request's, when one was journaled (an R), else None (U)


def _refusal_fields(refusal: tuple[str, str] | None, more: bool = False) -> str:
    """The fields a ``U`` or ``R`` record carries for a refusal's answer, tab first ("" if
    none): its CxlRejReason and Text (escaped: a venue's text may hold anything). `more`:
    fields follow (an answer's message), so a missing refusal is two empty fields."""
    if refusal is None:
        return "\t\t" if more else ""
    return f"\t{refusal[0]}\t{_escape(refusal[1])}"


def _used_line(oms_session: str, cl_ord_id: str, now: float,
               refusal: tuple[str, str] | None, answer: str | None,
               covered: list[str] | None = None) -> str:
    """A ``U`` record (see `OrderStore.mark_used`); with `covered` (after an `answer`), an
    accepted mass cancel's orders (one empty field when none: the record still says)."""
    line = (f"U\t{oms_session}\t{cl_ord_id}\t{int(now * 1000)}"
            f"{_refusal_fields(refusal, answer is not None)}")
    if answer is not None:
        line = f"{line}\t{_escape(answer)}"
        if covered is not None:
            line += "\t" + "\t".join(covered)
    return line


def _answered_line(venue_cl_ord_id: str, refusal: tuple[str, str] | None,
                   answer: tuple[str, str] | None) -> str:
    """An ``R`` record (see `OrderStore.mark_answered`), timed now when it has an answer."""
    line = f"R\t{venue_cl_ord_id}{_refusal_fields(refusal, answer is not None)}"
    if answer is not None:
        line += f"\t{time.time_ns() // 1_000_000}\t{answer[0]}\t{_escape(answer[1])}"
    return line


def _details_fields(d: RequestDetails) -> str:
    """The fields a ``Q`` record carries for a request's details, tab first (see
    `RequestDetails`); a FIX one without the transport, as older gateways wrote (and replay)
    it."""
    out = (f"\t{d.journaled_ms}\t{'' if d.qty is None else d.qty}\t"
           f"{'' if d.price is None else d.price}")
    return out if d.transport == "fix" else f"{out}\t{d.transport}"


@dataclass(slots=True, frozen=True)
class ReportTarget:
    """Where a venue report goes and how its ClOrdIDs read on the OMS side."""

    order: Order
    oms_cl_ord_id: str
    oms_orig_cl_ord_id: str | None
    kind: str
    duplicate: bool


@dataclass(slots=True, frozen=True)
class OrderCounts:
    """How many orders the store holds (open ones included) and has evicted since start."""

    held: int
    open: int
    evicted: int


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

    @property
    def last(self) -> int:
        """The highest venue ClOrdID issued or seen."""
        return self._last


def _due(closed: deque[Order], horizon: float) -> bool:
    """Whether the first order queued for eviction is due (or reopened: skipped)."""
    return bool(closed) and (not closed[0].closed_at or closed[0].closed_at <= horizon)


def _forwarded_report(f: list[str]) -> ForwardedReport:
    """The answer a record with its message holds: an ``E`` (`commit_forward`), an ``R`` or a
    ``U`` (`mark_answered`, `mark_used` with `answer`)."""
    if f[0] == "E":
        return ForwardedReport(f[1], f[3], int(f[_E_FIELDS]), _unescape(f[_E_FIELDS + 1]))
    covered = None
    if f[0] == "R":  # R vid reason text epoch_ms oms_session message
        session, epoch_ms, message = f[5], f[4], _unescape(f[6])
    else:  # U oms_session cl epoch_ms reason text message [first_cl_ord_id...]
        session, epoch_ms, message = f[1], f[3], _unescape(f[6])
        if len(f) > 7:
            covered = tuple(cl for cl in f[7:] if cl)
    tag = ANSWER_ID_TAG.get(message_field(message, "35"), "17")
    return ForwardedReport(session, message_field(message, tag), int(epoch_ms), message,
                           covered)


def _add_exec_ids(o: Order, ids: str) -> None:
    """Append tab-joined ExecIDs to the order's (kept as the journal holds them)."""
    o.exec_ids = f"{o.exec_ids}\t{ids}" if o.exec_ids else ids


def _also_named(o: Order, venue_id: str) -> None:
    """Note that `venue_id` names `o` too (for its eviction)."""
    if venue_id == o.first_venue_id:
        return
    if o.more_venue_ids is None:
        o.more_venue_ids = [venue_id]
    elif venue_id not in o.more_venue_ids:
        o.more_venue_ids.append(venue_id)


class OrderStore:
    def __init__(self, journal_path: Path, fsync_interval_ms: int = 50, *,
                 closed_retention_s: float = 0.0, compact_min_records: int = 100_000) -> None:
        """`closed_retention_s`: how long a closed order (and a rejected ClOrdID) is kept after
        it closed; 0 keeps everything for the whole run. A journal of at least
        `compact_min_records` records, more than twice what a snapshot of the store would
        hold, is compacted (at start, and by `maintain`)."""
        self.lock = threading.Lock()
        #: Held by whoever applies a venue report, from `apply_report` through its `commit`
        #: or `commit_forward` (the router's report lock). A snapshot holds it too, so it never
        #: sees a report applied in memory whose record is not written yet: after a crash in
        #: between, the snapshot would hold its ExecID as seen, and the venue's resend of the
        #: report would be dropped as a duplicate the OMS never got.
        self.report_lock = threading.RLock()
        self.orders: dict[OrderKey, Order] = {}
        self._open: dict[OrderKey, Order] = {}
        self._oms_index: dict[ClKey, OrderKey] = {}
        self._used_cl_ord_ids: set[ClKey] = set()
        self._venue_refs: dict[str, VenueRef] = {}
        self._seen_exec: set[str] = set()
        # What becomes evictable, oldest first: orders as they close (the time is the order's
        # own `closed_at`: no tuple per order for the collector to track) and (rejected at,
        # ClOrdID). An order that reopened (a late venue report) is skipped when it comes up;
        # one that then closed again holds up the queue until its new time: eviction may come
        # late, never early.
        self._closed_queue: deque[Order] = deque()
        self._rejected_queue: deque[tuple[float, ClKey]] = deque()
        self.retention_s = closed_retention_s
        #: Orders forgotten so far (by `evict_closed`, replay included).
        self.evicted = 0
        self.venue_ids = VenueIdSource()
        #: The transport of the last journaled switch ("fix" when none was ever journaled).
        self.last_transport = "fix"
        #: The journal's last answer record written for sending (see `ForwardedReport`).
        self.last_forward: ForwardedReport | None = None
        # A record with no time of its own (a report not forwarded, an old ``U``) counts as
        # made now: it is kept a full retention from this start, never evicted early.
        self._replay_now = time.time()
        # Requests journaled with their details and no answer yet, by venue ClOrdID: kept up
        # to date while running (for a snapshot to keep them), and as replay left them, given
        # once to the router and the fallback (`unanswered_fix_requests`).
        self._pending_requests: dict[str, RequestDetails] = {}
        self._replayed_requests: dict[str, RequestDetails] = {}
        # Per OMS session, the last cancel or replace the gateway refused itself (`Refusal`).
        self._refusals: dict[str, Refusal] = {}
        # Mass cancels not finished (see `MassCancel`), by (OMS session, ClOrdID): the first
        # OMS ClOrdIDs of the orders they cover with no cancel journaled under it yet (one
        # closed since is dropped when asked, `_mass_open`), in the order it covered them (a
        # dict as an ordered set). Kept while running for a snapshot; as replay left them,
        # given once to the router (`unfinished_mass_cancels`).
        self._mass: dict[ClKey, dict[str, None]] = {}
        self._replayed_mass: list[MassCancel] = []
        self._skipped = 0
        # The journal's record count is `_records_base` plus what was appended since
        # `_appended_mark` (the compaction trigger; reset by each compaction).
        self._records_base = 0
        self._appended_mark = 0
        self._compact_min_records = compact_min_records
        # The last answer record journaled for sending, as written (see `commit_forward`).
        self._last_forward_line: str | None = None
        unreadable = 0
        for line in Journal.replay_lines(journal_path):
            try:
                self._replay(line.split("\t"))
            except (ValueError, IndexError, KeyError, ArithmeticError) as exc:
                # A record the gateway cannot have written whole: the one a kill cut short
                # while its end was already copied (a copy need not run front to back). Left
                # to raise, it would stop every later start until the journal is edited.
                unreadable += 1
                log.error("%s: unreadable record skipped (%s: %s): %.200r", journal_path,
                          type(exc).__name__, exc, line)
            self._records_base += 1
        if unreadable:
            log.error("%s: %d unreadable record(s) skipped; check the orders they name with "
                      "the venue (fixgwctl orders)", journal_path, unreadable)
        if self._skipped:
            log.warning("%s: %d records name an order the journal does not hold; skipped",
                        journal_path, self._skipped)
        self.evict_closed(self._replay_now)
        self._replayed_requests = dict(self._pending_requests)
        self._replayed_mass = [MassCancel(session, cl, orders)
                               for (session, cl), orders in self._mass_open()]
        self._journal = Journal(journal_path, fsync_interval_ms)
        self.compact_if_due()

    # ---- queries -------------------------------------------------------------------------
    def is_used(self, oms_session: str, cl_ord_id: str) -> bool:
        return (oms_session, cl_ord_id) in self._used_cl_ord_ids

    def find(self, oms_session: str, cl_ord_id: str) -> Order | None:
        key = self._oms_index.get((oms_session, cl_ord_id))
        return None if key is None else self.orders[key]

    def open_orders(self, oms_session: str | None = None) -> list[Order]:
        with self.lock:
            return [o for o in self._open.values()
                    if oms_session is None or o.oms_session == oms_session]

    def select(self, match: Callable[[Order], bool], limit: int) -> tuple[list[Order], int]:
        """Copies of the orders `match` takes, newest first, at most `limit`, and how many it
        took in all; for ops tools, not the order path. The walk runs outside the lock, on a
        list of the orders taken under it, so a FIX thread waits for that list, not for the
        walk; the copies are taken under the lock, so none is half of a venue report."""
        with self.lock:
            everyone = list(self.orders.values())
        taken = [o for o in reversed(everyone) if match(o)]
        with self.lock:
            copies = [replace(o, oms_history=list(o.oms_history),
                              more_venue_ids=list(o.more_venue_ids or ()))
                      for o in taken[:limit]]
        return copies, len(taken)

    def cancel_asked(self, order: Order) -> str | None:
        """The venue ClOrdID of the latest cancel asked for `order` (its OMS's own, one order
        of a mass cancel, or the gateway's: ops, kill switch, cancel on disconnect), or None."""
        with self.lock:
            for vid in reversed(order.more_venue_ids or ()):
                ref = self._venue_refs.get(vid)
                if ref is not None and ref.kind in ("cancel", "mass"):
                    return vid
        return None

    def unanswered_cancel(self, order: Order) -> tuple[str, RequestDetails] | None:
        """The latest cancel of the open `order` (any: its OMS's, a mass cancel's, the
        gateway's) journaled with its details and not answered yet, as (venue ClOrdID,
        details), or None.

        Why from `_pending_requests`: a cancel leaves it exactly when its answer is journaled
        (the Canceled that makes it the order's version, or an ``R``: a refusal, the venue's
        or the gateway's), replay rebuilds it from the same records, and a compaction's
        snapshot keeps it; so a restarted gateway knows the same cancels unanswered as the one
        that stopped. The order's own status says nothing: it stays New until the venue
        answers. A closed order has nothing in flight, whatever its cancel's record says."""
        with self.lock:
            if not order.is_open:
                return None
            for vid in reversed(order.more_venue_ids or ()):
                ref = self._venue_refs.get(vid)
                details = self._pending_requests.get(vid)
                if ref is not None and ref.kind in ("cancel", "mass") and details is not None:
                    return vid, details
        return None

    def mass_cancel_sent(self, order: Order, cl_ord_id: str) -> bool:
        """Whether a cancel of `order` under the mass cancel `cl_ord_id` is journaled (sent,
        or refused: either way that mass cancel has done its part for the order)."""
        with self.lock:
            for vid in order.more_venue_ids or ():
                ref = self._venue_refs.get(vid)
                if ref is not None and ref.kind == "mass" and ref.oms_cl_ord_id == cl_ord_id:
                    return True
        return False

    def unfinished_mass_cancels(self) -> list[MassCancel]:
        """The mass cancels the journal held unfinished at start (see `MassCancel`), in the
        order they were journaled: given once, as they are taken up once per start (by the
        first reconcile); the store keeps each until it is finished, for a snapshot."""
        with self.lock:
            found, self._replayed_mass = self._replayed_mass, []
        return found

    def _mass_open(self) -> list[tuple[ClKey, list[Order]]]:
        """The unfinished mass cancels with their covered orders still open; one with none
        left is finished and forgotten here (caller holds the lock, or replays)."""
        out = []
        for key, firsts in list(self._mass.items()):
            orders = [o for o in (self._open.get((key[0], first)) for first in firsts)
                      if o is not None]
            if orders:
                out.append((key, orders))
            else:
                del self._mass[key]
        return out

    def _mass_covers(self, key: ClKey, covered: list[str]) -> None:
        """A mass cancel's record (its ``U``, or a snapshot's ``M``): `covered` are the orders
        it has still to cancel; none: finished (caller holds the lock, or replays)."""
        if covered:
            self._mass[key] = dict.fromkeys(covered)
        else:
            self._mass.pop(key, None)

    def _mass_cancel_journaled(self, order_key: OrderKey, oms_cl_ord_id: str) -> None:
        """A cancel of kind "mass" under `oms_cl_ord_id` was journaled for the order: if that
        is a mass cancel's ClOrdID, it has that order done (caller holds the lock, or
        replays)."""
        todo = self._mass.get((order_key[0], oms_cl_ord_id))
        if todo is not None:
            todo.pop(order_key[1], None)
            if not todo:
                del self._mass[(order_key[0], oms_cl_ord_id)]

    def counts(self) -> OrderCounts:
        return OrderCounts(len(self.orders), len(self._open), self.evicted)

    def venue_ref(self, venue_cl_ord_id: str) -> VenueRef | None:
        return self._venue_refs.get(venue_cl_ord_id)

    # ---- changes (journaled, then visible) -----------------------------------------------
    def mark_used(self, oms_session: str, cl_ord_id: str,
                  refusal: tuple[str, str] | None = None, answer: str | None = None) -> None:
        """Remember a ClOrdID that names no order of its own (one the gateway rejected, or a
        mass cancel's), so a later message with it is still a duplicate. `refusal`: the
        (CxlRejReason, Text) of the 35=9 about to be sent for a cancel or replace the gateway
        refuses, journaled with it (see `Refusal`). `answer`: a mass cancel's 35=r about to be
        sent (QuickFIX string), journaled in the same record, which makes the ClOrdID taken,
        so that a restart can tell whether it left (see `ForwardedReport`). Caller holds the
        report lock with an `answer`, until it is sent."""
        now = time.time()
        line = _used_line(oms_session, cl_ord_id, now, refusal, answer)
        with self.lock:
            self._journal.append_line(line)
            if answer is not None:
                self._last_forward_line = line
            self._use(oms_session, cl_ord_id, now, refusal)

    def used_for_answer(self, oms_session: str, cl_ord_id: str, answer: str,
                        covered: list[str] | None = None) -> Callable[[], None]:
        """`mark_used` with an `answer` (a mass cancel's 35=r) in two steps: the ClOrdID is
        taken in memory now, and the record is written by the function returned, which the
        caller runs now or, when the journal refuses it (a full disk), later, in order with
        the venue reports parked behind it (the router's `flush_parked`); the record's time is
        when it is written. `covered`: an accepted mass cancel's orders (first OMS ClOrdIDs),
        in the same record, unfinished from then on (see `MassCancel`). Caller holds the
        report lock."""
        with self.lock:
            self._use(oms_session, cl_ord_id, time.time(), None)
        mass = None if covered is None else ((oms_session, cl_ord_id), covered)
        return lambda: self._append_answer(
            _used_line(oms_session, cl_ord_id, time.time(), None, answer, covered), mass)

    def _use(self, oms_session: str, cl_ord_id: str, now: float,
             refusal: tuple[str, str] | None) -> None:
        """`mark_used` in memory (caller holds the lock)."""
        self._used_cl_ord_ids.add((oms_session, cl_ord_id))
        self._rejected_queue.append((now, (oms_session, cl_ord_id)))
        if refusal is not None:
            self._refusals[oms_session] = Refusal(cl_ord_id, *refusal, None)

    def _append_answer(self, line: str,
                       mass: tuple[ClKey, list[str]] | None = None) -> None:
        """Journal a record that carries an answer for an OMS (see `ForwardedReport`); `mass`:
        a mass cancel's orders, in memory once the record is written (a snapshot then keeps
        them: it must never hold what the journal does not)."""
        with self.lock:
            self._journal.append_line(line)
            self._last_forward_line = line
            if mass is not None:
                self._mass_covers(*mass)

    def add_order(self, order: Order) -> None:
        o = order
        line = (f"N\t{o.oms_session}\t{o.oms_cl_ord_id}\t{o.venue_cl_ord_id}\t{o.symbol}\t"
                f"{o.side}\t{o.ord_type}\t{o.qty}\t{'' if o.price is None else o.price}\t"
                f"{o.tif}\t{o.account}\t{o.transport}")
        with self.lock:
            self._journal.append_line(line)
            self._index_new(o)

    def add_request(self, venue_cl_ord_id: str, order_key: OrderKey, oms_cl_ord_id: str,
                    kind: str, details: RequestDetails | None = None) -> None:
        """Journal a request before it is sent. `details` (time, a replace's figures,
        transport): a restart can take it up if it has no answer (see `RequestDetails`)."""
        line = (f"Q\t{venue_cl_ord_id}\t{order_key[0]}\t{order_key[1]}\t{oms_cl_ord_id}\t"
                f"{kind}")
        if details is not None:
            line += _details_fields(details)
        with self.lock:
            self._journal.append_line(line)
            self._index_request(venue_cl_ord_id, order_key, oms_cl_ord_id, kind)
            if details is not None:
                self._pending_requests[venue_cl_ord_id] = details
            if kind == "mass" and self._mass:
                self._mass_cancel_journaled(order_key, oms_cl_ord_id)

    def mark_answered(self, venue_cl_ord_id: str,
                      refusal: tuple[str, str] | None = None,
                      answer: tuple[str, str] | None = None) -> None:
        """Journal that a request got its answer without becoming the order's version: a
        venue's cancel reject, the gateway's own when the send failed, or (REST/WS) a cancel
        answered too late or an amend's Replaced. `refusal`: the (CxlRejReason, Text) of the
        35=9 the gateway is about to send its OMS itself, in answer to the OMS request being
        handled (see `Refusal`; not for one answered later, which no PossDup resend asks
        about, nor for one of a mass cancel). `answer`: (OMS session, 35=9 as a QuickFIX
        string) of one answered later (the fallback's poller), about to be sent: journaled in
        the same record, so that a restart can tell whether it left (see `ForwardedReport`);
        caller holds the report lock until it is sent."""
        line = _answered_line(venue_cl_ord_id, refusal, answer)
        with self.lock:
            self._journal.append_line(line)
            self._answered(venue_cl_ord_id, refusal)
            if answer is not None:
                self._last_forward_line = line

    def answered_with(self, venue_cl_ord_id: str, oms_session: str,
                      answer: str) -> Callable[[], None]:
        """`mark_answered` with an `answer` (the poller's 35=9) in two steps, as
        `used_for_answer`: the request is answered in memory now, and the record is written
        by the function returned, now or later (`flush_parked`). Caller holds the report
        lock."""
        with self.lock:
            self._answered(venue_cl_ord_id, None)
        return lambda: self._append_answer(
            _answered_line(venue_cl_ord_id, None, (oms_session, answer)))

    def refusal(self, oms_session: str, cl_ord_id: str) -> tuple[str, str] | None:
        """The (CxlRejReason, Text) the gateway answered the OMS request `cl_ord_id` with, if
        it is the last one it refused on `oms_session` (see `Refusal`), else None."""
        with self.lock:
            r = self._refusals.get(oms_session)
        return (r.reason, r.text) if r is not None and r.cl_ord_id == cl_ord_id else None

    def unanswered_fix_requests(self) -> dict[str, RequestDetails]:
        """The FIX requests the journal held at start with no answer recorded (none became
        its order's version, none was refused), by venue ClOrdID. Given once, as they are
        taken up once per start; the store still counts each unanswered until its answer,
        for a compaction's snapshot (see `RequestDetails`)."""
        return self._take_replayed(lambda t: t == "fix")

    def unanswered_fallback_requests(self) -> dict[str, RequestDetails]:
        """As `unanswered_fix_requests`, for the cancels and amends sent over REST or WS (the
        fallback's): given once."""
        return self._take_replayed(lambda t: t != "fix")

    def _answered(self, venue_id: str, refusal: tuple[str, str] | None) -> None:
        """Request `venue_id` has its answer (an ``R``); with `refusal`, the gateway's own
        (caller holds the lock, or replays)."""
        self._pending_requests.pop(venue_id, None)
        ref = self._venue_refs.get(venue_id)
        if refusal is not None and ref is not None:
            self._refusals[ref.order_key[0]] = Refusal(ref.oms_cl_ord_id, *refusal, venue_id)

    def _take_replayed(self, match: Callable[[str], bool]) -> dict[str, RequestDetails]:
        with self.lock:
            found = {vid: r for vid, r in self._replayed_requests.items()
                     if match(r.transport)}
            for vid in found:
                del self._replayed_requests[vid]
        return found

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
        o = target.order
        cur_oms = cur_venue = ""
        if exec_type in ("4", "5") or (exec_type == "0" and target.kind == "replace"):
            # The cancel/replace request became the order's current version.
            cur_oms, cur_venue = target.oms_cl_ord_id, venue_cl_ord_id
            if target.kind == "amend":
                # Kraken's AmendOrder changes the order in place: the venue keeps the order's
                # ClOrdID, which now names the replace's OMS ClOrdID (see _apply_report).
                cur_venue = o.venue_cl_ord_id
        if exec_type != "5":
            qty = price = None
        fields = [o.oms_session, o.oms_history[0], exec_id, ord_status, cum_qty or "",
                  avg_px or "", order_id or "", cur_oms, cur_venue, qty or "", price or ""]
        with self.lock:
            legal = state.can_transition(o.status, ord_status)
            self._apply_report(fields, None)
        return legal, "E\t" + "\t".join(fields)

    def set_transport(self, order: Order, transport: str) -> None:
        """Journal that a held order is about to go out on `transport` (before it is sent:
        a restart then knows which path to ask about it, and never sends it again blind)."""
        key = (order.oms_session, order.oms_history[0])
        with self.lock:
            self._journal.append_line(f"S\t{key[0]}\t{key[1]}\t{transport}")
            order.transport = transport

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
        record = f"{line}\t{time.time_ns() // 1_000_000}\t{_escape(oms_message)}"
        self._last_forward_line = record
        self._journal.append_line(record)

    def close(self) -> None:
        self._journal.close()

    # ---- bounded memory ------------------------------------------------------------------------
    def evict_closed(self, now: float | None = None, batch: int = 256) -> int:
        """Forget the orders closed, and the rejected ClOrdIDs refused, more than `retention_s`
        before `now`; returns how many orders. The lock is taken per `batch` entries, so a FIX
        thread never waits for more than a batch (~0.5 ms)."""
        if self.retention_s <= 0:
            return 0
        horizon = (time.time() if now is None else now) - self.retention_s
        closed, rejected = self._closed_queue, self._rejected_queue
        evicted = 0
        more = True
        while more:
            with self.lock:
                n = 0
                while n < batch and _due(closed, horizon):
                    o = closed.popleft()
                    key = (o.oms_session, o.oms_history[0])
                    if o.closed_at and self.orders.get(key) is o:
                        self._forget(key, o)
                        evicted += 1
                    n += 1
                while n < batch and rejected and rejected[0][0] <= horizon:
                    cl_key = rejected.popleft()[1]
                    if cl_key not in self._oms_index:  # else an order took it since: it stays
                        self._used_cl_ord_ids.discard(cl_key)
                    n += 1
                more = bool(_due(closed, horizon)
                            or (rejected and rejected[0][0] <= horizon))
        self.evicted += evicted
        return evicted

    def _forget(self, key: OrderKey, o: Order) -> None:
        del self.orders[key]
        self._open.pop(key, None)
        for cl in self._own_cls(key, o):
            del self._oms_index[(key[0], cl)]
            self._used_cl_ord_ids.discard((key[0], cl))
        for venue_id, _ref in self._own_refs(key, o):
            del self._venue_refs[venue_id]
            self._pending_requests.pop(venue_id, None)
        if o.exec_ids:
            for exec_id in o.exec_ids.split("\t"):
                self._seen_exec.discard(exec_id)

    def _own_cls(self, key: OrderKey, o: Order) -> list[str]:
        """The OMS ClOrdIDs that name the order `key` in `_oms_index` (each also used): its
        original, and its cancel and replace requests' (which reach its history, or its venue
        refs, or both)."""
        candidates = dict.fromkeys(o.oms_history)
        for _venue_id, ref in self._own_refs(key, o):
            candidates[ref.oms_cl_ord_id] = None
        return [cl for cl in candidates if self._oms_index.get((key[0], cl)) == key]

    def _own_refs(self, key: OrderKey, o: Order) -> list[tuple[str, VenueRef]]:
        """The venue ClOrdIDs that still name the order `key`, with what they stand for."""
        refs = ((venue_id, self._venue_refs.get(venue_id)) for venue_id in o.venue_ids)
        return [(v, ref) for v, ref in refs if ref is not None and ref.order_key == key]

    def maintain(self) -> str:
        """The periodic job: evict what is past the retention, compact when due."""
        evicted = self.evict_closed()
        compacted = self.compact_if_due()
        return f"{evicted} orders evicted" + (
            f", journal compacted to {compacted} records" if compacted is not None else "")

    def records(self) -> int:
        """Records the journal holds now (snapshot included)."""
        return self._records_base + self._journal.appended - self._appended_mark

    def compact_if_due(self) -> int | None:
        """Compact when the journal holds at least `compact_min_records` records and more than
        twice what a snapshot would (~5 records an order); returns the snapshot's size."""
        n = self.records()
        estimate = 5 * len(self.orders) + len(self._rejected_queue) + 3
        if n < self._compact_min_records or n <= 2 * estimate:
            return None
        return self.compact()

    def compact(self, batch: int = 500) -> int:
        """Seal the journal, write a snapshot of the store, commit it; returns its size."""
        number, mark = self._journal.seal()
        lines = self.snapshot(batch)
        commit_snapshot(self._journal.path, number, lines)
        before = self.records()
        self._records_base, self._appended_mark = len(lines), mark
        log.info("%s compacted: %d records -> %d (%d orders kept)", self._journal.path, before,
                 self.records(), len(self.orders))
        return len(lines)

    def snapshot(self, batch: int = 500) -> list[str]:
        """Journal records that rebuild the store (see the module docstring): `batch` orders
        at a time under the lock, the lock and the GIL let go between batches."""
        with self.lock:
            lines = [f"V\t{self.venue_ids.last}"]
            if self.last_transport != "fix":
                lines.append(f"T\t{self.last_transport}\t\t0")
            keys = list(self.orders)
        for i in range(0, len(keys), batch):
            if i:
                _sleep(0.0005)
            with self.report_lock, self.lock:
                for key in keys[i:i + batch]:
                    o = self.orders.get(key)
                    if o is not None:  # else evicted meanwhile
                        self._order_lines(key, o, lines)
        with self.lock:
            for at, (session, cl) in list(self._rejected_queue):
                if (session, cl) in self._used_cl_ord_ids and (session, cl) not in self._oms_index:
                    r = self._refusals.get(session)
                    answer = (_refusal_fields((r.reason, r.text)) if r is not None
                              and r.venue_cl_ord_id is None and r.cl_ord_id == cl else "")
                    lines.append(f"U\t{session}\t{cl}\t{int(at * 1000)}{answer}")
            for (session, cl), orders in self._mass_open():
                lines.append("\t".join(("M", session, cl, *(o.oms_history[0] for o in orders))))
            lf = self._last_forward()
            if lf is not None:
                lines.append(f"F\t{lf.oms_session}\t{lf.exec_id}\t{lf.epoch_ms}\t"
                             f"{_escape(lf.message)}")
        return lines

    def _last_forward(self) -> ForwardedReport | None:
        """The last report journaled for forwarding: this run's, else the replayed one."""
        line = self._last_forward_line
        if line is None:
            return self.last_forward
        return _forwarded_report(line.split("\t"))

    def _order_lines(self, key: OrderKey, o: Order, lines: list[str]) -> None:
        """The snapshot records of one order (caller holds the lock)."""
        session, first = key
        lines.append(f"N\t{session}\t{first}\t{o.first_venue_id}\t{o.symbol}\t{o.side}\t"
                     f"{o.ord_type}\t{o.qty}\t{'' if o.price is None else o.price}\t"
                     f"{o.tif}\t{o.account}\t{o.transport}")
        last_refusal = self._refusals.get(session)
        refused = None
        for venue_id, ref in self._own_refs(key, o):
            details = self._pending_requests.get(venue_id)
            lines.append(f"Q\t{venue_id}\t{session}\t{first}\t{ref.oms_cl_ord_id}\t{ref.kind}"
                         f"{'' if details is None else _details_fields(details)}")
            if last_refusal is not None and last_refusal.venue_cl_ord_id == venue_id:
                refused = last_refusal
        if refused is not None:  # after its Q: replay finds the request it answers
            lines.append(f"R\t{refused.venue_cl_ord_id}"
                         f"{_refusal_fields((refused.reason, refused.text))}")
        lines.append("\t".join(("O", session, first, o.status, str(o.cum_qty),
                                str(o.avg_px), o.order_id, o.oms_cl_ord_id,
                                o.venue_cl_ord_id, repr(o.closed_at), *o.oms_history)))
        lines.append("\t".join(("I", session, first, *self._own_cls(key, o))))
        if o.exec_ids:
            lines.append(f"X\t{session}\t{first}\t{o.exec_ids}")

    # ---- internals -------------------------------------------------------------------------
    def _index_new(self, o: Order) -> None:
        key = (o.oms_session, o.oms_cl_ord_id)
        self.orders[key] = o
        self._open[key] = o
        self._oms_index[key] = key
        self._used_cl_ord_ids.add(key)
        self._venue_refs[o.venue_cl_ord_id] = VenueRef(key, o.oms_cl_ord_id, "new")
        o.first_venue_id = o.venue_cl_ord_id

    def _index_request(self, venue_id: str, key: OrderKey, oms_cl: str, kind: str) -> None:
        self._venue_refs[venue_id] = VenueRef(key, oms_cl, kind)
        _also_named(self.orders[key], venue_id)
        if kind in ("cancel", "replace", "amend"):
            self._used_cl_ord_ids.add((key[0], oms_cl))
            self._oms_index[(key[0], oms_cl)] = key

    def _rebind(self, venue_id: str, key: OrderKey, oms_cl: str) -> None:
        self._venue_refs[venue_id] = VenueRef(key, oms_cl, "new")
        o = self.orders[key]
        o.venue_cl_ord_id = venue_id
        _also_named(o, venue_id)

    def _closed(self, key: OrderKey, o: Order, now: float | None) -> None:
        """Keep `_open` and the eviction queue in step with the order's status; `now` is when
        it closed if it did (None: the clock is read then, not on every report)."""
        if state.is_terminal(o.status):
            if not o.closed_at:
                o.closed_at = time.time() if now is None else now
                self._closed_queue.append(o)
                self._open.pop(key, None)
        elif o.closed_at:
            o.closed_at = 0.0  # reopened by the venue's word; queued again when it closes
            self._open[key] = o

    def _apply_report(self, f: list[str], now: float | None) -> None:
        (session, first, exec_id, status, cum, avg, order_id, cur_oms, cur_venue, qty,
         price) = f
        key = (session, first)
        o = self.orders[key]
        self._seen_exec.add(exec_id)
        _add_exec_ids(o, exec_id)
        o.status = status
        self._closed(key, o, now)
        if cum:
            o.cum_qty = Decimal(cum)
        if avg:
            o.avg_px = Decimal(avg)
        if order_id:
            o.order_id = order_id
        if cur_oms:
            self._pending_requests.pop(cur_venue, None)  # the request became the order's version
            if cur_venue == o.venue_cl_ord_id and cur_oms != o.oms_cl_ord_id:
                # An in-place amend (a FIX replace always brings a new venue ClOrdID): later
                # reports under the ClOrdID the venue kept go to the OMS under the replace's.
                # Part of the report's own record, so no restart sees one without the other.
                self._venue_refs[cur_venue] = VenueRef(key, cur_oms, "new")
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
            self._forget_reused((session, cl))
            self._index_new(Order(oms_session=session, oms_cl_ord_id=cl, venue_cl_ord_id=venue,
                                  symbol=sym, side=side, ord_type=ot, qty=Decimal(q),
                                  price=Decimal(p) if p else None, tif=tif, account=acct,
                                  transport=tr, oms_history=[cl]))
            self.venue_ids.observe(venue)
        elif t == "U":
            cl_key = (f[1], f[2])
            self._forget_reused(cl_key)
            self._used_cl_ord_ids.add(cl_key)
            at = int(f[3]) / 1000 if len(f) > 3 else self._replay_now
            self._rejected_queue.append((at, cl_key))
            if len(f) > 5 and f[4]:  # a refusal's answer (see `Refusal`)
                self._refusals[f[1]] = Refusal(f[2], f[4], _unescape(f[5]), None)
            if len(f) > 6:  # a mass cancel's 35=r, journaled before it was sent
                self.last_forward = _forwarded_report(f)
            if len(f) > 7:  # and, accepted, the orders it covers (see `MassCancel`)
                self._mass_covers(cl_key, [cl for cl in f[7:] if cl])
        elif t == "M":
            self._mass_covers((f[1], f[2]), f[3:])
        elif t == "T":
            self.last_transport = f[1]
        elif t == "V":
            self.venue_ids.observe(f[1])
        elif t == "F":
            self.last_forward = ForwardedReport(f[1], f[2], int(f[3]), _unescape(f[4]))
        elif t == "R":
            self._answered(f[1], (f[2], _unescape(f[3])) if len(f) > 3 and f[2] else None)
            if len(f) > 6:  # the poller's 35=9, journaled before it was sent
                self.last_forward = _forwarded_report(f)
        elif t == "E":
            forwarded = len(f) >= _E_FIELDS + 2
            if forwarded:
                self.last_forward = _forwarded_report(f)
            if (f[1], f[2]) not in self.orders:
                self._skipped += 1
                return
            self._apply_report(f[1:_E_FIELDS],
                               int(f[_E_FIELDS]) / 1000 if forwarded else self._replay_now)
        elif ((f[2], f[3]) if t in ("Q", "A") else (f[1], f[2])) not in self.orders:
            self._skipped += 1  # a record of an order evicted by an earlier compaction
        elif t == "Q":
            self._index_request(f[1], (f[2], f[3]), f[4], f[5])
            self.venue_ids.observe(f[1])
            if f[5] == "mass" and self._mass:
                self._mass_cancel_journaled((f[2], f[3]), f[4])
            if len(f) >= 9:  # details (journals before 2026-11-27 had none; 9 fields: FIX)
                self._pending_requests[f[1]] = RequestDetails(
                    int(f[6]), Decimal(f[7]) if f[7] else None, Decimal(f[8]) if f[8] else None,
                    f[9] if len(f) >= 10 and f[9] else "fix")
        elif t == "S":
            self.orders[(f[1], f[2])].transport = f[3]
        elif t == "A":  # an amend's rebind as journals before 2026-11-27 wrote it separately
            self._rebind(f[1], (f[2], f[3]), f[4])
        elif t == "O":
            self._replay_state(f)
        elif t == "X":
            _add_exec_ids(self.orders[(f[1], f[2])], "\t".join(f[3:]))
            self._seen_exec.update(f[3:])
        elif t == "I":
            key = (f[1], f[2])
            for cl in f[3:]:
                self._oms_index[(key[0], cl)] = key
                self._used_cl_ord_ids.add((key[0], cl))

    def _forget_reused(self, cl_key: ClKey) -> None:
        """Replay met a ClOrdID taken again (a new order, or a reject) while it still names an
        order: that order was evicted before the ClOrdID could be reused, so it is forgotten
        now, as it was then. Left to the eviction at the end of replay, the new order's
        record would be applied to it, or its eviction would free the new ClOrdID."""
        key = self._oms_index.get(cl_key)
        if key is not None:
            self._forget(key, self.orders[key])
            self.evicted += 1

    def _replay_state(self, f: list[str]) -> None:
        (_, session, first, status, cum, avg, order_id, cur_oms, cur_venue, closed_at,
         *history) = f
        key = (session, first)
        o = self.orders[key]
        o.status, o.cum_qty, o.avg_px, o.order_id = status, Decimal(cum), Decimal(avg), order_id
        o.oms_cl_ord_id, o.venue_cl_ord_id, o.oms_history = cur_oms, cur_venue, history
        self._closed(key, o, float(closed_at))
