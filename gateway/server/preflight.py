"""`fixgw run --check`: a deployment file and everything it names, checked without starting.

Before a restart in the small hours, ops want to know that the new file will start: that
every credential it points at resolves, that every certificate, key and CA file loads (a
certificate with the key it is paired with), that the simulator's accounts file parses, that
no template placeholder is left, and where the gateway would listen and connect. The start
itself would find the same problems, but one at a time, and only once the old process is gone.

The walk is generic (any `CredentialRef`, any field ending in ``_file``), so a setting added
later is checked without a change here. Nothing is bound, connected, created or written; the
values of secrets are never printed; a credential file group or others can read is a warning
(`credential_file_warnings`, said at every start too). Ports in use and the venue's
reachability are not checked: they can change between the check and the start; a listener
port in the kernel's ephemeral range that is not reserved is a warning, as an outgoing
connection may hold it at the next start.
"""

from __future__ import annotations

import hmac
import os
import ssl
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from gateway.admin.auth import TokenError, read_token
from gateway.config.loader import ConfigError
from gateway.config.model import Config
from gateway.config.strict import CredentialRef
from gateway.fix.settings import is_loopback
from gateway.kraken.auth import decode_secret
from gateway.kraken.secrets import SecretError, load_secret, open_to_others, shown
from gateway.venue_sim.accounts import load_accounts_file

_KEY_OF = {"cert_file": "key_file", "tls_cert_file": "tls_key_file"}  # cert field -> its key
_CA_FILES = ("client_ca_file", "ca_file", "tls_client_ca_file")
# What the shipped templates (sessions/kraken-uat.toml) put where only the venue can fill in.
_PLACEHOLDER = "CHANGE-ME"


def _sections(model: BaseModel, where: str) -> Iterator[tuple[str, BaseModel]]:
    """Every sub-model of `model` (itself included), with its dotted place in the file."""
    yield where, model
    for name in type(model).model_fields:
        value = getattr(model, name)
        place = f"{where}.{name}" if where else name
        if isinstance(value, BaseModel):
            yield from _sections(value, place)
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from _sections(item, f"{place}[{i}]")


def _unreadable(path: Path) -> str | None:
    if not path.exists():
        return f"{path} does not exist"
    if not path.is_file() or not os.access(path, os.R_OK):
        return f"{path} is not a readable file"
    return None


def _file_problem(section: BaseModel, field: str) -> str | None:
    """What is wrong with the file in `field` of `section`, loaded as the start loads it."""
    path: Path = getattr(section, field)
    problem = _unreadable(path)
    if problem is not None:
        return problem
    key_path: Path | None = getattr(section, _KEY_OF[field]) if field in _KEY_OF else None
    try:
        if field == "accounts_file":
            load_accounts_file(path)
        elif field in _CA_FILES:
            ssl.create_default_context().load_verify_locations(cafile=path)
        elif field in _KEY_OF and (key_path is None or _unreadable(key_path) is None):
            # An unreadable key is its own field's problem, found on its own.
            ssl.create_default_context().load_cert_chain(path, key_path)
    except ConfigError as exc:
        return str(exc)
    except ssl.SSLError as exc:
        paired = f" with the key {key_path}" if key_path is not None else ""
        return f"{path}{paired} does not load ({exc.reason or exc})"
    except OSError as exc:
        return f"{path} could not be read ({exc.strerror or type(exc).__name__})"
    return None


def _data_dir_problem(data_dir: Path) -> str | None:
    """The start creates the data directory; it needs an existing, writable ancestor."""
    p = data_dir.resolve()
    while not p.exists():
        p = p.parent
    if not p.is_dir() or not os.access(p, os.W_OK | os.X_OK):
        return f"{data_dir} cannot be written ({p} is not a writable directory)"
    return None


def _creatable_file_problem(path: Path) -> str | None:
    """A file the start opens for appending (creating its directories): its nearest existing
    ancestor must be a writable directory, and the path itself not a directory."""
    if path.is_dir():
        return f"{path} is a directory, not a file"
    p = path.resolve().parent
    while not p.exists():
        p = p.parent
    if not p.is_dir():
        return f"{path} cannot be created: {p} is a file, not a directory"
    if not os.access(p, os.W_OK | os.X_OK):
        return f"{path} cannot be created: {p} is not writable"
    return None


