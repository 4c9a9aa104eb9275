"""`fixgw run`: load config, bring up the embedded venue if configured, run the gateway until
SIGINT/SIGTERM, then log everything out cleanly."""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from gateway.admin.auth import AdminTokens, resolve_tokens
from gateway.admin.service import AdminServer
from gateway.config.loader import ConfigError
from gateway.config.model import Config
from gateway.events import EventLog, EventLogConfig, EventServer, EventServerConfig
from gateway.events.process import EventProcess, EventProcessSpec
from gateway.events.publisher import DeferredPublisher
from gateway.events.server import EventServerStats
from gateway.fix.kraken_logon import KrakenCredentials
from gateway.kraken.secrets import SecretMaskingFilter, load_secret
from gateway.listen import ListenError
from gateway.metrics import GatewayMetrics, MetricsServer, SubscriberStats
from gateway.server.data_dir import prepare_data_dir
from gateway.server.embedded_sim import EmbeddedSimulator, random_credentials
from gateway.server.gateway import Gateway, VenueEndpoints
from gateway.server.gc_freezer import GcFreezer
from gateway.server.preflight import credential_file_warnings
from gateway.server.signal_services import (
    POSITIONING_SERVICE_NAME,
    SIGNAL_SERVICE_NAME,
    signal_service_registrations,
)

log = logging.getLogger("fixgw")

# A clean stop takes a few seconds (QuickFIX waits up to 10 s for each engine's Logouts); one
# still running after this long is stuck somewhere, and the stacks say where.
STOP_STACK_DUMP_S = 15.0


def venue_credentials(config: Config) -> KrakenCredentials | None:
    v = config.venue
    if v.api_key is None or v.api_secret is None:
        return None
    return KrakenCredentials(
        api_key=load_secret(v.api_key.env, v.api_key.file),
        api_secret=load_secret(v.api_secret.env, v.api_secret.file),
    )


def _admin_server(gateway: Gateway, config: Config, tok: AdminTokens,
                  data_dir: Path) -> AdminServer:
    """The admin service, not yet listening; an audit log that cannot be opened is a
    ConfigError naming the setting (TokenError and AdminTlsError name theirs)."""
    a = config.admin
    audit_path = a.audit_log or data_dir / "admin-audit.jsonl"
    try:
        return AdminServer(gateway, operator_token=tok.operator, read_only_token=tok.read_only,
                           audit_path=audit_path, host=a.host, port=a.port,
                           tls_cert_file=a.tls_cert_file, tls_key_file=a.tls_key_file,
                           tls_client_ca_file=a.tls_client_ca_file)
    except OSError as exc:
        raise ConfigError(f"admin audit log {audit_path} cannot be opened "
                          f"({exc.strerror or exc}); fix [admin] audit_log"
                          + ("" if a.audit_log else " or the data directory")) from None


