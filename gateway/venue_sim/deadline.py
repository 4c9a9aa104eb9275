"""Kraken's ``deadline`` on order requests (REST AddOrder/AmendOrder, WS v2 add_order), checked
the same way by the simulator's REST and WebSocket faces.

A request processed after its deadline is refused without reaching the book. That is what
lets a client whose request timed out settle the question: once the deadline has passed, an
order it cannot find will never appear.
"""

from __future__ import annotations

from datetime import datetime

__all__ = ["MAX_AHEAD_S", "deadline_error"]

MAX_AHEAD_S = 60.0  # Kraken refuses a deadline further ahead than this


def deadline_error(text: str | None, now_s: float) -> str | None:
    """Kraken's error string for a request with this ``deadline`` (RFC 3339) arriving at
    `now_s` (epoch seconds), or None when it may be processed (no deadline, or not passed)."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return "EGeneral:Invalid arguments:deadline"
    if when.tzinfo is None:
        return "EGeneral:Invalid arguments:deadline"
    deadline = when.timestamp()
    if deadline > now_s + MAX_AHEAD_S:
        return "EGeneral:Invalid arguments:deadline"
    if now_s > deadline:
        return "EService:Deadline elapsed"
    return None
