"""Operator decisions that outlive a restart: the kill switch, and sessions held logged out.

Both tighten. A restart (`kill -9` included) that undid them would resume trading an operator
halted, or log on a session an operator took down (venue maintenance, an OMS misbehaving).
What loosens (a gate rule disabled, a transport forced) is not kept: a restart goes back to
the config, the safer side. Each is a small JSON file in the data directory, replaced
whole (a temporary file, synced, renamed, the directory synced), so a crash or a power cut
leaves the old file or the new one, and an answer "done" means it is on disk. Writers of one
file are serialised, and each write has its own temporary name, so two admin calls at once
cannot rename each other's half-written file.

May import: the standard library and gateway.durable.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gateway.durable import fsync_dir

log = logging.getLogger(__name__)

KILL_SWITCH_FILE = "kill-switch.json"
SESSION_HOLDS_FILE = "session-holds.json"


def write_json_atomic(path: Path, value: Any) -> None:
    """Replace `path` with `value` as JSON: a temporary file of its own (unique per call, so
    concurrent writers never share one), synced, renamed over `path`, the directory synced."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(value, indent=1) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def remove_durably(path: Path) -> None:
    """Delete `path` (if there) and sync its directory, so the removal survives a power cut."""
    path.unlink(missing_ok=True)
    fsync_dir(path.parent)


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class KillSwitchFile:
    """`<data-dir>/kill-switch.json`, there while an operator's kill switch is on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # admin calls run on several threads

    def save(self, by: str) -> None:
        with self._lock:
            write_json_atomic(self.path, {"by": by, "at": utc_now()})

    def clear(self) -> None:
        with self._lock:
            remove_durably(self.path)

    def load(self) -> str | None:
        """Who turned the kill switch on and when, if it was on when the gateway stopped; a
        file that cannot be read counts as on (safer on than off)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"{self.path} unreadable: {exc.strerror}"
        try:
            held = json.loads(text)
            return f"by {held['by']} at {held['at']}"
        except (ValueError, KeyError, TypeError):
            return f"{self.path}"


@dataclass(frozen=True)
class SessionHold:
    """One session an operator logged out: QuickFIX's SessionID fields, who, when, why."""

    begin_string: str
    sender_comp_id: str
    target_comp_id: str
    by: str
    at: str
    reason: str

    @property
    def name(self) -> str:
        return f"{self.sender_comp_id}->{self.target_comp_id}"


class SessionHolds:
    """`<data-dir>/session-holds.json`: sessions logged out by an operator until one logs
    them on again. Read once at start; written on every hold and release (admin threads)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._holds: dict[str, SessionHold] = {}

    def load(self) -> list[SessionHold]:
        """The holds left by the last run. A file that cannot be read holds nothing, loudly:
        the kill switch, not a guess about which sessions were down, is the tool to halt."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            holds = {k: SessionHold(**v) for k, v in raw.items()}
        except FileNotFoundError:
            holds = {}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.error("%s unreadable (%s): no session is held logged out from it; check the "
                      "sessions and `fixgwctl logout` any that must stay down", self.path, exc)
            holds = {}
        with self._lock:
            self._holds = holds
        return list(holds.values())

    def hold(self, key: str, hold: SessionHold) -> None:
        """Hold `key`, in memory at once; OSError when the file cannot be written (the hold
        stands all the same, and the next write that succeeds carries it)."""
        with self._lock:
            self._holds[key] = hold
            self._save()

    def release(self, key: str) -> None:
        """Release `key`, in memory at once; OSError when the file cannot be written."""
        with self._lock:
            if self._holds.pop(key, None) is not None:
                self._save()

    def _save(self) -> None:
        if self._holds:
            write_json_atomic(self.path, {k: asdict(v) for k, v in self._holds.items()})
        else:
            remove_durably(self.path)
