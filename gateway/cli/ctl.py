"""`fixgwctl`: the ops CLI over the gateway's authenticated admin service (fixgw.v1.AdminService).

Connection: ``--addr`` or ``FIXGW_ADDR`` (default 127.0.0.1:50052); token: ``--token-file`` or
``FIXGW_TOKEN_FILE`` (default ./var/admin.token, the file `fixgw run` generates when no token is
configured). TLS: ``--ca-file`` (``FIXGW_CA_FILE``) when the admin listener speaks TLS
(``[admin] tls_cert_file``), plus ``--cert-file``/``--key-file`` (``FIXGW_CERT_FILE``,
``FIXGW_KEY_FILE``) when it wants client certificates (``[admin] tls_client_ca_file``).
`fixgwctl events` reads the event service instead (``--events-addr`` or
``FIXGW_EVENTS_ADDR``, default 127.0.0.1:50051, no token; ``--events-ca-file`` or
``FIXGW_EVENTS_CA_FILE`` when it speaks TLS). Exit codes: 0 ok, 1 action refused or not found
(or not confirmed; for ``health``: unhealthy), 2 usage, 3 gateway not reachable, 4
authentication/authorization failure, 5 a change (logout, kill switch, cancel...) got no answer
within ``--timeout``: it may have taken effect, so unlike 3 it is not safe to send again
without looking first; 6 a change done in part (``ActionResult.partial``: cancels not sent, or
a kill switch or logout not written to the data directory, so a restart would not keep it, or
the audit record not written): the message says what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

# gRPC's C core logs a failed TLS handshake on stderr at INFO ("Handshake failed with error
# SSL_ERROR_SSL ...") ahead of fixgwctl's own message, which says what to do; it reads this
# variable once, when grpc is first imported.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from gateway._proto.fixgw.v1 import admin_pb2, admin_pb2_grpc
from gateway.cli.version import add_version_flag
from gateway.kraken.secrets import shown

DEFAULT_ADDR = "127.0.0.1:50052"
DEFAULT_EVENTS_ADDR = "127.0.0.1:50051"
DEFAULT_TOKEN_FILE = "./var/admin.token"

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_AUTH, EXIT_UNKNOWN = 0, 1, 2, 3, 4, 5
EXIT_PARTIAL = 6

# What shows whether a change whose answer never came took effect, by admin RPC.
_CHECK_WITH = {
    "Logon": "fixgwctl sessions", "Logout": "fixgwctl sessions",
    "Disconnect": "fixgwctl sessions", "ResetSequence": "fixgwctl sessions",
    "SetSequence": "fixgwctl sessions", "KillSwitch": "fixgwctl health",
    "SetGateRule": "fixgwctl gate rules", "ForceTransport": "fixgwctl health",
    "CancelOrders": "fixgwctl orders",
}

ROLE = {admin_pb2.SESSION_ROLE_OMS_ACCEPTOR: "oms",
        admin_pb2.SESSION_ROLE_VENUE_TRADING: "venue-trading",
        admin_pb2.SESSION_ROLE_VENUE_MD: "venue-md"}

EXAMPLES = """\
examples:
  fixgwctl sessions
  fixgwctl session 'FIXGW->OMS' --json
  fixgwctl logout 'FIXGW->KRAKEN-TRD' --reason "venue maintenance" --yes
  fixgwctl logon KRAKEN-TRD
  fixgwctl set-seq 'FIXGW->OMS' --sender 120 --target 87   (--force when it is logged on)
  fixgwctl orders --session OMS --symbol BTC/USD
  fixgwctl order 1700000000123-B1
  fixgwctl cancel 1700000000123-B1 --yes
  fixgwctl cancel --session 'FIXGW->OMS' --yes
  fixgwctl kill-switch on
  fixgwctl gate rules
  fixgwctl gate disable max_notional
  fixgwctl transport force rest --yes
  fixgwctl events --kind ORDER --from 1 --follow
  FIXGW_ADDR=10.0.0.5:50052 FIXGW_TOKEN_FILE=/etc/fixgw/ro.token fixgwctl health --json
  fixgwctl --ca-file ca.pem --cert-file ops.pem --key-file ops.key sessions   (admin over mTLS)