def _admin_problems(config: Config) -> list[str]:
    """What stops the admin service at start, found before any session logs on: its audit
    log cannot be opened, or a read-only token that is the operator's (it would be refused
    at start: a read-only caller could change everything)."""
    a = config.admin
    if not a.enabled:
        return []
    out = []
    if a.audit_log is not None:
        problem = _creatable_file_problem(a.audit_log)
        if problem is not None:
            out.append(f"admin.audit_log: {problem}")
    if a.operator_token is not None and a.read_only_token is not None:
        try:
            op = read_token(file=a.operator_token.file, env=a.operator_token.env)
            ro = read_token(file=a.read_only_token.file, env=a.read_only_token.env)
        except TokenError:
            return out  # each token's own problem is reported with its field
        if hmac.compare_digest(op.encode(), ro.encode()):
            out.append("admin.read_only_token: the same token as admin.operator_token: a "
                       "read-only caller could change everything; give it a token of its own")
    return out


def listener_ports(config: Config) -> dict[str, int]:
    """The listeners' ports, by field: the OMS acceptor, events, admin and metrics when
    enabled, and the embedded simulator's FIX ports when it runs (one QuickFIX acceptor: its
    two ports may be one). 0 (any free port) is left out."""
    c = config
    ports = {"oms.port": c.oms.port, "grpc.port": c.grpc.port}
    if c.admin.enabled:
        ports["admin.port"] = c.admin.port
    if c.metrics.enabled:
        ports["metrics.port"] = c.metrics.port
    if c.simulator.enabled:
        ports["simulator.trading_port"] = c.simulator.trading_port
        if c.simulator.md_port != c.simulator.trading_port:
            ports["simulator.md_port"] = c.simulator.md_port
    return {f: p for f, p in ports.items() if p}


def _shared_port_problems(config: Config) -> list[str]:
    """Two listeners on one port: the second cannot bind, and the start fails only after the
    venue sessions have logged on. (QuickFIX's acceptor binds every interface, so the OMS port
    clashes whatever the hosts say; the others are flagged too: hosts rarely differ.)"""
    first: dict[int, str] = {}
    out = []
    for field, port in listener_ports(config).items():
        if port in first:
            out.append(f"{field}: {port} is {first[port]} too: two listeners cannot share a "
                       "port; give one another port")
        else:
            first[port] = field
    return out


def preflight(config: Config) -> list[str]:
    """Each problem as "<field>: <what is wrong>", in the file's order; empty when none."""
    problems = []
    for where, section in _sections(config, ""):
        if isinstance(section, CredentialRef):
            try:
                if where.startswith("admin.") and where.endswith("_token"):
                    read_token(file=section.file, env=section.env)  # read as the start reads it
                    continue
                value = load_secret(section.env, section.file)
                if where == "venue.api_secret":  # found at the first logon otherwise, unsigned
                    decode_secret(value)
            except (SecretError, ValueError, TokenError) as exc:
                problems.append(f"{where}: {exc}")
            continue
        for name in type(section).model_fields:
            value = getattr(section, name)
            field = f"{where}.{name}" if where else name
            if isinstance(value, str) and _PLACEHOLDER in value:
                problems.append(f"{field}: still the template's {_PLACEHOLDER}: set the value "
                                "the venue gave you")
            if name.endswith("_file") and value is not None:
                problem = _file_problem(section, name)
                if problem is not None:
                    problems.append(f"{field}: {problem}")
    problem = _data_dir_problem(Path(config.gateway.data_dir))
    if problem is not None:
        problems.append(f"gateway.data_dir: {problem}")
    problems += _admin_problems(config) + _shared_port_problems(config)
    if config.risk.max_notional_usd is not None:
        # The gate values an order as quantity x price in the quote currency, and compares it
        # with a limit in USD: for another quote that compares the wrong amounts.
        other = [s for s in config.venue.symbols if s.partition("/")[2] not in ("USD", "")]
        if other:
            problems.append(
                f"risk.max_notional_usd: a limit in USD, but venue.symbols has "
                f"{', '.join(other)}, not quoted in USD: the gate cannot value those orders "
                "in USD; trade only USD-quoted symbols with this limit, or remove it")
    return problems


