"""Kraken's ``deadline`` on order requests (REST AddOrder/AmendOrder, WS v2 add_order), checked
the same way by the simulator's REST and WebSocket faces.

A request processed after its deadline is refused without reaching the book. That is what
lets a client whose request timed out settle the question: once the deadline has passed, an
order it cannot find will never appear. So the check that matters is the one made where the
request is processed, under the engine's lock: a face checks on arrival (a malformed or
already passed deadline is refused at once) and hands the :class:`Deadline` to the engine,
which checks it again once it holds the lock, since a request can wait there (behind other
calls) past its deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

__all__ = ["MAX_AHEAD_S", "TEXT_ELAPSED", "TEXT_INVALID", "Deadline", "DeadlineRefused",
           "parse_deadline"]

MAX_AHEAD_S = 60.0  # Kraken refuses a deadline further ahead than this
TEXT_ELAPSED = "EService:Deadline elapsed"
TEXT_INVALID = "EGeneral:Invalid arguments:deadline"


class DeadlineRefused(Exception):
    """The request is refused for its deadline; ``error`` is Kraken's error string."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@dataclass(frozen=True, slots=True)
class Deadline:
    """A request's deadline, ``at_s`` epoch seconds on ``clock`` (the face's wall clock)."""

    at_s: float
    clock: Callable[[], float] = time.time

    def check(self) -> None:
        """Raise :class:`DeadlineRefused` if the deadline has passed."""
        if self.clock() > self.at_s:
            raise DeadlineRefused(TEXT_ELAPSED)


def parse_deadline(text: object, clock: Callable[[], float] = time.time) -> Deadline | None:
    """The deadline of a request carrying ``text`` (RFC 3339; None: no deadline), checked on
    arrival: raises :class:`DeadlineRefused` when it is malformed, more than
    :data:`MAX_AHEAD_S` ahead, or already passed."""
    if text is None or text == "":
        return None
    if not isinstance(text, str):
        raise DeadlineRefused(TEXT_INVALID)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise DeadlineRefused(TEXT_INVALID) from None
    if when.tzinfo is None:
        raise DeadlineRefused(TEXT_INVALID)
    deadline = Deadline(when.timestamp(), clock)
    if deadline.at_s > clock() + MAX_AHEAD_S:
        raise DeadlineRefused(TEXT_INVALID)
    deadline.check()
    return deadline