Session names are SENDER->TARGET as `fixgwctl sessions` lists them (quote them in a shell,
where > redirects); the counterparty's CompID alone (OMS, KRAKEN-TRD) also works when it is
unambiguous.
exit codes: 0 ok, 1 refused/not found/not confirmed (health: unhealthy), 2 usage, 3 gateway
not reachable, 4 token missing, rejected or not allowed, 5 a change got no answer within
--timeout (it may have taken effect: check before sending it again), 6 a change done in part
(cancels not sent, or not written to the data directory so a restart would undo it: the
message says what)"""


class CtlError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ---- arguments -----------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser, suppress: bool) -> None:
    """Connection and output options, accepted before and after the command."""
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    p.add_argument("--addr", default=d(None), metavar="HOST:PORT",
                   help=f"admin service address (env FIXGW_ADDR; default {DEFAULT_ADDR})")
    p.add_argument("--token-file", default=d(None), metavar="PATH",
                   help=f"bearer token file (env FIXGW_TOKEN_FILE; default {DEFAULT_TOKEN_FILE})")
    p.add_argument("--ca-file", default=d(None), metavar="PATH",
                   help="CA certificate (PEM) to verify a TLS admin listener (env FIXGW_CA_FILE; "
                   "default: plaintext)")
    p.add_argument("--cert-file", default=d(None), metavar="PATH",
                   help="client certificate (PEM) for a mutual-TLS admin listener (env "
                   "FIXGW_CERT_FILE)")
    p.add_argument("--key-file", default=d(None), metavar="PATH",
                   help="private key (PEM) of --cert-file (env FIXGW_KEY_FILE)")
    p.add_argument("--json", action="store_true", default=d(False),
                   help="print the result as JSON (for scripts)")
    p.add_argument("--yes", "-y", action="store_true", default=d(False),
                   help="do not ask for confirmation of destructive commands")
    p.add_argument("--timeout", type=_positive_seconds, default=d(10.0), metavar="S",
                   help="seconds to wait for the gateway (default 10, at most 86400)")


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="fixgwctl", description="Operate a running fixgw gateway over its "
                     "admin service.", epilog=EXAMPLES, formatter_class=fmt)
    _common(parser, suppress=False)
    add_version_flag(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def cmd(name: str, help_: str, example: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, formatter_class=fmt,
                           epilog=f"example:\n  {example}")
        _common(p, suppress=True)
        return p

    cmd("sessions", "list sessions: name, role, state, seq in/out, last heard, transport",
        "fixgwctl sessions --json")
    p = cmd("session", "one session in detail", "fixgwctl session 'FIXGW->KRAKEN-TRD'")
    p.add_argument("name", metavar="NAME")
    p = cmd("logout", "send Logout and keep the session down until `logon` (asks to confirm)",
            """fixgwctl logout 'FIXGW->OMS' --reason "end of day" --yes""")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--reason", default="", help="Logout Text (58)")
    p = cmd("logon", "enable a session again (initiators connect and log on)",
            "fixgwctl logon 'FIXGW->KRAKEN-TRD'")
    p.add_argument("name", metavar="NAME")
    p = cmd("disconnect", "drop a session's connection without Logout (asks to confirm)",
            "fixgwctl disconnect 'FIXGW->KRAKEN-MD' --yes")
    p.add_argument("name", metavar="NAME")
    p = cmd("reset-seq", "reset a session's sequence numbers to 1 (asks to confirm)",
            "fixgwctl reset-seq 'FIXGW->KRAKEN-MD' --yes")
    p.add_argument("name", metavar="NAME")
    p = cmd("set-seq", "set the next outgoing (--sender) and/or expected incoming (--target) "
            "MsgSeqNum (asks to confirm); refused on a logged-on session without --force",
            "fixgwctl set-seq 'FIXGW->OMS' --sender 120 --target 87")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--sender", type=_SEQ_NUM, default=0, metavar="N")
    p.add_argument("--target", type=_SEQ_NUM, default=0, metavar="M")
    p.add_argument("--force", action="store_true",
                   help="apply it to a logged-on session too (a wrong value knocks it into a "
                   "logon/logout loop); otherwise log the session out first")
    p = cmd("orders", "orders the gateway holds, newest first: open ones, or --closed for "
            "closed ones too (kept for [gateway] closed_order_retention_s)",
            "fixgwctl orders --session OMS --symbol BTC/USD")
    _order_filters(p)
    p.add_argument("--closed", action="store_true", help="closed orders too")
    p.add_argument("--limit", type=_LIMIT, default=100, metavar="N",
                   help="at most N orders, newest first (default 100)")
    p = cmd("order", "one order in detail, found by any of its ids: an OMS ClOrdID (any "
            "version), a venue ClOrdID, or the venue's OrderID",
            "fixgwctl order 1700000000123-B1")
    p.add_argument("id", metavar="ID")
    p.add_argument("--session", default="", metavar="NAME",
                   help="look in this OMS session only (when two OMSs used the same ClOrdID)")
    p = cmd("cancel", "cancel open orders at the venue for their OMS, which gets the venue's "
            "Canceled report (ClOrdID OPS-...): one order by ID, every open order of --session "
            "and/or in --symbol, or --all (asks to confirm). New orders still pass; see "
            "kill-switch", "fixgwctl cancel 1700000000123-B1 --yes")
    p.add_argument("id", nargs="?", default="", metavar="ID",
                   help="an OMS ClOrdID, a venue ClOrdID or the venue's OrderID")
    _order_filters(p)
    p.add_argument("--all", action="store_true", help="every open order of every session")
    p = cmd("kill-switch", "on: block new orders and cancel every open order at the venue "
            "(asks to confirm); off: let orders through again", "fixgwctl kill-switch on --yes")
    p.add_argument("state", choices=("on", "off"))
    p = cmd("gate", "pre-trade gate rules: list, enable or disable one",
            "fixgwctl gate rules | fixgwctl gate disable price_collar --yes")
    p.add_argument("action", choices=("rules", "enable", "disable"))
    p.add_argument("rule", nargs="?", metavar="RULE")
    p = cmd("transport", "pin the order-flow transport (fix; ws = the fallback over the private "
            "WebSocket, REST while it is not connected; rest = REST only) or let health decide "
            "(auto); needs [venue.fallback] (asks to confirm)",
            "fixgwctl transport force rest --yes")
    p.add_argument("action", choices=("force",))
    p.add_argument("transport", choices=("fix", "ws", "rest", "auto"))
    p = cmd("events", "the gateway's event stream (EventService, env FIXGW_EVENTS_ADDR, default "
            f"{DEFAULT_EVENTS_ADDR}; no token): what is there now, or --follow to tail it",
            "fixgwctl events --kind ORDER --from 1 --follow")
    p.add_argument("--follow", "-f", action="store_true",
                   help="keep tailing (resumes after the last sequence seen on a disconnect)")
    p.add_argument("--kind", action="append", default=[], metavar="KIND",
                   help="only this kind (ORDER, SESSION_STATUS, GATE_DECISION, ...; repeatable)")
    p.add_argument("--from", dest="from_seq", type=int, default=0, metavar="N",
                   help="first sequence (default: the oldest retained; with --follow, the next)")
    p.add_argument("--events-addr", default=None, metavar="HOST:PORT",
                   help=f"event service address (env FIXGW_EVENTS_ADDR; default "
                   f"{DEFAULT_EVENTS_ADDR})")
    p.add_argument("--events-ca-file", default=None, metavar="PEM",
                   help="CA certificate to verify a TLS event port ([grpc] tls_cert_file; env "
                   "FIXGW_EVENTS_CA_FILE); --cert-file/--key-file apply when it wants client "
                   "certificates")
    cmd("health", "one-line health: venue sessions, OMS sessions, kill switch, transport; "
        "exit 0 healthy, 1 unhealthy (venue cannot take orders, market data down, or kill "
        "switch on; an OMS not logged on is named but healthy)", "fixgwctl health --json")
    return parser


def _order_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--session", default="", metavar="NAME",
                   help="this OMS session's orders (SENDER->TARGET, or the OMS's CompID)")
    p.add_argument("--symbol", default="", metavar="SYMBOL", help="orders in this symbol")


MAX_TIMEOUT_S = 86_400.0


def _positive_seconds(text: str) -> float:
    """A --timeout: more than 0 seconds and at most a day. 0 or less would fail every call at
    once, reading as a gateway that does not answer; so would inf or a huge number (gRPC's
    deadline overflows), and a mutating call would then be reported as "may have taken
    effect" (exit 5) although nothing was sent."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} is not more than 0 seconds")
    if not value <= MAX_TIMEOUT_S:  # also refuses inf
        raise argparse.ArgumentTypeError(f"{text} seconds is too long: give at most "
                                         f"{MAX_TIMEOUT_S:.0f} (a day)")
    return value


