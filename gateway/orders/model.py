"""One order as the gateway knows it: who owns it (OMS session and its ClOrdIDs) and how it is
known at the venue (venue ClOrdIDs and OrderID), with the figures the venue last reported."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from gateway.orders import state


@dataclass(slots=True)
class Order:
    oms_session: str          # QuickFIX session key of the owning OMS, e.g. "FIXGW->OMS"
    oms_cl_ord_id: str        # the OMS's ClOrdID of the order's latest accepted version
    venue_cl_ord_id: str      # our ClOrdID at the venue for that version
    symbol: str
    side: str                 # FIX 54
    ord_type: str             # FIX 40
    qty: Decimal
    price: Decimal | None
    tif: str                  # FIX 59
    account: str = ""
    order_id: str = ""        # venue OrderID (37), known after the first report
    status: str = state.SENT
    cum_qty: Decimal = Decimal(0)
    avg_px: Decimal = Decimal(0)
    transport: str = "fix"
    # Every OMS ClOrdID this order has had (original, then each replace), oldest first.
    oms_history: list[str] = field(default_factory=list)
    # Bookkeeping of gateway.orders.store, so that a closed order can be evicted with every
    # index entry that points at it: when it closed (wall-clock seconds; 0 = open), the venue
    # ClOrdID it was created under and any others that have named it since (requests,
    # rebinds), and the venue ExecIDs applied to it, tab-joined as the journal holds them.
    # Strings rather than lists where it is every order: a string is not tracked by the garbage
    # collector, and two more lists per order measured ~5 µs more per order in collections.
    closed_at: float = 0.0
    first_venue_id: str = ""
    more_venue_ids: list[str] | None = None
    exec_ids: str = ""

    @property
    def venue_ids(self) -> list[str]:
        """Every venue ClOrdID that has named this order, first first."""
        return [self.first_venue_id, *(self.more_venue_ids or ())]

    @property
    def leaves_qty(self) -> Decimal:
        if state.is_terminal(self.status):
            return Decimal(0)
        return max(self.qty - self.cum_qty, Decimal(0))

    @property
    def is_open(self) -> bool:
        return not state.is_terminal(self.status)


@dataclass(slots=True, frozen=True)
class PendingRequest:
    """A cancel, replace or status request we sent to the venue under its own venue ClOrdID."""

    kind: str                 # "cancel" | "replace" | "amend" | "status" | "mass"
    order_key: tuple[str, str]  # (oms_session, original oms ClOrdID) of the order it acts on
    oms_cl_ord_id: str        # the OMS's ClOrdID of the request (11 on F/G/q)
    new_qty: Decimal | None = None
    new_price: Decimal | None = None