def credential_file_warnings(config: Config) -> list[str]:
    """Every credential read from a file (any `CredentialRef`: venue key and secret, admin
    tokens, whatever is added later) whose file group or others can read: a warning at start
    and in --check, not a refusal (`open_to_others` says why)."""
    out = []
    for where, section in _sections(config, ""):
        if isinstance(section, CredentialRef) and section.file is not None:
            problem = open_to_others(section.file)
            if problem is not None:
                out.append(f"{where}: file {problem}")
    return out


_PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_RESERVED_PORTS = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")


def unreserved_ephemeral(ports: dict[str, int], port_range: str, reserved: str) -> list[str]:
    """Warnings for the listener `ports` (field -> port) that lie in the kernel's ephemeral
    range (`port_range` as in ip_local_port_range, "32768\t60999") and are not among the
    `reserved` ones (ip_local_reserved_ports, "50051,50060-50070"). Any outgoing connection's
    source port can hold such a port, and the gateway then cannot start on it."""
    low, high = (int(x) for x in port_range.split())
    kept: set[int] = set()
    for part in filter(None, reserved.strip().split(",")):
        a, _, b = part.partition("-")
        kept.update(range(int(a), int(b or a) + 1))
    held = {f: p for f, p in ports.items() if low <= p <= high and p not in kept}
    out = [f"{field}: {port} lies in this host's ephemeral port range ({low}-{high}) and is "
           "not reserved: an outgoing connection can hold it, and the gateway cannot start while "
           "one does"
           for field, port in held.items()]
    if held:
        # The setting is the whole list: keep what is reserved already.
        listed = ",".join(filter(None, [reserved.strip(),
                                        *(str(p) for p in sorted(set(held.values())))]))
        out.append(f"reserve {'it' if len(held) == 1 else 'them'} with sysctl -w "
                   f"net.ipv4.ip_local_reserved_ports={listed}, or pick ports below {low}")
    return out


def ignored_settings(config: Config) -> list[str]:
    """Settings a file sets that change nothing, so that nobody relies on them."""
    out = []
    if "heartbeat_interval" in config.oms.model_fields_set:
        out.append("oms.heartbeat_interval has no effect: the acceptor uses the HeartBtInt each "
                   "OMS sends in its Logon (FIX); remove it")
    fb = config.venue.fallback
    if fb.enabled and not config.simulator.enabled and not fb.rest_url:
        out.append("venue.fallback.rest_url: not set, and the embedded simulator is disabled: "
                   "no REST fallback (Kraken: https://api.kraken.com)")
    for where, schedule in (("schedule", config.schedule), ("oms.schedule", config.oms.schedule)):
        if schedule.mode == "non-stop":
            out += [f'{where}.{name} has no effect: {where}.mode is "non-stop" (no daily '
                    'reset); remove it, or set mode = "daily-reset"'
                    for name in ("reset_time_utc", "rollover_s")
                    if name in schedule.model_fields_set]
    return out


def exposure_warnings(config: Config) -> list[str]:
    """Connections in clear text off this host, and an OMS listener wider than it says."""
    c = config
    out = _grpc_listener_warnings(c)
    host = c.oms.host
    if c.oms.tls is None and not is_loopback(host) and host not in ("0.0.0.0", "::", ""):
        out.append(f"oms.host: {host}, but without oms.tls the FIX acceptor listens on every "
                   f"interface (QuickFIX 1.16 cannot bind one address): any host that reaches "
                   f"port {c.oms.port} can try a Logon. Set [oms.tls] (its listener binds "
                   f"{host} alone) or firewall the port")
    if not c.simulator.enabled:
        for name, session in (("trading", c.venue.trading), ("market_data", c.venue.market_data)):
            if session.tls is None and not is_loopback(session.host):
                out.append(f"venue.{name}: {session.host} is not this host and the session "
                           f"has no [venue.{name}.tls]: FIX (orders, the logon signature) "
                           "would go in clear text, and Kraken accepts TLS only")
        if c.venue.api_key is None:
            out.append("venue.api_key: not set: the trading session's Logon would go unsigned "
                       "(no 553/554/5025), and Kraken refuses it; give venue.api_key and "
                       "venue.api_secret")
    return out


