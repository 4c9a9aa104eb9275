"""The admin audit log: one JSON line per mutating admin action, appended and fsynced.

Each record says who (role and token fingerprint), what (the RPC), its arguments, when (ISO 8601
UTC) and the result (ok and message). The file is opened in append mode and never rewritten;
each record is flushed and fsynced before the action's answer goes back (operator actions are
rare, so durability costs nothing that matters).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("fixgw.admin")


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def record(self, *, who: str, what: str, args: dict[str, Any], ok: bool,
               message: str, when: datetime | None = None) -> dict[str, Any]:
        stamp = (when or datetime.now(UTC)).astimezone(UTC)
        rec = {"when": stamp.isoformat(timespec="microseconds").replace("+00:00", "Z"),
               "who": who, "what": what, "args": args,
               "result": {"ok": ok, "message": message}}
        line = json.dumps(rec, separators=(",", ":"), sort_keys=False) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())
        return rec

    def close(self) -> None:
        """Close the file; a record still buffered that cannot be written now (disk full) was
        logged when its write failed, so the stop goes on."""
        with self._lock:
            if not self._file.closed:
                try:
                    self._file.close()
                except OSError as exc:
                    log.error("admin audit log %s closed with records not written (%s)",
                              self.path, exc)


def read_audit(path: Path) -> list[dict[str, Any]]:
    """Every record in an audit file (for tests and tooling)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
