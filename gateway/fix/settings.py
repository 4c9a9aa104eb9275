"""Rendering our config into QuickFIX session settings files.

We render the classic QuickFIX .cfg text (and write it next to the stores) rather than build
settings through the API, so ops can read exactly what the engine was given, in the format
every FIX ops person already knows from QuickFIX and QuickFIX/J.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import quickfix as fix

from gateway.config.model import ScheduleConfig

FIX44 = "FIX.4.4"


def fix_specs_dir() -> Path:
    """`fix_specs/` at the repository root: the package is installed editable from it."""
    return Path(__file__).resolve().parents[2] / "fix_specs"


def data_dictionary_path() -> Path:
    return fix_specs_dir() / "FIX44-kraken.xml"


def schedule_settings(schedule: ScheduleConfig) -> dict[str, str]:
    """Daily reset: a session that ends at the reset time and starts `rollover_s` later
    (`ScheduleConfig.session_times`). At its end QuickFIX logs the session out; the first
    logon after its start begins a new session, from sequence number 1 on both sides."""
    if schedule.mode == "non-stop":
        return {"NonStopSession": "Y"}
    start, end = schedule.session_times()
    return {"StartTime": start.strftime("%H:%M:%S"), "EndTime": end.strftime("%H:%M:%S"),
            "UseLocalTime": "N"}


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 on Linux by default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_PORT_LOW = 20000
_PORT_HIGH = max(_PORT_LOW + 1000, _ephemeral_low())
_issued: set[int] = set()
_issued_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A currently free TCP port (QuickFIX cannot bind port 0 and tell us which it got).

    Chosen below the kernel's ephemeral range. A port from bind(0) is ephemeral: until its
    owner binds it, any outgoing connection on the machine, or any other bind(0), may take
    it (a test's acceptor then failed with "address already in use"). Outside that range only
    another explicit bind can take it, and this process never hands one out twice. Random, so
    processes that pick ports at the same time rarely pick the same one.
    """
    rng = secrets.SystemRandom()
    with _issued_lock:
        for _ in range(200):
            port = rng.randrange(_PORT_LOW, _PORT_HIGH)
            if port in _issued:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
            _issued.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # The low range is crowded: an ephemeral port is still better than none.
        s.bind((host, 0))
        return int(s.getsockname()[1])


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def acceptor_address_policy(host: str, allow: Sequence[str]) -> dict[str, str]:
    """QuickFIX's acceptor always binds every interface; a loopback `host` is therefore
    enforced as an allow-list of loopback peers, so the default really is loopback-only."""
    addresses = list(allow)
    if not addresses and is_loopback(host):
        addresses = ["127.0.0.1"]
    return {"AllowedRemoteAddresses": ",".join(addresses)} if addresses else {}


@dataclass
class SessionBlock:
    sender_comp_id: str
    target_comp_id: str
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class SettingsFile:
    """One QuickFIX settings file: defaults plus sessions, kept as ordered key/value text."""

    defaults: dict[str, str]
    sessions: list[SessionBlock]

    def render(self) -> str:
        lines = ["# Rendered by fixgw from the deployment config; do not edit by hand.",
                 "[DEFAULT]"]
        lines += [f"{k}={v}" for k, v in self.defaults.items()]
        for s in self.sessions:
            lines += ["", "[SESSION]", f"BeginString={FIX44}",
                      f"SenderCompID={s.sender_comp_id}", f"TargetCompID={s.target_comp_id}"]
            lines += [f"{k}={v}" for k, v in s.options.items()]
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> fix.SessionSettings:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.render(), encoding="utf-8")
        return fix.SessionSettings(str(path))


# Validation a venue session relaxes (gateway.server.gateway.Gateway.venue_settings).
VENUE_LENIENCY: Final = {
    "ValidateUserDefinedFields": "N",
    "AllowUnknownMsgFields": "Y",
    "ValidateFieldsOutOfOrder": "N",
}


def common_defaults(
    *,
    connection_type: str,
    store_dir: Path,
    log_dir: Path | None,
    schedule: ScheduleConfig,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Paths are rendered absolute, resolved as the gateway resolves them (a relative one
    against the working directory): the .cfg says where the files are, and QuickFIX, which
    trims a value's surrounding spaces, reads the same directory the gateway's own readers
    of the stores use (a relative " var" was its "var")."""
    store_dir.mkdir(parents=True, exist_ok=True)
    d = {
        "ConnectionType": connection_type,
        "FileStorePath": str(store_dir.absolute()),
        "UseDataDictionary": "Y",
        "DataDictionary": str(data_dictionary_path()),
        "ValidateUserDefinedFields": "Y",
        "ValidateFieldsHaveValues": "Y",
        "ValidateFieldsOutOfOrder": "Y",
        "AllowUnknownMsgFields": "N",
        "ValidateLengthAndChecksum": "Y",
        "CheckCompID": "Y",
        "CheckLatency": "Y",
        "MaxLatency": "120",
        "SocketNodelay": "Y",
        "PersistMessages": "Y",
        "TimestampPrecision": "6",
        "LogonTimeout": "10",
        "LogoutTimeout": "2",
    }
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        d["FileLogPath"] = str(log_dir.absolute())
    d.update(schedule_settings(schedule))
    d.update(extra or {})
    return d


def session_key(session_id: fix.SessionID) -> str:
    """A stable readable name for a session: SENDER->TARGET."""
    return f"{session_id.getSenderCompID().getValue()}->{session_id.getTargetCompID().getValue()}"
