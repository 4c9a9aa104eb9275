"""A long-lasting trouble as one episode in the log, not a line per retry.

Ops run the gateway day and night. Something that is retried every few seconds for as long as
it lasts (a stalled or refused market-data subscription, an unreachable WebSocket endpoint)
used to write a warning per retry: an hour of it buried everything else and said nothing new
after the first line. So each such trouble is an `Episode`: the first line says what is wrong
and what it means, reminders say how long it has lasted (`REMINDER_FIRST_S` after the first
line, then at doubling intervals up to `REMINDER_MAX_S`), and one line closes it with its
length; the per-attempt detail goes to debug. The schedule is also a backoff: a refused
subscription is retried on it.

One schedule for every such trouble, so ops learn one rhythm; the owner keeps the episode, its
clock and its words, this module only says when a line is due.
"""

from __future__ import annotations

from typing import Final

# The first reminder comes this long after an episode's first line, then each twice as long
# after the one before, at most this far apart.
REMINDER_FIRST_S: Final = 60.0
REMINDER_MAX_S: Final = 900.0


def duration(seconds: float) -> str:
    """`seconds` for a log line: "42.0 s" under two minutes, "1 h 02 min 05 s" beyond."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (f"{hours} h {minutes:02d} min {secs:02d} s" if hours
            else f"{minutes} min {secs:02d} s")


class Episode:
    """When one trouble's next log line (or retry) is due, on the owner's monotonic clock.

    `since`: when the trouble began, for `lasted`. `first_at`: when its first line is due
    (default `since`: at once; later, e.g. for a connection that is given a grace period).
    `due(now)` is True for the first line, then for each reminder; `lines` counts them, so
    ``lines == 1`` after a True `due` means it was the first."""

    __slots__ = ("_every", "_next", "lines", "since")

    def __init__(self, since: float, first_at: float | None = None) -> None:
        self.since = since
        self.lines = 0
        self._next = since if first_at is None else first_at
        self._every = REMINDER_FIRST_S

    @property
    def next_at(self) -> float:
        """When the next line is due."""
        return self._next

    def due(self, now: float) -> bool:
        """True when a line is due at `now`; the one after is then scheduled (`REMINDER_FIRST_S`
        after the first line, each gap twice the one before, at most `REMINDER_MAX_S`)."""
        if now < self._next:
            return False
        self.lines += 1
        self._next = now + self._every
        self._every = min(REMINDER_MAX_S, self._every * 2)
        return True

    def lasted(self, now: float) -> str:
        """How long the trouble has lasted at `now`, for a log line."""
        return duration(now - self.since)