class Runtime:
    """Everything `fixgw run` starts, in start order, so stop can run in reverse."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.sim: EmbeddedSimulator | None = None
        self.gateway: Gateway | None = None
        self.events: EventLog | None = None
        self.event_server: EventServer | None = None
        self.event_process: EventProcess | None = None
        self.admin: AdminServer | None = None
        self.metrics: GatewayMetrics | None = None
        self.metrics_server: MetricsServer | None = None
        self.gc_freezer: GcFreezer | None = None
        self._mask_filter: SecretMaskingFilter | None = None

    def start(self) -> dict[str, Any]:
        c = self.config
        # Said first, whatever stops the start later: each credential file others can read.
        for warning in credential_file_warnings(c):
            log.warning("%s", warning)
        data_dir = prepare_data_dir(Path(c.gateway.data_dir))
        a = c.admin
        # Tokens first: a token that cannot be read stops the start before any session logs on.
        tok = resolve_tokens(
            data_dir,
            operator_file=a.operator_token.file if a.operator_token else None,
            operator_env=a.operator_token.env if a.operator_token else None,
            read_only_file=a.read_only_token.file if a.read_only_token else None,
            read_only_env=a.read_only_token.env if a.read_only_token else None,
        ) if a.enabled else None
        creds = venue_credentials(c)
        if c.simulator.enabled:
            creds = creds or random_credentials()
        if creds is not None:  # no log line may carry the venue key or secret
            self._mask_filter = SecretMaskingFilter((creds.api_key, creds.api_secret))
            for handler in logging.getLogger().handlers:
                handler.addFilter(self._mask_filter)
        if c.simulator.enabled:
            assert creds is not None
            self.sim = EmbeddedSimulator(c.simulator, data_dir / "venue-sim",
                                         [c.venue.sender_comp_id], creds, c.schedule)
            ep = self.sim.start()
            endpoints = VenueEndpoints(ep.host, ep.trading_port, ep.host, ep.md_port,
                                       c.venue.futures.base_url
                                       or f"http://{ep.host}:{ep.futures_rest_port}",
                                       c.venue.fallback.rest_url
                                       or (f"http://{ep.host}:{ep.spot_rest_port}"
                                           if ep.spot_rest_port else ""),
                                       spot_ws_url=c.venue.md_fallback.ws_url
                                       or (f"ws://{ep.host}:{ep.spot_ws_port}/v2"
                                           if ep.spot_ws_port else ""),
                                       futures_ws_url=c.venue.futures.ws_url
                                       or (f"ws://{ep.host}:{ep.futures_ws_port}/ws/v1"
                                           if ep.futures_ws_port else ""))
            log.info("embedded UAT venue: FIX trading %s:%d (KRAKEN-TRD), market data %s:%d "
                     "(KRAKEN-MD); spot REST http://%s:%d, spot WS ws://%s:%d/v2, futures REST "
                     "http://%s:%d, futures WS ws://%s:%d/ws/v1", ep.host, ep.trading_port,
                     ep.host, ep.md_port, ep.host, ep.spot_rest_port, ep.host, ep.spot_ws_port,
                     ep.host, ep.futures_rest_port, ep.host, ep.futures_ws_port)
        else:
            endpoints = VenueEndpoints(c.venue.trading.host, c.venue.trading.port,
                                       c.venue.market_data.host, c.venue.market_data.port,
                                       c.venue.futures.base_url, c.venue.fallback.rest_url,
                                       futures_ws_url=c.venue.futures.ws_url)
        grpc_port = self._start_events(endpoints, creds)
        assert self.gateway is not None
        metrics_at = self._start_metrics(self.gateway)  # before any session: count from the start
        if tok is not None:
            # Its token table, TLS files and audit log before any session logs on: a problem
            # with one stops the start with nothing logged on (it listens once the gateway is up).
            self.admin = _admin_server(self.gateway, c, tok, data_dir)
        self.gateway.start()
        if c.gateway.gc_freeze_interval_s > 0:
            self.gc_freezer = GcFreezer(c.gateway.gc_freeze_interval_s)
            self.gc_freezer.start()
        where = {}
        if tok is not None and self.admin is not None:
            where["admin"] = f"{a.host}:{_listening(self.admin.start, _ADMIN_PORT_HINT)}"
            if tok.generated_file is not None:
                print(f"fixgw admin token: {tok.generated_file} (mode 0600; fixgwctl reads it "
                      "via FIXGW_TOKEN_FILE, default ./var/admin.token)", flush=True)
        return where | {"oms": f"{c.oms.host}:{c.oms.port}", "venue_trading":
                f"{endpoints.trading_host}:{endpoints.trading_port}",
                "venue_md": f"{endpoints.md_host}:{endpoints.md_port}",
                "grpc": f"{c.grpc.host}:{grpc_port}"} | metrics_at

    def _start_events(self, endpoints: VenueEndpoints, creds: KrakenCredentials | None) -> int:
        """The gateway with its event stream; returns the public gRPC port.

        By default events are served by a child process (`gateway.events.process`) that also
        forwards SignalService/PositioningService to a loopback server in this process.
        """
        c = self.config
        g = c.grpc
        journal_dir = Path(c.gateway.data_dir) / "events"
        wake_s = g.wake_interval_ms / 1000 if g.wake_interval_ms else None
        if not g.event_process:
            self.events = EventLog(EventLogConfig(
                journal_dir=journal_dir, retention_max_bytes=g.retention_mb * 1024 * 1024))
            self.gateway = Gateway(c, endpoints, creds, self.events)
            self.event_server = EventServer(self.events, EventServerConfig(
                host=g.host, port=g.port, tls_cert_file=g.tls_cert_file,
                tls_key_file=g.tls_key_file, tls_client_ca_file=g.tls_client_ca_file,
                wake_interval_s=wake_s, max_lag_events=g.max_subscriber_lag_events),
                extra_services=signal_service_registrations(self.gateway.signal_runner))
            port = _listening(self.event_server.start, _GRPC_PORT_HINT)
            where = "in the gateway process"
        else:
            self.event_process = EventProcess(EventProcessSpec(
                journal_dir=str(journal_dir), retention_max_bytes=g.retention_mb * 1024 * 1024,
                host=g.host, port=g.port,
                tls_cert_file=str(g.tls_cert_file) if g.tls_cert_file else None,
                tls_key_file=str(g.tls_key_file) if g.tls_key_file else None,
                tls_client_ca_file=str(g.tls_client_ca_file) if g.tls_client_ca_file else None,
                proxy_services=[SIGNAL_SERVICE_NAME, POSITIONING_SERVICE_NAME],
                nice=g.event_process_nice, idle=g.event_process_idle,
                max_lag_events=g.max_subscriber_lag_events,
                log_level=logging.getLevelName(logging.getLogger().getEffectiveLevel()),
                log_format=c.gateway.log_format))
            self.gateway = Gateway(c, endpoints, creds, self.event_process.publisher)
            # The gateway's own services, on loopback only, reached through the event process.
            self.event_server = EventServer(None, EventServerConfig(host="127.0.0.1", port=0),
                                            extra_services=signal_service_registrations(
                                                self.gateway.signal_runner))
            internal = self.event_server.start()
            process = self.event_process
            port = _listening(lambda: process.start(proxy_target=f"127.0.0.1:{internal}"),
                              _GRPC_PORT_HINT)
            where = f"by the event process (pid {self.event_process.pid})"
        log.info("gRPC EventService, SignalService, PositioningService on %s:%d, served %s "
                 "(events journal %s)", g.host, port, where, journal_dir)
        return port

    def _start_metrics(self, gw: Gateway) -> dict[str, str]:
        """[metrics]: the collector wired into the router, the session board and the transport
        switch, and its HTTP listener; returns {"metrics": host:port} for the ready line."""
        m, c = self.config.metrics, self.config
        if not m.enabled:
            return {}
        v = c.venue
        roles = {f"{c.oms.sender_comp_id}->{s.comp_id}": "oms" for s in c.oms.sessions}
        roles[f"{v.sender_comp_id}->{v.trading.target_comp_id}"] = "venue-trading"
        roles[f"{v.sender_comp_id}->{v.market_data.target_comp_id}"] = "venue-md"
        router = gw.router
        self.metrics = GatewayMetrics(
            gw.board, roles=roles,
            transport=lambda: "rest" if router._rest_active() else "fix",
            subscriber_stats=self._metrics_subscribers, order_counts=gw.store.counts,
            gc_freezes=lambda: self.gc_freezer.freezes if self.gc_freezer is not None else 0)
        self.metrics.attach(router)
        gw.transport_listeners.append(self.metrics.transport_switched)
        self.metrics_server = MetricsServer(self.metrics, m.host, m.port)
        return {"metrics": f"{m.host}:{_listening(self.metrics_server.start, _METRICS_PORT_HINT)}"}

    def _metrics_subscribers(self) -> SubscriberStats:
        s = self.subscriber_stats()
        ep, gw = self.event_process, self.gateway
        return SubscriberStats(
            s.subscribers, s.queued, s.cutoffs_total,
            dropped_total=ep.publisher.dropped if ep is not None
            else gw.events.dropped if gw is not None and isinstance(gw.events, DeferredPublisher)
            else 0,
            process_restarts=ep.restarts if ep is not None else 0,
            lost_total=ep.lost_events if ep is not None else 0)

    def subscriber_stats(self) -> EventServerStats:
        """Event subscribers now, for metrics: from the event process or the in-process server."""
        if self.event_process is not None:
            s = self.event_process.stats()
            return EventServerStats(s.subscribers, s.queued, s.cutoffs_total)
        if self.event_server is not None:
            return self.event_server.stats()
        return EventServerStats(0, 0, 0)

    def stop(self) -> None:
        """Admin first (no operator action mid-shutdown), then sessions (their last events
        still get published), then the event service, then the log (which flushes its
        journal), then the embedded venue."""
        if self.gc_freezer is not None:
            self.gc_freezer.stop()
        if self.admin is not None:
            self.admin.stop()
        if self.metrics_server is not None:
            self.metrics_server.stop()
        if self.gateway is not None:
            self.gateway.stop()
        if self.event_process is not None:
            self.event_process.stop()  # publishes what is pending, flushes the journal
        if self.event_server is not None:
            self.event_server.stop(grace=1.0)
        if self.events is not None:
            self.events.close(writer_wait_s=10.0)  # a writer stuck on its disk: stop anyway
        if self.sim is not None:
            self.sim.stop()
        if self._mask_filter is not None:
            for handler in logging.getLogger().handlers:
                handler.removeFilter(self._mask_filter)


_GRPC_PORT_HINT = "choose another port with `fixgw run --grpc-port N` or [grpc] port"
_ADMIN_PORT_HINT = ("choose another port with `fixgw run --admin-port N` or [admin] port, or "
                    "turn it off with [admin] enabled = false")
_METRICS_PORT_HINT = ("choose another port with `fixgw run --metrics-port N` or [metrics] port, "
                      "or turn it off with [metrics] enabled = false")


def _listening(start: Callable[[], int], hint: str) -> int:
    """`start()` a listener; a port it cannot bind stops the start with `hint` added (the
    listener knows its address, the runner which setting names it)."""
    try:
        return start()
    except ListenError as exc:
        raise ListenError(f"{exc}; {hint}") from None


def run_forever(config: Config) -> int:
    # The FIX callback threads, the event server's loop and the signal worker share one GIL;
    # a shorter switch interval bounds how long a FIX callback waits behind the others.
    sys.setswitchinterval(0.0005)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("received %s: logging out sessions", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    # A closed terminal (an ssh session that drops) would otherwise kill the gateway mid-day
    # without a Logout: the venue would see a dropped connection, and may cancel its orders.
    signal.signal(signal.SIGHUP, _on_signal)
    rt = Runtime(config)
    try:
        where = rt.start()
        print("fixgw ready: " + ", ".join(f"{k}={v}" for k, v in where.items()), flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        stop_or_dump_stacks(rt.stop, STOP_STACK_DUMP_S)
    return 0


def stop_or_dump_stacks(stop: Callable[[], None], dump_after_s: float,
                        out: IO[str] | None = None) -> None:
    """Run `stop`; if it is still running after `dump_after_s`, write every thread's stack to
    `out` (stderr, next to the log) and let it go on. A shutdown that hangs (a thread that
    will not join, a session that never logs out) then says where, instead of only being
    killed by whoever waits for it."""
    target = out if out is not None else sys.stderr
    faulthandler.dump_traceback_later(dump_after_s, exit=False, file=target)
    try:
        stop()
    finally:
        faulthandler.cancel_dump_traceback_later()
