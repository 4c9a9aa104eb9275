"""The FIX 4.4 OrdStatus (39) state machine, as the gateway tracks each order.

We track status to answer OMS questions (status request, mass cancel, open-order count) and
to notice a venue report that makes no sense. An impossible transition is logged and the
venue's word is kept: the venue owns the order, we only mirror it.
"""

from __future__ import annotations

from typing import Final

NEW: Final = "0"
PARTIALLY_FILLED: Final = "1"
FILLED: Final = "2"
DONE_FOR_DAY: Final = "3"
CANCELED: Final = "4"
REPLACED: Final = "5"  # FIX 4.2 only; kept for venues that still send it
PENDING_CANCEL: Final = "6"
STOPPED: Final = "7"
REJECTED: Final = "8"
SUSPENDED: Final = "9"
PENDING_NEW: Final = "A"
CALCULATED: Final = "B"
EXPIRED: Final = "C"
ACCEPTED_FOR_BIDDING: Final = "D"
PENDING_REPLACE: Final = "E"

NAMES: Final[dict[str, str]] = {
    NEW: "New", PARTIALLY_FILLED: "PartiallyFilled", FILLED: "Filled",
    DONE_FOR_DAY: "DoneForDay", CANCELED: "Canceled", REPLACED: "Replaced",
    PENDING_CANCEL: "PendingCancel", STOPPED: "Stopped", REJECTED: "Rejected",
    SUSPENDED: "Suspended", PENDING_NEW: "PendingNew", CALCULATED: "Calculated",
    EXPIRED: "Expired", ACCEPTED_FOR_BIDDING: "AcceptedForBidding",
    PENDING_REPLACE: "PendingReplace",
}

TERMINAL: Final = frozenset({FILLED, CANCELED, REJECTED, EXPIRED, DONE_FOR_DAY})

# Gateway-local status before the venue has said anything (we sent it, no report yet).
SENT: Final = "sent"

_ANY_LIVE = frozenset({NEW, PARTIALLY_FILLED, PENDING_CANCEL, PENDING_REPLACE, SUSPENDED, STOPPED})
_ALLOWED: Final[dict[str, frozenset[str]]] = {
    # A cancel or replace of an order not yet acknowledged may be answered Pending Cancel or
    # Pending Replace before the order's New (FIX 4.4 Vol. 4 Appendix D, the scenarios of a
    # cancel and a replace request issued for an order that has not yet been acknowledged).
    SENT: frozenset({PENDING_NEW, NEW, PARTIALLY_FILLED, FILLED, REJECTED, CANCELED, EXPIRED,
                     PENDING_CANCEL, PENDING_REPLACE}),
    PENDING_NEW: frozenset({NEW, PARTIALLY_FILLED, FILLED, REJECTED, CANCELED, EXPIRED,
                            PENDING_CANCEL, PENDING_REPLACE}),
    NEW: _ANY_LIVE | {FILLED, CANCELED, EXPIRED, DONE_FOR_DAY, REPLACED},
    PARTIALLY_FILLED: _ANY_LIVE | {FILLED, CANCELED, EXPIRED, DONE_FOR_DAY, REPLACED},
    PENDING_CANCEL: _ANY_LIVE | {FILLED, CANCELED, EXPIRED},
    PENDING_REPLACE: _ANY_LIVE | {FILLED, CANCELED, EXPIRED, REPLACED},
    REPLACED: _ANY_LIVE | {FILLED, CANCELED, EXPIRED},
    SUSPENDED: _ANY_LIVE | {FILLED, CANCELED, EXPIRED},
    STOPPED: _ANY_LIVE | {FILLED, CANCELED, EXPIRED},
}


def is_terminal(status: str) -> bool:
    return status in TERMINAL


def can_transition(old: str, new: str) -> bool:
    """True when FIX 4.4 allows moving from `old` to `new` (a repeat of the same is allowed)."""
    if old == new:
        return True
    if old in TERMINAL:
        return False
    return new in _ALLOWED.get(old, frozenset())
