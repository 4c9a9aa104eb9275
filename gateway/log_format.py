"""Log line formats shared by `fixgw run` and its child processes: text, or one JSON object per
line for log shippers (`[gateway] log_format`).

Why a module of its own: the event process (`gateway.events.process`) must log in the same
format as the gateway that started it, and low-level packages may not import the CLI. Imports
nothing of the gateway.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

__all__ = ["JsonFormatter", "setup_logging"]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC ISO 8601), level, logger, msg (+ process for a child
    process's lines, + exc when any)."""

    def __init__(self, process: str = "") -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": self.formatTime(record), "level": record.levelname, "logger": record.name,
               "msg": record.getMessage()}
        if self.process:
            out["process"] = self.process
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def setup_logging(level: str, log_format: str = "text", process: str = "") -> None:
    """Root logging to stderr; `process` tags a child process's lines ("event process")."""
    tag = f" [{process}]" if process else ""
    logging.basicConfig(level=getattr(logging, level, logging.INFO), stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s %(name)s{tag}: %(message)s")
    if log_format == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter(process))
