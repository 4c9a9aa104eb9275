"""The gateway's order book of record: every order, every ClOrdID it has had on both sides,
and the venue ExecIDs already forwarded, rebuilt from the journal at start.

Two QuickFIX threads (OMS acceptor, venue initiator) use it, so each public method takes the
one lock; methods are small so the lock is held for microseconds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway.orders import state
from gateway.orders.journal import Journal
from gateway.orders.model import Order

OrderKey = tuple[str, str]  # (oms_session, first OMS ClOrdID)


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


def _dec(v: Any) -> Decimal | None:
    return None if v is None else Decimal(v)


class OrderStore:
    def __init__(self, journal_path: Path, fsync_interval_ms: int = 50) -> None:
        self.lock = threading.Lock()
        self.orders: dict[OrderKey, Order] = {}
        self._oms_index: dict[tuple[str, str], OrderKey] = {}
        self._used_cl_ord_ids: set[tuple[str, str]] = set()
        self._venue_refs: dict[str, VenueRef] = {}
        self._seen_exec: set[str] = set()
        self.venue_ids = VenueIdSource()
        for rec in Journal.replay(journal_path):
            self._apply(rec)
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

    # ---- changes (each is journaled before it is visible) --------------------------------
    def mark_used(self, oms_session: str, cl_ord_id: str) -> None:
        """Remember a ClOrdID the gateway rejected, so a retry with it is still a duplicate."""
        with self.lock:
            self._record({"t": "U", "s": oms_session, "c": cl_ord_id})

    def add_order(self, order: Order) -> None:
        with self.lock:
            self._record({
                "t": "N", "s": order.oms_session, "c": order.oms_cl_ord_id,
                "v": order.venue_cl_ord_id, "sym": order.symbol, "side": order.side,
                "ot": order.ord_type, "q": str(order.qty),
                "p": None if order.price is None else str(order.price), "tif": order.tif,
                "acct": order.account, "tr": order.transport,
            })

    def add_request(self, venue_cl_ord_id: str, order_key: OrderKey, oms_cl_ord_id: str,
                    kind: str) -> None:
        with self.lock:
            self._record({"t": "Q", "v": venue_cl_ord_id, "k": list(order_key),
                          "c": oms_cl_ord_id, "kind": kind})

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
                     ) -> tuple[bool, dict[str, Any]]:
        """Apply a venue report to the in-memory order, and return (legal, record).

        The record is not journaled here: the caller forwards the report first and then calls
        `commit`, so a crash in between makes the venue resend it (see routing.router). The
        in-memory state moves first so that an OMS acting on the forwarded report (a replace
        right after a fill) already sees the new state. `legal` is False when FIX 4.4 does not
        allow the status move; the venue's word is kept anyway and the caller logs it.
        """
        with self.lock:
            legal = state.can_transition(target.order.status, ord_status)
            rec: dict[str, Any] = {"t": "E", "k": list(self._key(target.order)), "x": exec_id,
                                   "s": ord_status}
            if cum_qty is not None:
                rec["cq"] = cum_qty
            if avg_px is not None:
                rec["ap"] = avg_px
            if order_id:
                rec["o"] = order_id
            if exec_type in ("4", "5") or (exec_type == "0" and target.kind == "replace"):
                # The cancel/replace request became the order's current version.
                rec["cur"] = [target.oms_cl_ord_id, venue_cl_ord_id]
            if exec_type == "5":
                if qty is not None:
                    rec["q"] = qty
                if price is not None:
                    rec["p"] = price
            self._apply(rec)
            return legal, rec

    def commit(self, rec: dict[str, Any]) -> None:
        """Journal a record already applied in memory."""
        self._journal.append(rec)

    def close(self) -> None:
        self._journal.close()

    # ---- internals -------------------------------------------------------------------------
    @staticmethod
    def _key(order: Order) -> OrderKey:
        return (order.oms_session, order.oms_history[0])

    def _record(self, rec: dict[str, Any]) -> None:
        self._journal.append(rec)
        self._apply(rec)

    def _apply(self, rec: dict[str, Any]) -> None:
        t = rec["t"]
        if t == "N":
            o = Order(oms_session=rec["s"], oms_cl_ord_id=rec["c"], venue_cl_ord_id=rec["v"],
                      symbol=rec["sym"], side=rec["side"], ord_type=rec["ot"],
                      qty=Decimal(rec["q"]), price=_dec(rec["p"]), tif=rec["tif"],
                      account=rec.get("acct", ""), transport=rec.get("tr", "fix"),
                      oms_history=[rec["c"]])
            key = (o.oms_session, o.oms_cl_ord_id)
            self.orders[key] = o
            self._oms_index[key] = key
            self._used_cl_ord_ids.add(key)
            self._venue_refs[o.venue_cl_ord_id] = VenueRef(key, o.oms_cl_ord_id, "new")
            self.venue_ids.observe(o.venue_cl_ord_id)
        elif t == "U":
            self._used_cl_ord_ids.add((rec["s"], rec["c"]))
        elif t == "Q":
            key = (rec["k"][0], rec["k"][1])
            self._venue_refs[rec["v"]] = VenueRef(key, rec["c"], rec["kind"])
            self.venue_ids.observe(rec["v"])
            if rec["kind"] in ("cancel", "replace"):
                self._used_cl_ord_ids.add((key[0], rec["c"]))
                self._oms_index[(key[0], rec["c"])] = key
        elif t == "E":
            o = self.orders[(rec["k"][0], rec["k"][1])]
            self._seen_exec.add(rec["x"])
            o.status = rec["s"]
            if "cq" in rec:
                o.cum_qty = Decimal(rec["cq"])
            if "ap" in rec:
                o.avg_px = Decimal(rec["ap"])
            if "o" in rec:
                o.order_id = rec["o"]
            if "cur" in rec:
                o.oms_cl_ord_id, o.venue_cl_ord_id = rec["cur"]
                if o.oms_cl_ord_id not in o.oms_history:
                    o.oms_history.append(o.oms_cl_ord_id)
            if "q" in rec:
                o.qty = Decimal(rec["q"])
            if "p" in rec:
                o.price = Decimal(rec["p"])