def _positive(maximum: int) -> Callable[[str], int]:
    """A whole number from 1 to `maximum`: the most the request's field holds (uint64 for a
    MsgSeqNum, uint32 for --limit). A larger one would fail in the protobuf encoder with a
    traceback instead of a usage error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{value} is too small: give 1 or more")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"{value} is too large: give at most {maximum}")
        return value
    return parse


_SEQ_NUM = _positive(2**64 - 1)  # SetSequenceRequest.next_sender/next_target: uint64
_LIMIT = _positive(2**32 - 1)  # ListOrdersRequest.limit: uint32


# ---- connection -----------------------------------------------------------------------------
def _token(path: str) -> str:
    """The token in the file at `path`. The path is named in errors through `shown`, as the
    gateway names its credential files: the commonest mistake is the token itself given where
    its file goes (FIXGW_TOKEN_FILE="$(cat token)"), and an error must not print it."""
    p = Path(path)
    name = shown(path)
    try:
        text = p.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise CtlError(EXIT_AUTH, f"no admin token: {name} does not exist. Point --token-file or "
                       "FIXGW_TOKEN_FILE at the token file `fixgw run` printed at startup "
                       "(<data-dir>/admin.token) or the one ops gave you") from None
    except OSError as exc:
        raise CtlError(EXIT_AUTH, f"cannot read admin token file {name}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise CtlError(EXIT_AUTH, f"admin token file {name} is not a token: byte {exc.start} is "
                       "not UTF-8 text. Point --token-file or FIXGW_TOKEN_FILE at the token "
                       "file the gateway uses") from None
    if not text:
        raise CtlError(EXIT_AUTH, f"admin token file {name} is empty")
    token = text.splitlines()[0].strip()
    # gRPC metadata carries printable ASCII only (anything else fails the call as "Invalid
    # metadata", read as a gateway fault), and the gateway refuses such a token at start.
    bad = next((i for i, c in enumerate(token) if not (c.isascii() and c.isprintable())), None)
    if bad is not None:
        raise CtlError(EXIT_AUTH, f"admin token file {name} does not hold a token: character "
                       f"{bad + 1} of its first line is not printable ASCII, which no gateway "
                       "token has. Point --token-file or FIXGW_TOKEN_FILE at the token file the "
                       "gateway uses")
    return token


@dataclass(frozen=True)
class TlsFiles:
    """Where fixgwctl's TLS material is; all None = plaintext."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @property
    def enabled(self) -> bool:
        return self.ca_file is not None or self.cert_file is not None

    @staticmethod
    def from_args(args: argparse.Namespace) -> TlsFiles:
        def pick(flag: str | None, env: str) -> str | None:
            return flag or os.environ.get(env) or None
        tls = TlsFiles(pick(getattr(args, "ca_file", None), "FIXGW_CA_FILE"),
                       pick(getattr(args, "cert_file", None), "FIXGW_CERT_FILE"),
                       pick(getattr(args, "key_file", None), "FIXGW_KEY_FILE"))
        if (tls.cert_file is None) != (tls.key_file is None):
            raise CtlError(EXIT_USAGE, "--cert-file and --key-file go together (env "
                           "FIXGW_CERT_FILE / FIXGW_KEY_FILE): give both for mutual TLS")
        return tls

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: str | None, what: str, flag: str) -> bytes | None:
            if path is None:
                return None
            try:
                return Path(path).read_bytes()
            except OSError as exc:
                raise CtlError(EXIT_USAGE, f"cannot read the {what} {path} ({exc.strerror}); "
                               f"check {flag}") from None
        # Without --ca-file the system trust store verifies the gateway's certificate.
        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_file, "CA certificate", "--ca-file / FIXGW_CA_FILE"),
            private_key=read(self.key_file, "private key", "--key-file / FIXGW_KEY_FILE"),
            certificate_chain=read(self.cert_file, "client certificate",
                                   "--cert-file / FIXGW_CERT_FILE"))


