"""Signals for a child process that `fixgw run` owns and stops by closing its stdin (the event
process, the embedded venue).

A terminal's Ctrl-C (SIGINT) and hangup (SIGHUP), and a service manager's stop (SIGTERM to every
process of the service: systemd's default KillMode), reach the whole process group, children
included. Such a child must not stop on them: the gateway logs its sessions out and publishes
its last events first, then closes the child's stdin. Low-level: imports nothing of ours.
"""

from __future__ import annotations

import signal

__all__ = ["GROUP_STOP_SIGNALS", "leave_stopping_to_owner"]

GROUP_STOP_SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)


def leave_stopping_to_owner() -> None:
    for sig in GROUP_STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