def _grpc_listener_warnings(c: Config) -> list[str]:
    """The admin and event listeners bound off loopback without TLS: what crosses the
    network in clear text, readable (and for admin, replayable) by anyone on the path."""
    out = []
    if c.admin.enabled and c.admin.tls_cert_file is None and not is_loopback(c.admin.host):
        out.append(f"admin.host: {c.admin.host} is reachable from other hosts and the admin "
                   "listener has no TLS: every fixgwctl call would send its bearer token in "
                   "clear text, and anyone who reads it can log sessions out or turn the kill "
                   "switch on. Set [admin] tls_cert_file and tls_key_file, or keep "
                   "admin.host on 127.0.0.1")
    if c.grpc.tls_cert_file is None and not is_loopback(c.grpc.host):
        out.append(f"grpc.host: {c.grpc.host} is reachable from other hosts and the event "
                   "listener has no TLS: every order and fill on the event stream, and the "
                   "positioning pushed to the gateway, would cross the network in clear text. "
                   "Set [grpc] tls_cert_file and tls_key_file, or keep grpc.host on 127.0.0.1")
    return out


def port_warnings(config: Config) -> list[str]:
    """What may stop a start later without being wrong now; empty off Linux."""
    try:
        port_range, reserved = _PORT_RANGE.read_text(), _RESERVED_PORTS.read_text()
    except OSError:
        return []
    return unreserved_ephemeral(listener_ports(config), port_range, reserved)


def summary(config: Config) -> list[str]:
    """Where the gateway would listen and connect, and where its secrets come from."""
    c = config
    oms = ", ".join(s.comp_id + ("" if s.cancel_on_disconnect_s is None else
                                 f" (cancel on disconnect after {s.cancel_on_disconnect_s:g} s)")
                    for s in c.oms.sessions)
    lines = [f"OMS acceptor {c.oms.host}:{c.oms.port}{' (TLS)' if c.oms.tls else ''}, "
             f"{c.oms.sender_comp_id} for {oms}"]
    v = c.venue
    if c.simulator.enabled:
        lines.append("venue: the embedded UAT simulator, on free loopback ports")
    else:
        lines.append(f"venue: trading {v.trading.host}:{v.trading.port} "
                     f"({v.sender_comp_id}->{v.trading.target_comp_id}), market data "
                     f"{v.market_data.host}:{v.market_data.port} "
                     f"({v.sender_comp_id}->{v.market_data.target_comp_id})")
    if v.api_key is not None and v.api_secret is not None:  # the config has both or neither
        lines.append(f"venue credentials: key {_source(v.api_key)}, secret {_source(v.api_secret)}")
    s = c.schedule
    lines.append("schedule: non-stop" if s.mode == "non-stop" else
                 f"schedule: daily reset at {s.reset_time_utc} UTC, sessions back after "
                 f"{s.rollover_s} s")
    usable = c.simulator.enabled or (v.fallback.rest_url != "" and v.api_key is not None)
    lines.append("REST fallback: " + ("off" if not v.fallback.enabled else
                                      "on" if usable else "off (see the warnings)"))
    lines.append(f"events (gRPC) {c.grpc.host}:{c.grpc.port}; admin "
                 + (f"{c.admin.host}:{c.admin.port}" if c.admin.enabled else "off")
                 + "; metrics "
                 + (f"{c.metrics.host}:{c.metrics.port}" if c.metrics.enabled else "off"))
    data = Path(c.gateway.data_dir)
    lines.append(f"data: {data}" if data.is_absolute() else
                 f"data: {data} (relative to the working directory: {data.absolute()})")
    return lines


def _source(ref: CredentialRef) -> str:
    return f"from ${shown(ref.env)}" if ref.env is not None else f"from {shown(ref.file or '')}"
