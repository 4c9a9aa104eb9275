"""The simulator's session-schedule flags, both ways: parsed into a `ScheduleConfig` by its
command line, and rendered from one by whoever starts it as a child (`fixgw run` gives it the
gateway's own `[schedule]`, so both sides roll over together, as a real deployment's config
must match Kraken's)."""

from __future__ import annotations

import argparse
from datetime import time

from pydantic import ValidationError

from gateway.config.model import ScheduleConfig

__all__ = ["add_schedule_flags", "schedule_flags", "schedule_from_flags"]


def add_schedule_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reset-time-utc", default="22:00:00", metavar="HH:MM:SS",
                   help="daily rollover: FIX sessions are logged out at this UTC time "
                        "(default 22:00:00, Kraken's)")
    p.add_argument("--rollover-s", type=int, default=30, metavar="N",
                   help="... and take no logon for N seconds; the next logon starts again "
                        "from sequence number 1 (default 30)")
    p.add_argument("--non-stop", action="store_true",
                   help="no daily rollover: sequence numbers only ever go on")


def schedule_from_flags(p: argparse.ArgumentParser, args: argparse.Namespace) -> ScheduleConfig:
    """The parsed flags as a schedule; a bad value exits with argparse's usage error."""
    if args.non_stop:
        return ScheduleConfig(mode="non-stop")
    try:
        reset = time.fromisoformat(args.reset_time_utc)
        return ScheduleConfig(reset_time_utc=reset, rollover_s=args.rollover_s)
    except ValueError as exc:  # ValidationError is a ValueError
        if isinstance(exc, ValidationError):
            detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                               for e in exc.errors())
        else:
            detail = f"--reset-time-utc: {exc}"
        p.error(detail.replace("rollover_s", "--rollover-s"))


def schedule_flags(schedule: ScheduleConfig) -> list[str]:
    if schedule.mode == "non-stop":
        return ["--non-stop"]
    return ["--reset-time-utc", schedule.reset_time_utc.strftime("%H:%M:%S"),
            "--rollover-s", str(schedule.rollover_s)]