class Client:
    def __init__(self, addr: str, token_file: str, timeout: float,
                 tls: TlsFiles | None = None) -> None:
        self.addr, self.token_file, self.timeout = addr, token_file, timeout
        self.tls = tls or TlsFiles()
        self._meta = (("authorization", f"Bearer {_token(token_file)}"),)
        self._channel = (grpc.secure_channel(addr, self.tls.credentials()) if self.tls.enabled
                         else grpc.insecure_channel(addr))
        self.stub = admin_pb2_grpc.AdminServiceStub(self._channel)

    def call(self, name: str, request: Message) -> Any:
        method: Callable[..., Any] = getattr(self.stub, name)
        timeout = self.timeout
        if name in _CHECK_WITH:
            timeout = self._connected(timeout)
        try:
            return method(request, metadata=self._meta, timeout=timeout)
        except grpc.RpcError as exc:
            raise self._explain(exc, name) from None

    def _connected(self, timeout: float) -> float:
        """Wait (within `timeout`) for a gRPC connection before a change is sent; the time
        left for the call. A change whose answer never comes is exit 5, "may have taken
        effect": that must mean it may have reached the gateway. A port that takes TCP but
        is not gRPC (the OMS FIX port, a TLS listener without --ca-file) never connects, so
        nothing can have been sent: exit 3, safe to correct and send again."""
        start = time.monotonic()
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise CtlError(EXIT_UNREACHABLE, f"gateway not reachable at {self.addr}: no gRPC "
                           f"connection within {timeout:g} s (--timeout); nothing sent. Is "
                           "this the admin listener's address (not the OMS FIX or event port)? "
                           "Set --addr or FIXGW_ADDR." + self._tls_hint()) from None
        return max(timeout - (time.monotonic() - start), 0.001)

    def _tls_hint(self) -> str:
        if not self.tls.enabled:
            return (" If the admin listener uses TLS ([admin] tls_cert_file), pass the CA "
                    "that signed its certificate: --ca-file or FIXGW_CA_FILE.")
        if self.tls.cert_file is None:
            return (" TLS was used: check that --ca-file signed the gateway's admin "
                    "certificate; if the gateway requires client certificates ([admin] "
                    "tls_client_ca_file), pass --cert-file and --key-file (FIXGW_CERT_FILE, "
                    "FIXGW_KEY_FILE).")
        return (" TLS was used: check that --ca-file signed the gateway's admin "
                "certificate and that the gateway's tls_client_ca_file signed --cert-file.")

    def _explain(self, exc: grpc.RpcError, name: str) -> CtlError:
        code, details = exc.code(), exc.details() or ""
        check = _CHECK_WITH.get(name)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and check is not None:
            # The request may have reached the gateway, and a change (a kill switch canceling
            # orders over a slow REST API) can take longer than the answer is waited for.
            # "Not reachable" would invite a retry of something that may already be done.
            return CtlError(EXIT_UNKNOWN, f"no answer from the gateway at {self.addr} within "
                            f"{self.timeout:g} s (--timeout): the change may have taken "
                            f"effect. Check with `{check}` before sending it again")
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            hint = self._tls_hint()
            if "handshake" in details.lower():
                return CtlError(EXIT_UNREACHABLE, f"TLS handshake with the gateway at "
                                f"{self.addr} failed ({details}).{hint}")
            return CtlError(EXIT_UNREACHABLE, f"gateway not reachable at {self.addr} ({details}). "
                            "Is `fixgw run` up, and is its admin listener on this address? "
                            "Set --addr or FIXGW_ADDR." + hint)
        if code == grpc.StatusCode.UNAUTHENTICATED:
            return CtlError(EXIT_AUTH, f"token rejected by the gateway at {self.addr}: {details}. "
                            f"Token file used: {shown(self.token_file)}; use the one the gateway "
                            "printed at startup (--token-file or FIXGW_TOKEN_FILE).")
        if code == grpc.StatusCode.PERMISSION_DENIED:
            return CtlError(EXIT_AUTH, f"permission denied: {details}")
        if code == grpc.StatusCode.NOT_FOUND:
            return CtlError(EXIT_REFUSED, details)
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return CtlError(EXIT_UNREACHABLE, f"{self.addr} does not serve the fixgw admin "
                            "service (wrong port? the event service is a different listener)")
        return CtlError(EXIT_REFUSED, f"{code.name}: {details}")

    def close(self) -> None:
        self._channel.close()


