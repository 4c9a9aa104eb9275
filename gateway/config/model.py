"""The deployment config schema.

Field names follow QuickFIX/J's session-configuration vocabulary where one exists
(SenderCompID, HeartBtInt, ReconnectInterval, StartTime/EndTime) so that FIX ops people
recognise them, but spelled in TOML's snake_case. Every field has a default that makes the
embedded UAT deployment run with no file at all; a real deployment overrides what it needs.

A relative path anywhere in the file (data_dir, certificates, credential files, the audit log,
the simulator's accounts file) is relative to the working directory `fixgw run` starts in, not
to the file's own directory, as QuickFIX/J resolves FileStorePath; under a service manager set
its working directory, or give absolute paths. (`fixgw run --check` prints the data directory
resolved; the QuickFIX settings the gateway renders carry absolute paths.)
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.fallback import FallbackConfig, MdFallbackConfig
from gateway.config.risk import GateConfig
from gateway.config.strict import CredentialRef, StrictModel

# How long a cancel the venue has not answered counts as on its way, by default
# (`[gateway] cancel_in_flight_s`, `Router.cancel_in_flight`).
CANCEL_IN_FLIGHT_S: Final = 30.0

_COMP_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
Port = Annotated[int, Field(ge=0, le=65535)]


def is_comp_id(value: str) -> bool:
    """Whether `value` can be a CompID here: it also names the session's store files."""
    return _COMP_ID.match(value) is not None


def _check_comp_id(value: str) -> str:
    if not is_comp_id(value):
        raise ValueError("must be 1-64 characters of letters, digits, '_', '.', '-'")
    return value


