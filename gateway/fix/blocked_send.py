"""Cut a connection whose QuickFIX send is blocked: shut down the socket a thread is sending on.

QuickFIX's ``Session.send`` writes to the socket on the calling thread and blocks while the
peer's TCP window is full, holding the session's mutex, so ``Session.disconnect()`` would block
too. The sending thread sits in a ``send(2)`` on the connection's socket, which
``/proc/self/task/<tid>/syscall`` names; shutting that socket down fails the send at once, and
QuickFIX's reader thread sees the close and ends the session as after any drop. Linux only
(x86_64, aarch64); elsewhere ``close_blocked_send`` returns False.

Used by the simulator's per-session outboxes and the gateway's OMS market-data outboxes, each
cutting a peer that stopped reading.

May import: the standard library.
"""

from __future__ import annotations

import os
import platform
import socket
import stat
import time

__all__ = ["CAN_CUT", "close_blocked_send"]

_POLL_S = 0.02

# send(2) as the kernel sees it (glibc's send() is the sendto syscall), per architecture.
_SEND_SYSCALLS_BY_MACHINE: dict[str, frozenset[int]] = {
    "x86_64": frozenset({44, 46}),  # sendto, sendmsg
    "aarch64": frozenset({206, 211}),
}
_SEND_SYSCALLS = _SEND_SYSCALLS_BY_MACHINE.get(platform.machine(), frozenset())
CAN_CUT = bool(_SEND_SYSCALLS)  # this platform can tell which socket a thread sends on


def _blocked_send_fd(native_id: int) -> tuple[int, str] | None:
    """The socket a thread of this process is blocked sending on, with the syscall line that
    named it; None if it is not in a send (or this platform cannot tell)."""
    try:
        with open(f"/proc/self/task/{native_id}/syscall") as f:
            line = f.read().strip()
    except OSError:
        return None
    parts = line.split()
    if len(parts) < 2 or not parts[0].isdigit() or int(parts[0]) not in _SEND_SYSCALLS:
        return None
    return int(parts[1], 16), line


def close_blocked_send(native_id: int, wait_s: float, local_port: int | None = None) -> bool:
    """Shut down the socket the thread ``native_id`` is blocked sending on, within ``wait_s``;
    with `local_port`, only a socket bound to that port (a connection an acceptor listening
    there took: never the venue's, when a thread that sends to both is the one blocked).

    The thread's blocked send is re-checked after the descriptor is duplicated, so the socket
    shut down is the one it is still blocked on (a descriptor number can be reused only after
    that send returned). ``shutdown`` rather than ``close``: a close does not wake a thread
    blocked in a send, and the descriptor is QuickFIX's to close.
    """
    deadline = time.monotonic() + wait_s
    while True:
        found = _blocked_send_fd(native_id)
        if found is not None:
            fd, line = found
            try:
                dup = os.dup(fd)
            except OSError:
                dup = -1
            if dup >= 0:
                try:
                    if stat.S_ISSOCK(os.fstat(dup).st_mode) and (
                            _blocked_send_fd(native_id) == (fd, line)):
                        s = socket.socket(fileno=dup)
                        dup = -1  # the socket object owns it now
                        try:
                            if local_port is not None and s.getsockname()[1] != local_port:
                                return False
                            s.shutdown(socket.SHUT_RDWR)
                            return True
                        except OSError:
                            pass
                        finally:
                            s.close()
                finally:
                    if dup >= 0:
                        os.close(dup)
        if not _SEND_SYSCALLS or time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