# ---- output ----------------------------------------------------------------------------------
def _as_dict(msg: Message) -> dict[str, Any]:
    d: dict[str, Any] = json_format.MessageToDict(msg, preserving_proto_field_name=True,
                                                  always_print_fields_with_no_presence=True)
    return d


def _session_dict(s: admin_pb2.Session) -> dict[str, Any]:
    d = _as_dict(s)
    d["role"] = ROLE.get(s.role, "unknown")
    for k in ("next_sender_seq_num", "next_target_seq_num"):
        d[k] = int(d[k])
    return d


def _duration(secs: float) -> str:
    if secs < 120:
        return f"{secs:.0f}s"
    if secs < 7200:
        return f"{secs / 60:.0f}m"
    if secs < 172800:
        return f"{secs / 3600:.1f}h"
    return f"{secs / 86400:.1f}d"


def _age(ts: Any, present: bool) -> str:
    if not present:
        return "-"
    return f"{_duration(max(0.0, time.time() - ts.ToNanoseconds() / 1e9))} ago"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def _print_sessions(sessions: list[admin_pb2.Session]) -> None:
    rows = [["NAME", "ROLE", "STATE", "SEQ IN/OUT", "LAST HEARD", "TRANSPORT", "OPEN"]]
    for s in sessions:
        state = s.state + (" (held)" if s.held else "") + ("" if s.enabled else " (disabled)")
        rows.append([s.name, ROLE.get(s.role, "?"), state,
                     f"{s.next_target_seq_num}/{s.next_sender_seq_num}",
                     _age(s.last_received_time, s.HasField("last_received_time")),
                     s.transport, str(s.open_orders)])
    print(_table(rows))


def _print_session(s: admin_pb2.Session) -> None:
    def when(field: str) -> str:
        if not s.HasField(field):  # type: ignore[arg-type]
            return "never"
        ts = getattr(s, field)
        stamp = ts.ToDatetime().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
        return f"{stamp} ({_age(ts, True)})"
    lines = [("name", s.name), ("role", ROLE.get(s.role, "?")), ("state", s.state),
             ("enabled", "yes" if s.enabled else "no (logged out by operator?)"),
             ("held", "yes (no automatic reconnect)" if s.held else "no"),
             ("next sender seq", str(s.next_sender_seq_num)),
             ("next target seq", str(s.next_target_seq_num)),
             ("heartbeat interval", f"{s.heartbeat_interval_s}s" if s.heartbeat_interval_s
              else "unknown"),
             ("transport", s.transport), ("open orders", str(s.open_orders)),
             ("last received", when("last_received_time")), ("last sent", when("last_sent_time")),
             ("last logon", when("last_logon_time")), ("last logout", when("last_logout_time"))]
    _print_pairs(lines)


def _print_pairs(lines: list[tuple[str, str]]) -> None:
    """One "name  value" line each, the values in one column."""
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        print(f"{k.ljust(width)}  {v}")