class ScheduleConfig(StrictModel):
    """When sessions run. Kraken runs 24/7 with a daily logical rollover: at 22:00 UTC its
    sessions stop for about 30 s, and both sides start again from sequence number 1."""

    mode: Literal["daily-reset", "non-stop"] = "daily-reset"
    # UTC time the rollover starts (sessions are logged out); Kraken's is 22:00 UTC.
    reset_time_utc: time = time(22, 0, 0)
    # How long sessions stay down from then: no logon is tried or taken meanwhile, and the next
    # logon starts a new session (sequence numbers reset). Kraken's rollover "lasts about 30 s".
    rollover_s: int = Field(default=30, ge=1, le=3600)

    @field_validator("reset_time_utc", mode="before")
    @classmethod
    def _a_time_not_a_number(cls, value: object) -> object:
        """pydantic reads a number as seconds after midnight: `reset_time_utc = 22` would be
        00:00:22, a reset at the wrong time of day that nothing else would notice."""
        if isinstance(value, int | float):
            raise ValueError("must be a time of day, HH:MM:SS (22:00:00), not a number")
        return value

    @field_validator("reset_time_utc")
    @classmethod
    def _as_utc(cls, t: time) -> time:
        """A time written with an offset ("17:00:00-05:00", "22:00:00Z") is taken at its word
        and turned into UTC: the schedule compares plain UTC times (QuickFIX's StartTime and
        EndTime are UTC too), and an aware one would fail that comparison at run time."""
        offset = t.utcoffset()
        if offset is None:
            return t
        s = (t.hour * 3600 + t.minute * 60 + t.second - int(offset.total_seconds())) % 86_400
        return time(s // 3600, s // 60 % 60, s % 60, t.microsecond)

    def session_times(self) -> tuple[time, time]:
        """(StartTime, EndTime) of the daily session: it ends at the reset and starts again
        `rollover_s` later, so the session wraps midnight and is never a whole day.

        Not StartTime == EndTime: QuickFIX reads that as a 24-hour session whose boundary is
        the UTC date (its TimeRange compares dates), so sequence numbers would reset at
        midnight UTC whatever time was configured."""
        end = self.reset_time_utc.replace(microsecond=0)
        start = _plus_seconds(end, self.rollover_s)
        return start, end

    def back_at(self) -> str:
        """When the sessions start again after the rollover, for what ops and the OMS read."""
        return f"{self.session_times()[0]:%H:%M:%S} UTC"

    def in_rollover(self, now: datetime) -> bool:
        """Whether `now` (aware, any zone) is inside the daily rollover: sessions are down."""
        if self.mode == "non-stop":
            return False
        start, end = self.session_times()
        t = now.astimezone(UTC).time()
        if end < start:
            return end <= t < start
        return t >= end or t < start  # the rollover wraps midnight


def _plus_seconds(t: time, seconds: int) -> time:
    total = (t.hour * 3600 + t.minute * 60 + t.second + seconds) % 86_400
    return time(total // 3600, total // 60 % 60, total % 60)


class OmsSessionConfig(StrictModel):
    """One OMS counterparty of the acceptor."""

    comp_id: str = "OMS"
    # Accounts this OMS may trade; empty means any. Keeps one desk from trading another's book.
    accounts: tuple[str, ...] = ()
    # Cancel this OMS's open orders at the venue once its session has been down this many
    # seconds (logged out, connection lost, or not logged on since the gateway started); back
    # in time, nothing is canceled. Unset: orders rest whatever the OMS does (the default, so
    # a desk's resting orders survive its OMS restarting).
    cancel_on_disconnect_s: float | None = Field(default=None, ge=0)

    _cid = field_validator("comp_id")(_check_comp_id)


class TlsAcceptConfig(StrictModel):
    """TLS on the OMS acceptor: a TLS listener on oms.host:oms.port in front of QuickFIX."""

    cert_file: Path
    key_file: Path
    # Client addresses (or CIDR networks) allowed to connect; empty means any.
    allow_addresses: tuple[str, ...] = ()
    # Require a client certificate signed by this CA (mutual TLS).
    client_ca_file: Path | None = None

    @field_validator("allow_addresses")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Parsed by the TLS listener only at start otherwise, a traceback."""
        for i, entry in enumerate(value):
            try:
                ipaddress.ip_network(entry.strip(), strict=False)  # as the listener reads it
            except ValueError:
                raise ValueError(f"[{i}]: must be an IP address or a CIDR network "
                                 f"(10.0.0.0/24), not {entry!r}") from None
        return value


class OmsConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(default=9878, ge=1, le=65535)  # 0 would listen where nobody is told
    sender_comp_id: str = "FIXGW"
    # No effect, kept so that files which set it still load: a FIX acceptor takes HeartBtInt
    # from each OMS's Logon. `fixgw run` and `--check` warn when a file sets it.
    heartbeat_interval: int = Field(default=30, ge=1, le=3600)
    # Accept a client's clock up to this far off (FIX SendingTime accuracy check).
    max_latency_s: int = Field(default=120, ge=1, le=86_400)
    # An OMS that reads nothing for this long while the gateway writes to it (reports or market
    # data) is disconnected (gateway.routing.router.cut_stalled_oms); 0 never.
    stall_cut_s: float = Field(default=10.0, ge=0, le=3600)
    sessions: tuple[OmsSessionConfig, ...] = (OmsSessionConfig(),)
    tls: TlsAcceptConfig | None = None
    # The OMS sessions' schedule, which must match the OMS's own. Non-stop by default: the
    # venue's rollover ([schedule]) is the gateway's to absorb (orders meanwhile are held, go
    # over REST, or are rejected with a reason), and an OMS that does not reset at that very
    # time would be logged out, its sequence numbers too high then too low, on every logon.
    # The price: the OMS stores only reset when the OMS logs on with ResetSeqNumFlag=Y or an
    # operator resets them (`fixgwctl reset-seq`). Set a daily reset to match an OMS that has one.
    schedule: ScheduleConfig = ScheduleConfig(mode="non-stop")

    _cid = field_validator("sender_comp_id")(_check_comp_id)

    @model_validator(mode="after")
    def _unique_sessions(self) -> OmsConfig:
        if not self.sessions:
            raise ValueError("sessions: at least one OMS session is required")
        first: dict[str, int] = {}
        for i, s in enumerate(self.sessions):
            if s.comp_id in first:
                # The section is always [oms]: the message names the other session in full.
                raise ValueError(f"sessions[{i}].comp_id: duplicate OMS comp_id {s.comp_id!r}, "
                                 f"oms.sessions[{first[s.comp_id]}]'s too: each OMS session "
                                 "needs a comp_id of its own")
            first[s.comp_id] = i
        return self


class TlsConnectConfig(StrictModel):
    """TLS to the venue (Kraken requires TLS 1.2+ on FIX)."""

    # CA bundle to verify the venue's certificate; None uses the system store.
    ca_file: Path | None = None
    # Kraken says verification "can be skipped for UAT"; keep it on unless you must.
    verify: bool = True
    # SNI / name to verify; defaults to the session's host.
    server_hostname: str | None = None
    # Client certificate, for venues that want one.
    cert_file: Path | None = None
    key_file: Path | None = None
    # Our outgoing address, where the venue allow-lists source IPs.
    source_address: str | None = None

    @field_validator("source_address")
    @classmethod
    def _an_ip(cls, value: str | None) -> str | None:
        """Bound before every connect: a typo would fail each one, never the start."""
        if value is not None:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError("must be an IP address of this host (the one the venue "
                                 "allow-lists)") from None
        return value


class VenueSessionConfig(StrictModel):
    """One initiator to the venue. Host/port may be left 0 when the embedded simulator is on."""

    target_comp_id: str
    host: str = "127.0.0.1"
    port: Port = 0
    tls: TlsConnectConfig | None = None

    _cid = field_validator("target_comp_id")(_check_comp_id)

    @field_validator("host")
    @classmethod
    def _a_host(cls, value: str) -> str:
        """Empty, or with a space (a trailing one is easy to paste), it would fail only at each
        connect, by DNS, or (empty) reach this host."""
        if not value or any(c.isspace() for c in value):
            raise ValueError("must be a host name or address, without spaces")
        return value


class TradingSessionConfig(VenueSessionConfig):
    target_comp_id: str = "KRAKEN-TRD"


class MarketDataSessionConfig(VenueSessionConfig):
    target_comp_id: str = "KRAKEN-MD"


class FuturesConfig(StrictModel):
    """Kraken Futures for the signals' perp inputs (mark/index, funding, open interest): the WS
    ticker feed when configured, REST polling for funding history and as the fallback."""

    enabled: bool = True
    # Empty = the embedded simulator's futures face; Kraken: https://futures.kraken.com
    base_url: str = ""
    poll_interval_s: float = Field(default=5.0, gt=0)
    # Perpetual -> the spot book its basis and depth are measured against.
    perps: dict[str, str] = Field(default_factory=lambda: {"PF_XBTUSD": "BTC/USD",
                                                           "PF_ARBUSD": "ARB/USD"})
    # WS v1 ticker feed; Kraken: wss://futures.kraken.com/ws/v1. Empty = the embedded
    # simulator's feed when it runs, else no feed (REST polling only).
    ws_url: str = ""
    # false = no feed even with the embedded simulator (REST polling only).
    ws_enabled: bool = True
    # A perp without a ticker this long is resubscribed, a connection silent this long reopened;
    # meanwhile REST polling delivers that perp again.
    ws_stale_after_s: float = Field(default=10.0, gt=0)

    @field_validator("ws_url")
    @classmethod
    def _ws_scheme(cls, value: str) -> str:
        if value and not value.startswith(("ws://", "wss://")):
            raise ValueError("must be a ws:// or wss:// URL (Kraken: "
                             "wss://futures.kraken.com/ws/v1), or empty")
        return value


# MarketDepth (264) values the gateway asks the venue for. Kraken's FIX MarketDataRequest takes
# 0 (full book), 1, 10, 25, 100, 500 or 1000. Its CRC32 checksum (5041) is over the top 10
# levels of each side whatever the depth, so a book of 1 level never matches it (the gateway
# would resubscribe it forever); a full book (0) has no bound the gateway's books (max_depth),
# the OMS views or the WS fallback (10/25/100/500/1000) could share. What is left is exactly
# what the WS fallback serves too, so both sources feed books of the same depth.
MD_DEPTHS = (10, 25, 100, 500, 1000)


class VenueConfig(StrictModel):
    # Kraken assigns the SenderCompID; the derivatives sessions use the same ID + "DRV".
    sender_comp_id: str = "FIXGW"
    heartbeat_interval: int = Field(default=30, ge=1, le=3600)
    # Backoff between connection attempts: doubles from min to max, with jitter.
    reconnect_min_s: float = Field(default=1.0, gt=0, le=3600)
    reconnect_max_s: float = Field(default=30.0, gt=0, le=86_400)
    trading: TradingSessionConfig = TradingSessionConfig()
    market_data: MarketDataSessionConfig = MarketDataSessionConfig()
    api_key: CredentialRef | None = None
    api_secret: CredentialRef | None = None
    # Kraken tag 8674: leave resting orders at the venue when our session drops, because the
    # gateway resumes its sessions and journal after a restart and fallback transports need them.
    cancel_orders_on_disconnect: bool = False
    symbols: tuple[str, ...] = ("BTC/USD", "ETH/USD", "ARB/USD")
    futures: FuturesConfig = FuturesConfig()
    fallback: FallbackConfig = FallbackConfig()
    md_fallback: MdFallbackConfig = MdFallbackConfig()
    # MarketDepth (264) of the venue MD subscriptions: one of MD_DEPTHS (see there).
    md_depth: int = 10
    # A subscribed symbol silent this long is resubscribed (fresh snapshot).
    md_stale_after_s: float = Field(default=10.0, gt=0)

    _cid = field_validator("sender_comp_id")(_check_comp_id)

    @field_validator("symbols")
    @classmethod
    def _each_symbol_once(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Listed twice, a symbol was subscribed twice at each logon."""
        for i, symbol in enumerate(value):
            if symbol in value[:i]:
                raise ValueError(f"[{i}]: {symbol!r} is venue.symbols[{value.index(symbol)}] "
                                 "too: list each symbol once")
        return value

    @field_validator("md_depth")
    @classmethod
    def _md_depth(cls, value: int) -> int:
        """Refused at load rather than by the venue at each subscribe (a 35=Y per symbol, no
        book at all) or, worse, accepted and never verifiable: see MD_DEPTHS."""
        if value not in MD_DEPTHS:
            raise ValueError(f"must be one of {', '.join(map(str, MD_DEPTHS))}: "
                             "Kraken serves books of 0 (full), 1, 10, 25, 100, 500 or 1000 "
                             "levels, its checksum (5041) covers the top 10, so fewer than 10 "
                             "levels can never be verified, and the full book (0) has no depth "
                             "the gateway's books or the WS fallback can hold")
        return value

    @model_validator(mode="after")
    def _backoff_order(self) -> VenueConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError(f"reconnect_max_s: must be >= reconnect_min_s "
                             f"({self.reconnect_min_s})")
        if (self.api_key is None) != (self.api_secret is None):
            missing = "api_key" if self.api_key is None else "api_secret"
            raise ValueError(f"{missing}: missing: api_key and api_secret go together: give "
                             "both or neither")
        if self.trading.target_comp_id == self.market_data.target_comp_id:
            # One SessionID for both: QuickFIX refuses the rendered settings at start
            # ("Duplicate Session"), with a traceback, after the checks had passed.
            raise ValueError(
                f"market_data.target_comp_id: {self.market_data.target_comp_id!r} is "
                "venue.trading.target_comp_id too: the two venue sessions need different "
                "TargetCompIDs (Kraken: KRAKEN-TRD and KRAKEN-MD)")
        return self


class SimulatorConfig(StrictModel):
    """The embedded UAT venue. Ports 0 mean: pick free loopback ports at start."""

    enabled: bool = True
    host: str = "127.0.0.1"
    trading_port: Port = 0
    md_port: Port = 0
    seed: int = 7
    flow_rate_hz: float = Field(default=20.0, ge=0)
    # Perp market scenario of the futures face: "default", "arb-crowded-long" (signals.md §9),
    # "legacy-4h", or a TOML/JSON scenario file.
    scenario: str = "default"
    # More API accounts on the embedded venue (`fixgw venue-sim --accounts`): bots that trade
    # on the same books as the gateway, over REST, WS or FIX. Read at start; a bad one stops it.
    accounts_file: Path | None = None


class GatewayConfig(StrictModel):
    data_dir: Path = Path("./var")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Log every FIX message (credentials masked) to <data_dir>/log; off keeps the hot path lean.
    fix_message_log: bool = False
    # The message log rotates at this size, keeping this many old files (fix-messages.log.1 ..).
    fix_message_log_max_mb: int = Field(default=256, ge=1)
    fix_message_log_backups: int = Field(default=10, ge=0)
    # stderr log lines: "text" (human) or "json" (one object per line: ts, level, logger, msg).
    log_format: Literal["text", "json"] = "text"
    # Order journal: a background fsync at most this often. The write itself is synchronous
    # (page cache), which already survives a process kill; fsync covers a machine crash.
    journal_fsync_interval_ms: int = Field(default=50, ge=0)
    # Every this many seconds, freeze what survived the young garbage collections, so no full
    # collection walks the growing order history again (gateway/server/gc_freezer.py). 0 = off
    # (CPython's own collections only; full ones then stall the FIX threads longer as the
    # history grows).
    gc_freeze_interval_s: float = Field(default=10.0, ge=0)
    # A closed order is forgotten this long after it closed (bounded memory, and a journal
    # compacted once it is mostly history), and a ClOrdID the gateway rejected stops being a
    # duplicate. A day by default: FIX wants ClOrdIDs unique within a trading day. 0 = keep
    # every order of the run. See gateway/orders/store.py.
    closed_order_retention_s: float = Field(default=86_400.0, ge=0)
    # How long a cancel sent for an order and not answered yet counts as on its way: meanwhile
    # the kill switch, operator cancels, cancel-on-disconnect and a restart's completion of a
    # mass cancel send that order no second cancel (double the traffic against the venue's
    # rate limits in an incident, and a cancel reject for each); after it they send a new one,
    # so a cancel whose answer never comes does not block every later one. At most 10 minutes:
    # longer would leave an order nobody can cancel again for that long. See
    # gateway.routing.router.Router.cancel_in_flight.
    cancel_in_flight_s: float = Field(default=CANCEL_IN_FLIGHT_S, gt=0, le=600)

    @field_validator("closed_order_retention_s")
    @classmethod
    def _retention_floor(cls, v: float) -> float:
        if 0 < v < 60:
            raise ValueError("must be 0 (keep every order) or at least 60 seconds: a closed "
                             "order's late reports and status requests still need it")
        return v


def _tls_pair(cert: Path | None, key: Path | None) -> None:
    if (cert is None) != (key is None):
        missing = "tls_cert_file" if cert is None else "tls_key_file"
        raise ValueError(f"{missing}: missing: tls_cert_file and tls_key_file go together")


class GrpcConfig(StrictModel):
    """The gRPC event (and signal) service. Port 0 = an ephemeral port, printed at start."""

    host: str = "127.0.0.1"
    port: Port = 50051
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    # Event journal retention on disk (resume survives a restart within this much history).
    retention_mb: int = Field(default=1024, ge=1)
    # With `event_process = false` only: how often the in-process event server looks for new
    # events when its journal has failed (otherwise the journal writer wakes it after each
    # write). 0 = the publishing thread wakes it at once. The event process never polls.
    wake_interval_ms: float = Field(default=5.0, ge=0)
    # Serve events from a child process (see gateway/events/process.py): subscribers then never
    # share the gateway's GIL with the FIX threads. false = in the gateway process (debugging).
    event_process: bool = True
    # CPU priority of that process relative to the gateway (nice increment, 0-19): under a
    # saturated CPU the order path wins and subscribers catch up in bigger batches. 10 rather
    # than 5: with 10 live subscribers on 2 cores, tools/bench_events.py's FIX round-trip p99
    # ratio went from 1.15-1.33 to 1.22-1.23, with the same delivery latency (p50 ~3 ms).
    event_process_nice: int = Field(default=10, ge=0, le=19)
    # Its thread that reads, builds and journals events runs at idle priority (SCHED_IDLE, on
    # Linux): any busy core goes to the order path first. If events wait ~0.1-0.2 s for an idle
    # core, a thread at `event_process_nice` takes over until they are caught up
    # (gateway/events/pump.py). Costs subscribers some delivery latency (README, bench_events).
    # false = that thread at `event_process_nice` too.
    event_process_idle: bool = True
    # How many events a live subscriber may fall behind the newest before it is cut off with
    # RESOURCE_EXHAUSTED (it resumes from its last sequence, from the journal). Below the event
    # log's in-memory ring (65,536 events), so a live subscriber never reads from disk.
    max_subscriber_lag_events: int = Field(default=50_000, ge=100, lt=1 << 16)

    @model_validator(mode="after")
    def _tls_pair(self) -> GrpcConfig:
        _tls_pair(self.tls_cert_file, self.tls_key_file)
        return self


class AdminConfig(StrictModel):
    """The authenticated AdminService used by fixgwctl, on its own loopback listener so the
    event port can be exposed while admin stays local."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = 50052
    # { file = "..." } or { env = "..." }; none = generated at <data_dir>/admin.token (0600).
    operator_token: CredentialRef | None = None
    read_only_token: CredentialRef | None = None
    # Append-only audit of every mutating admin action; default <data_dir>/admin-audit.jsonl.
    audit_log: Path | None = None
    # TLS on the admin listener (fixgwctl --ca-file); with tls_client_ca_file, mutual TLS:
    # clients must present a certificate signed by that CA (fixgwctl --cert-file/--key-file).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None

    @model_validator(mode="after")
    def _tls_files(self) -> AdminConfig:
        _tls_pair(self.tls_cert_file, self.tls_key_file)
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file: mutual TLS needs tls_cert_file and "
                             "tls_key_file: the listener must speak TLS first")
        return self


class MetricsConfig(StrictModel):
    """Prometheus metrics (GET /metrics) on their own listener; port 0 = an ephemeral port,
    printed at start. Loopback by default: scrape through a local agent or expose on purpose."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = 9464


class Config(StrictModel):
    gateway: GatewayConfig = GatewayConfig()
    oms: OmsConfig = OmsConfig()
    venue: VenueConfig = VenueConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    simulator: SimulatorConfig = SimulatorConfig()
    grpc: GrpcConfig = GrpcConfig()
    admin: AdminConfig = AdminConfig()
    metrics: MetricsConfig = MetricsConfig()
    risk: GateConfig = GateConfig()

    @model_validator(mode="after")
    def _venue_reachable(self) -> Config:
        if not self.simulator.enabled:
            venue = self.venue
            for name, sess in (("trading", venue.trading), ("market_data", venue.market_data)):
                if sess.port == 0:
                    raise ValueError(
                        f"venue.{name}.port: must be set when the embedded simulator is disabled"
                    )
            if venue.md_fallback.enabled and not venue.md_fallback.ws_url:
                raise ValueError("venue.md_fallback.ws_url: must be set when the embedded "
                                 "simulator is disabled (Kraken: wss://ws.kraken.com/v2)")
        return self

    @model_validator(mode="after")
    def _oms_and_venue_sessions_differ(self) -> Config:
        """QuickFIX keeps one session per SessionID in a process-wide registry: an OMS session
        whose ID is a venue session's (same SenderCompID, its comp_id the venue's
        TargetCompID) would fail only at start, after the venue sessions have logged on."""
        v = self.venue
        if self.oms.sender_comp_id != v.sender_comp_id:
            return self
        venue = {v.trading.target_comp_id: "trading", v.market_data.target_comp_id: "market data"}
        for i, s in enumerate(self.oms.sessions):
            if s.comp_id in venue:
                raise ValueError(
                    f"oms.sessions[{i}].comp_id: {s.comp_id!r} makes the OMS session "
                    f"{self.oms.sender_comp_id}->{s.comp_id} the same as the venue "
                    f"{venue[s.comp_id]} session (oms.sender_comp_id and venue.sender_comp_id "
                    f"are both {v.sender_comp_id!r}); give the OMS another comp_id, or "
                    "oms.sender_comp_id another value")
        return self
