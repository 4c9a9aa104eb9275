"""A daemon thread that runs one housekeeping job at a fixed interval.

The jobs (freezing the GC's survivors, evicting closed orders) must never die silently: an
exception is logged with the job's name and the next tick runs as usual.

May import: the standard library only.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("fixgw.housekeeping")


class Periodic:
    def __init__(self, name: str, interval_s: float, job: Callable[[], object]) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self.name = name
        self.interval_s = interval_s
        self._job = job
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                result = self._job()
            except Exception:
                log.exception("%s failed", self.name)
                continue
            log.debug("%s: %s", self.name, result)