def _confirm(args: argparse.Namespace, what: str) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise CtlError(EXIT_REFUSED, f"not confirmed: {what}. Pass --yes to run it without a "
                       "prompt (stdin is not a terminal)")
    try:
        answer = input(f"{what}. Proceed? [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise CtlError(EXIT_REFUSED, "not confirmed; nothing done")


# ---- commands --------------------------------------------------------------------------------
def _action(client: Client, args: argparse.Namespace, rpc: str, request: Message) -> int:
    res: admin_pb2.ActionResult = client.call(rpc, request)
    partial = res.ok and res.partial
    if args.json:
        print(json.dumps({"ok": res.ok, "partial": partial, "message": res.message}))
    else:
        print(res.message, file=sys.stdout if res.ok and not partial else sys.stderr)
    return EXIT_REFUSED if not res.ok else EXIT_PARTIAL if partial else EXIT_OK


def run(args: argparse.Namespace) -> int:
    addr = args.addr or os.environ.get("FIXGW_ADDR") or DEFAULT_ADDR
    token_file = args.token_file or os.environ.get("FIXGW_TOKEN_FILE") or DEFAULT_TOKEN_FILE
    c = args.command
    # Confirm before connecting: nothing is sent for a command the operator did not confirm.
    if c == "logout":
        _confirm(args, f"log out {args.name}; it stays down until `fixgwctl logon {args.name}`")
    elif c == "disconnect":
        _confirm(args, f"drop the connection of {args.name} without a Logout")
    elif c == "reset-seq":
        _confirm(args, f"reset the sequence numbers of {args.name} to 1 (logged out first if it "
                 "is logged on)")
    elif c == "set-seq":
        if not args.sender and not args.target:
            raise CtlError(EXIT_USAGE, "set-seq needs --sender N and/or --target M")
        # Confirmed once the session's state is known (_set_seq): the prompt says when it
        # is logged on.
    elif c == "cancel":
        scope = _cancel_scope(args)
        _confirm(args, f"cancel {scope} at the venue")
    elif c == "kill-switch" and args.state == "on":
        _confirm(args, "turn the kill switch ON: every new order is rejected and every open "
                 "order is canceled at the venue")
    elif c == "gate":
        if args.action != "rules" and not args.rule:
            raise CtlError(EXIT_USAGE, f"gate {args.action} needs a RULE (see `fixgwctl gate "
                           "rules`)")
        if args.action == "disable":
            _confirm(args, f"disable gate rule {args.rule}")
    elif c == "transport":
        _confirm(args, "send new orders and cancels over " + (
            "whichever transport health picks" if args.transport == "auto"
            else args.transport.upper() + " only, whatever its health"))
    if c == "events":
        return _events(args)
    client = Client(addr, token_file, args.timeout, TlsFiles.from_args(args))
    try:
        return _dispatch(client, args)
    finally:
        client.close()


def _dispatch(client: Client, args: argparse.Namespace) -> int:
    c = args.command
    if c == "sessions":
        resp: admin_pb2.ListSessionsResponse = client.call("ListSessions",
                                                           admin_pb2.ListSessionsRequest())
        if args.json:
            print(json.dumps([_session_dict(s) for s in resp.sessions], indent=2))
        else:
            _print_sessions(list(resp.sessions))
        return EXIT_OK
    if c == "session":
        s: admin_pb2.Session = client.call("GetSession", admin_pb2.GetSessionRequest(
            name=args.name))
        if args.json:
            print(json.dumps(_session_dict(s), indent=2))
        else:
            _print_session(s)
        return EXIT_OK
    if c == "logout":
        return _action(client, args, "Logout",
                       admin_pb2.LogoutRequest(name=args.name, reason=args.reason))
    if c == "logon":
        return _action(client, args, "Logon", admin_pb2.LogonRequest(name=args.name))
    if c == "disconnect":
        return _action(client, args, "Disconnect", admin_pb2.DisconnectRequest(name=args.name))
    if c == "reset-seq":
        return _action(client, args, "ResetSequence",
                       admin_pb2.ResetSequenceRequest(name=args.name))
    if c == "set-seq":
        return _set_seq(client, args)
    if c in ("orders", "order"):
        return _orders(client, args)
    if c == "cancel":
        return _action(client, args, "CancelOrders", admin_pb2.CancelOrdersRequest(
            id=args.id, session=args.session, symbol=args.symbol, all=args.all))
    if c == "kill-switch":
        return _action(client, args, "KillSwitch",
                       admin_pb2.KillSwitchRequest(on=args.state == "on"))
    if c == "gate":
        if args.action == "rules":
            rules: admin_pb2.GateRulesResponse = client.call("GateRules",
                                                             admin_pb2.GateRulesRequest())
            if args.json:
                print(json.dumps(_as_dict(rules), indent=2))
            else:
                _print_rules(rules)
            return EXIT_OK
        return _action(client, args, "SetGateRule", admin_pb2.SetGateRuleRequest(
            name=args.rule, enabled=args.action == "enable"))
    if c == "transport":
        return _action(client, args, "ForceTransport",
                       admin_pb2.ForceTransportRequest(transport=args.transport))
    if c == "health":
        h: admin_pb2.HealthResponse = client.call("Health", admin_pb2.HealthRequest())
        if args.json:
            print(json.dumps(_as_dict(h), indent=2))
        else:
            print(f"{'HEALTHY' if h.healthy else 'UNHEALTHY'}: {h.summary}")
            print(f"venue trading {'up' if h.venue_trading_up else 'DOWN'}, market data "
                  f"{'up' if h.venue_md_up else 'DOWN'}, OMS sessions {h.oms_sessions_up}/"
                  f"{h.oms_sessions} logged on, orders over {h.order_transport.upper()}, "
                  f"{h.open_orders} open order(s), kill switch {'ON' if h.kill_switch else 'off'}")
            if h.version:  # a gateway from before 2026-11-27 does not send it
                print(f"{h.version}, up {_duration(h.uptime_s)}")
        return EXIT_OK if h.healthy else EXIT_REFUSED
    raise CtlError(EXIT_USAGE, f"unknown command {c!r}")


def _set_seq(client: Client, args: argparse.Namespace) -> int:
    """set-seq, after reading the session's state: on a logged-on session a wrong number
    knocks it into a logon/logout loop, so that needs --force, and the prompt says so."""
    s: admin_pb2.Session = client.call("GetSession", admin_pb2.GetSessionRequest(name=args.name))
    what = (f"set {s.name}'s sequence numbers (sender {args.sender or 'unchanged'}, target "
            f"{args.target or 'unchanged'})")
    if s.state == "logged_on":
        if not args.force:
            raise CtlError(EXIT_REFUSED, f"{s.name} is logged on: nothing sent. Set live, a "
                           "wrong sequence number knocks it into a logon/logout loop; log it "
                           f"out first (`fixgwctl logout {s.name}`), or pass --force to apply "
                           "it live")
        what += f"; {s.name} is LOGGED ON: applied live, a wrong value breaks the session"
    _confirm(args, what)
    return _action(client, args, "SetSequence", admin_pb2.SetSequenceRequest(
        name=args.name, next_sender=args.sender, next_target=args.target, force=args.force))


# ---- orders ----------------------------------------------------------------------------------
_ORD_TYPES = {"1": "market", "2": "limit", "3": "stop", "4": "stop-limit"}
_TIFS = {"0": "day", "1": "GTC", "3": "IOC", "4": "FOK", "6": "GTD"}


def _cancel_scope(args: argparse.Namespace) -> str:
    """What `fixgwctl cancel` is about to cancel, in words (for the confirmation)."""
    if args.id:
        return f"order {args.id}" + (f" of {args.session}" if args.session else "")
    if args.all:
        if args.session or args.symbol:
            raise CtlError(EXIT_USAGE, "cancel --all cancels every open order: give it alone, "
                           "or give --session/--symbol without it")
        return "EVERY open order of every session"
    if not (args.session or args.symbol):
        raise CtlError(EXIT_USAGE, "cancel needs an order ID, --session and/or --symbol, or "
                       "--all (see fixgwctl orders)")
    return "every open order" + (f" of {args.session}" if args.session else "") + (
        f" in {args.symbol}" if args.symbol else "")


def _orders(client: Client, args: argparse.Namespace) -> int:
    one = args.command == "order"
    resp: admin_pb2.ListOrdersResponse = client.call("ListOrders", admin_pb2.ListOrdersRequest(
        session=args.session, symbol="" if one else args.symbol, id=args.id if one else "",
        include_closed=one or args.closed, limit=20 if one else args.limit))
    if one and not resp.orders:
        raise CtlError(EXIT_REFUSED, f"no order named {args.id} (an OMS ClOrdID, a venue "
                       "ClOrdID or an OrderID)" + (f" in {args.session}" if args.session else "")
                       + "; closed orders are kept for [gateway] closed_order_retention_s")
    if args.json:
        orders = [_as_dict(o) for o in resp.orders]
        print(json.dumps(orders if one else {"orders": orders, "matched": resp.matched},
                         indent=2))
        return EXIT_OK
    if one:
        for i, o in enumerate(resp.orders):
            if i:
                print()
            _print_order(o)
        return EXIT_OK
    if resp.orders:
        print(_table([["SESSION", "CLORDID", "SYMBOL", "SIDE", "QTY", "PRICE", "STATUS", "FILLED",
                       "AVG PX", "ORDERID", "VIA"]]
                     + [[o.oms_session, o.cl_ord_id, o.symbol, o.side, o.order_qty,
                         o.price or _ORD_TYPES.get(o.ord_type, o.ord_type), _status(o), o.cum_qty,
                         o.avg_px if _filled(o) else "-", o.order_id or "-", o.transport]
                        for o in resp.orders]))
    what = "order(s)" if args.closed else "open order(s)"
    shown = f"{len(resp.orders)} of {resp.matched}" if resp.matched > len(resp.orders) else (
        str(resp.matched))
    print(f"{shown} {what}" + (" (--limit)" if resp.matched > len(resp.orders) else ""))
    return EXIT_OK


def _status(o: admin_pb2.Order) -> str:
    """The OrdStatus, and the cancel on its way if there is one (why a kill switch or
    `cancel` would not send another)."""
    if not o.cancel_pending_cl_ord_id:
        return o.status
    return (f"{o.status} (cancel pending: {o.cancel_pending_cl_ord_id}, sent "
            f"{o.cancel_pending_age_s:.0f} s ago)")


def _filled(o: admin_pb2.Order) -> bool:
    return Decimal(o.cum_qty or "0") != 0


def _print_order(o: admin_pb2.Order) -> None:
    closed = (o.closed_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S UTC") + " ("
              + _age(o.closed_time, True) + ")") if o.HasField("closed_time") else "-"
    lines = [("session", o.oms_session), ("ClOrdID", o.cl_ord_id),
             ("ClOrdID history", " -> ".join(o.cl_ord_id_history)),
             ("venue ClOrdID", o.venue_cl_ord_id),
             ("venue ClOrdIDs", ", ".join(o.venue_cl_ord_ids)),
             ("OrderID", o.order_id or "- (no venue report yet)"),
             ("symbol", o.symbol), ("side", o.side),
             ("type", f"{_ORD_TYPES.get(o.ord_type, o.ord_type)}, "
                      f"{_TIFS.get(o.time_in_force, o.time_in_force)}"),
             ("quantity", o.order_qty), ("price", o.price or "-"),
             ("account", o.account or "-"),
             ("status", _status(o) + ("" if o.open else " (closed)")),
             ("filled", f"{o.cum_qty} at {o.avg_px}" if _filled(o) else o.cum_qty),
             ("leaves", o.leaves_qty), ("transport", o.transport), ("closed", closed)]
    _print_pairs(lines)


# ---- events ----------------------------------------------------------------------------------
def _event_kinds(names: list[str]) -> list[Any]:
    from gateway._proto.fixgw.v1 import events_pb2

    kinds: list[Any] = []
    for name in names:
        for part in name.split(","):
            full = "EVENT_KIND_" + part.strip().upper().removeprefix("EVENT_KIND_")
            try:
                kinds.append(events_pb2.EventKind.Value(full))
            except ValueError:
                known = ", ".join(n.removeprefix("EVENT_KIND_")
                                  for n in events_pb2.EventKind.keys()[1:])
                raise CtlError(EXIT_USAGE, f"unknown event kind {part!r}; kinds: {known}") from None
    return kinds


_ORDER_KEYS = ("type", "exec_type", "ord_status", "cl_ord_id", "side", "order_qty", "price",
               "cum_qty", "leaves_qty", "reject_reason", "text")


def _event_line(ev: Any) -> str:
    from gateway._proto.fixgw.v1 import events_pb2

    kind = events_pb2.EventKind.Name(ev.kind).removeprefix("EVENT_KIND_")
    payload = ev.WhichOneof("payload")
    d: dict[str, Any] = (json_format.MessageToDict(getattr(ev, payload),
                                                   preserving_proto_field_name=True)
                         if payload else {})
    keys = _ORDER_KEYS if payload == "order" else tuple(d)[:6]
    summary = " ".join(f"{k}={d[k]}" for k in keys
                       if k in d and not isinstance(d[k], (dict, list)))
    return f"{ev.sequence:>8}  {kind:<17} {ev.symbol or '-':<10} {summary}"


def _events(args: argparse.Namespace) -> int:
    """Print events from the EventService: up to what exists now, or (--follow) forever,
    resubscribing from the last sequence seen + 1 after a disconnect."""
    from gateway._proto.fixgw.v1 import events_pb2, events_pb2_grpc

    addr = args.events_addr or os.environ.get("FIXGW_EVENTS_ADDR") or DEFAULT_EVENTS_ADDR
    kinds = _event_kinds(args.kind)
    admin_tls = TlsFiles.from_args(args)
    events_ca = args.events_ca_file or os.environ.get("FIXGW_EVENTS_CA_FILE") or None
    tls = TlsFiles(events_ca, admin_tls.cert_file, admin_tls.key_file)
    channel = (grpc.secure_channel(addr, tls.credentials()) if events_ca is not None
               else grpc.insecure_channel(addr))
    stub = events_pb2_grpc.EventServiceStub(channel)
    try:
        try:
            info = stub.GetLogInfo(events_pb2.GetLogInfoRequest(), timeout=args.timeout)
        except grpc.RpcError as exc:
            raise CtlError(EXIT_UNREACHABLE, f"event service not reachable at {addr} "
                           f"({exc.details()}). Set --events-addr or FIXGW_EVENTS_ADDR (the "
                           "gateway's gRPC port, not the admin port); a TLS event port also "
                           "needs --events-ca-file or FIXGW_EVENTS_CA_FILE.") from None
        end = int(info.next_sequence) - 1  # the newest event now (without --follow: stop there)
        start = args.from_seq or (int(info.next_sequence) if args.follow
                                  else int(info.oldest_sequence))
        if not args.follow and (end < 1 or start > end):
            return EXIT_OK
        last = max(0, start - 1)
        while True:
            done, last = _stream(stub, kinds, last, None if args.follow else end, args.json)
            if done:
                return EXIT_OK
            print(f"fixgwctl: event stream from {addr} lost; resuming after sequence {last}",
                  file=sys.stderr, flush=True)
            time.sleep(1.0)
    finally:
        channel.close()


def _stream(stub: Any, kinds: list[Any], last: int, end: int | None,
            as_json: bool) -> tuple[bool, int]:
    """One subscription from ``last + 1``: (True, last) when finished (reached ``end``, or idle
    for a second when not following), (False, last) when the stream broke and should resume."""
    from gateway._proto.fixgw.v1 import events_pb2

    call = stub.Subscribe(events_pb2.SubscribeRequest(kinds=kinds, from_sequence=last + 1))
    items: queue.Queue[Any] = queue.Queue()

    def pump() -> None:
        try:
            for batch in call:
                items.put(batch)
            items.put(None)
        except grpc.RpcError as exc:
            items.put(exc)

    threading.Thread(target=pump, daemon=True, name="events").start()
    try:
        while True:
            try:
                item = items.get(timeout=None if end is None else 1.0)
            except queue.Empty:
                return True, last  # caught up: the filter hides the rest up to `end`
            if item is None:
                return end is not None, last
            if isinstance(item, grpc.RpcError):
                code = item.code()
                if code == grpc.StatusCode.CANCELLED:
                    return True, last
                if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL,
                            grpc.StatusCode.UNKNOWN) and end is None:
                    return False, last
                raise CtlError(EXIT_UNREACHABLE if code == grpc.StatusCode.UNAVAILABLE
                               else EXIT_REFUSED, f"event stream: {code.name}: {item.details()}")
            for ev in item.events:
                if end is not None and ev.sequence > end:
                    return True, last
                last = int(ev.sequence)
                if as_json:
                    print(json.dumps(json_format.MessageToDict(
                        ev, preserving_proto_field_name=True)), flush=True)
                else:
                    print(_event_line(ev), flush=True)
                if end is not None and ev.sequence >= end:
                    return True, last
    finally:
        call.cancel()


def _print_rules(r: admin_pb2.GateRulesResponse) -> None:
    print(f"kill switch: {'ON (new orders blocked)' if r.kill_switch else 'off'}")
    rows = [["RULE", "KIND", "ACTION", "ENABLED", "STALE", "SYMBOLS", "PARAMS"]]
    for rule in r.rules:
        rows.append([rule.name, rule.kind, rule.action, "yes" if rule.enabled else "no",
                     rule.stale_policy or "-", ",".join(rule.symbols) or "*",
                     " ".join(f"{k}={v}" for k, v in sorted(rule.params.items())) or "-"])
    print(_table(rows))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return run(args)
    except CtlError as exc:
        if args.json:
            print(json.dumps({"ok": False, "exit_code": exc.code, "error": str(exc)}))
        print(f"fixgwctl: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("fixgwctl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
