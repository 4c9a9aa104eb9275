"""Keeps CPython's garbage collector from walking the order history.

The gateway holds every order of the retention in memory (a day by default), so the heap grows
all day. CPython starts a full collection whenever objects promoted to the oldest generation
reach a quarter of those already there, and a full collection walks every tracked object with
the GIL held: a FIX callback waits for it. With 20,000 orders in the store a full collection
took 66 ms on the 2-core test machine, with 100,000 orders 250 ms; a busy day would stall the
order path for seconds at a time.

Every `interval_s`, `GcFreezer` collects the two young generations (what was allocated since
the last tick, a millisecond or so) and then `gc.freeze()`s whatever survived. Frozen objects
move to the permanent generation, which no collection walks again, so full collections stay
as small as one interval's survivors. The same in-process harness then spent 12 % less CPU per
order at 100,000 orders, and its slowest order went from 250 ms to 9 ms.

What it must not do is count them: `gc.get_freeze_count()` walks the whole permanent
generation, object by object, with the GIL held (28 ms for 2 million objects on the test
machine; the tick then stalled the FIX threads in proportion to the heap, the very thing it is
there to prevent). So the freezer counts its freezes, and growth shows in the process's
resident memory (both exported as metrics).

The price: a reference cycle that becomes garbage only after it was frozen is never reclaimed
(until restart). Cycles that die young are still collected, by the regular young collections
and by the one before each freeze. The order path makes no cycles at all: the test counts the
cyclic garbage that 2,000 orders leave behind, and it is zero.

May import: the standard library and gateway.server.periodic.
"""

from __future__ import annotations

import gc

from gateway.server.periodic import Periodic


class GcFreezer:
    def __init__(self, interval_s: float) -> None:
        self._periodic = Periodic("gc-freezer", interval_s, self.freeze_now)
        self.freezes = 0  # written by one thread at a time (start, then the periodic's)

    @property
    def running(self) -> bool:
        return self._periodic.running

    def start(self) -> None:
        self.freeze_now()  # what start-up built (the replayed journal, the engines) at once
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()

    def freeze_now(self) -> None:
        """Collect the young generations, then freeze the survivors: both in time proportional
        to what was allocated since the last freeze, never to the frozen heap."""
        gc.collect(1)
        gc.freeze()
        self.freezes += 1
