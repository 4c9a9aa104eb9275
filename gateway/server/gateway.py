"""One gateway process: the OMS acceptor, the venue initiators, the router and their stores.

Start order matters: the order store is replayed before any session can deliver a message,
the venue initiators start before the OMS acceptor so a logging-on OMS finds the venue path
already coming up, and stop runs in reverse so every session logs out before stores close.
"""

from __future__ import annotations

import logging
import logging.handlers
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import quickfix as fix
from google.protobuf import json_format

from gateway.config.model import Config, TlsConnectConfig
from gateway.events import builders
from gateway.events.log import EventLog
from gateway.events.publisher import EventPublisher, InProcessPublisher
from gateway.fix.application import (
    SessionApplication,
    SessionStatus,
    StatusBoard,
    message_log,
)
from gateway.fix.engines import stop_engines
from gateway.fix.kraken_logon import KrakenCredentials
from gateway.fix.reconnect import ReconnectSupervisor
from gateway.fix.settings import (
    VENUE_LENIENCY,
    SessionBlock,
    SettingsFile,
    acceptor_address_policy,
    common_defaults,
    free_port,
)
from gateway.fix.store_scrub import LogonScrubber
from gateway.kraken.auth import NonceSource
from gateway.kraken.secrets import SecretMaskingFilter
from gateway.listen import ListenError, host_port
from gateway.marketdata.fanout import OmsMarketData
from gateway.marketdata.feed import MarketDataFeed
from gateway.marketdata.instruments import InstrumentRegistry
from gateway.orders.store import OrderStore
from gateway.risk.gate import Gate
from gateway.risk.validation import OrderValidator
from gateway.routing.failover import RestFallback, TransportPolicy
from gateway.routing.md_failover import MdFailover, MdSource
from gateway.routing.router import Router, cut_stalled_oms
from gateway.server.event_sink import EventSink
from gateway.server.kill_switch import KillSwitchSweeper
from gateway.server.operator_state import (
    KILL_SWITCH_FILE,
    SESSION_HOLDS_FILE,
    KillSwitchFile,
    SessionHold,
    SessionHolds,
    utc_now,
)
from gateway.server.periodic import Periodic
from gateway.server.signal_runner import SignalRunner
from gateway.server.signal_services import snapshot_to_proto
from gateway.signals import SignalSnapshot
from gateway.transports.kraken_futures_rest import KrakenFuturesRest
from gateway.transports.kraken_futures_ws import KrakenFuturesWs
from gateway.transports.kraken_spot_rest import KrakenSpotRest
from gateway.transports.perp_poller import PerpPoller
from gateway.transports.tls_bridge import (
    TlsClientBridge,
    TlsServerBridge,
    client_context,
    server_context,
)

log = logging.getLogger("fixgw.gateway")


@dataclass(frozen=True)
class VenueEndpoints:
    """Where the venue's FIX sessions are: from config, or from the embedded simulator."""

    trading_host: str
    trading_port: int
    md_host: str
    md_port: int
    futures_rest_url: str = ""
    spot_rest_url: str = ""
    spot_ws_url: str = ""
    # Kraken Futures WS v1 ticker feed; empty = none (REST polling only).
    futures_ws_url: str = ""


class Gateway:
    def __init__(self, config: Config, endpoints: VenueEndpoints,
                 credentials: KrakenCredentials | None,
                 events: EventPublisher | EventLog | None = None) -> None:
        self.config = config
        self.endpoints = endpoints
        self.data_dir = Path(config.gateway.data_dir)
        self.board = StatusBoard()
        retention_s = config.gateway.closed_order_retention_s
        self.store = OrderStore(self.data_dir / "orders.journal",
                                config.gateway.journal_fsync_interval_ms,
                                closed_retention_s=retention_s)
        self._evictor: Periodic | None = None
        self._trading_status_poller: Periodic | None = None
        self._parked_flusher: Periodic | None = None
        self._send_watch: Periodic | None = None
        self.instruments = InstrumentRegistry()
        self.md_feed = MarketDataFeed(config.venue.symbols, config.venue.md_depth,
                                      self.instruments, config.venue.md_stale_after_s)
        self.validator = OrderValidator(known_symbol=self._known_symbol,
                                         instrument_check=self._instrument_check)
        # Signals: recomputed off the order path on the runner's worker thread, from the spot
        # books (as an MD listener), the perps' tickers/funding, and pushed positioning.
        # OI rows at the poll rate whichever feed delivers the tickers (see signal_runner).
        fut = config.venue.futures
        self.signal_runner = SignalRunner(self.md_feed.books, fut.perps,
                                          on_snapshot=self._publish_snapshot,
                                          oi_row_min_interval_s=fut.poll_interval_s)
        self.md_feed.listeners.append(self.signal_runner)
        # Perp tickers from the WS feed while it is live; REST polls funding history always
        # and tickers only for perps the feed does not carry (kraken_futures_ws docstring).
        self.perp_ws: KrakenFuturesWs | None = None
        self.perp_poller: PerpPoller | None = None
        ws_url = endpoints.futures_ws_url if fut.ws_enabled else ""
        if fut.enabled and endpoints.futures_rest_url and fut.perps:
            self.perp_poller = PerpPoller(KrakenFuturesRest(endpoints.futures_rest_url),
                                          list(fut.perps), fut.poll_interval_s,
                                          self.signal_runner.on_perp_update,
                                          live_elsewhere=self._perp_ws_live if ws_url else None)
        if fut.enabled and ws_url and fut.perps:
            poller = self.perp_poller
            self.perp_ws = KrakenFuturesWs(
                ws_url, list(fut.perps), self.signal_runner.on_perp_update,
                funding_history=poller.funding_history if poller is not None else None,
                stale_after_s=fut.ws_stale_after_s,
                on_down=poller.wake if poller is not None else None)
        # An EventLog given directly (tests, tools) gets an in-process publisher this gateway owns;
        # `fixgw run` passes the event process's publisher and closes it itself.
        self._owns_publisher = isinstance(events, EventLog)
        self.events: EventPublisher | None = (InProcessPublisher(events)
                                              if isinstance(events, EventLog) else events)
        self.gate = Gate(config.risk, mid=self._mid, snapshot=self._snapshot,
                         lot_size=self._lot_size, book=self.md_feed.books.get)
        self.session_holds = SessionHolds(self.data_dir / SESSION_HOLDS_FILE)
        self.kill_switch_file = KillSwitchFile(self.data_dir / KILL_SWITCH_FILE)
        self.router = Router(self.store, self.validator, gate=self.gate,
                             cancel_in_flight_s=config.gateway.cancel_in_flight_s)
        v = config.venue
        # Cancels the kill switch could not send go out once the venue trading session is back.
        self.kill_sweeper = KillSwitchSweeper(
            self.store.open_orders, self.router.cancel_each_unasked, lambda: self.gate.kill_switch,
            f"{v.sender_comp_id}->{v.trading.target_comp_id}",
            settle_s=self.router.reconcile_delay_s)
        self.board.listeners.append(self.kill_sweeper.session_changed)
        held = self.kill_switch_file.load()
        if held is not None:
            self.gate.kill_switch = True
            self.kill_sweeper.arm()  # its cancels not sent yet go at the first logon
            log.warning("kill switch ON, as an operator left it (%s): new orders are blocked "
                        "until `fixgwctl kill-switch off`", held)
        for oms_session, n in Counter(o.oms_session for o in self.store.open_orders()).items():
            self.gate.count_open(oms_session, n)  # replayed: open before this start
        self.router.venue.rollover = config.schedule
        self.router.md = OmsMarketData(self.md_feed)
        self.event_sink: EventSink | None = None
        if self.events is not None:
            v = config.venue
            sink = self.event_sink = EventSink(
                self.events, f"{v.sender_comp_id}->{v.trading.target_comp_id}",
                f"{v.sender_comp_id}->{v.market_data.target_comp_id}")
            self.router.sink = sink
            self.board.listeners.append(sink.session_changed)
            self.md_feed.listeners.append(sink)
        self.credentials = credentials
        # The venue Logons' 553/554 are blanked out of the file store after each logon.
        self.store_scrubber = LogonScrubber(self.data_dir / "store" / "venue")
        self.board.listeners.append(self._scrub_after_venue_logon)
        # Also told of every order-flow transport switch (old, new, reason, automatic): metrics.
        self.transport_listeners: list[Callable[[str, str, str, bool], None]] = [
            self.kill_sweeper.transport_switched]
        self.fallback = self._build_fallback()
        self.md_failover = self._build_md_failover()
        self._acceptor: fix.ThreadedSocketAcceptor | None = None
        self._initiator: fix.SocketInitiator | None = None
        self._supervisor: ReconnectSupervisor | None = None
        # QuickFIX keeps raw pointers to these: they must outlive the engines.
        self._keep: list[object] = []
        self._bridges: list[TlsClientBridge | TlsServerBridge] = []
        self._oms_internal_port = 0
        self._message_handler: logging.Handler | None = None

    def _build_fallback(self) -> RestFallback | None:
        """[venue.fallback]: REST order entry while the FIX trading session is down."""
        fb = self.config.venue.fallback
        if not fb.enabled:
            return None
        if self.credentials is None or not self.endpoints.spot_rest_url:
            log.error("venue.fallback is enabled but %s: REST fallback off",
                      "no venue api_key/api_secret is configured" if self.credentials is None
                      else "no REST URL (venue.fallback.rest_url) is known")
            return None
        client = KrakenSpotRest(self.endpoints.spot_rest_url, self.credentials.api_key,
                                self.credentials.api_secret,
                                NonceSource(self.data_dir / "spot-rest.nonce"),
                                timeout_s=fb.timeout_s, tier=fb.tier)
        fallback = RestFallback(self.router, client, fb.poll_interval_s, fb.status_interval_s,
                                # the simulator serves private WS on its one URL; Kraken
                                # has a separate ws-auth host, so only an explicit ws_url
                                ws_url=fb.ws_url or (self.endpoints.spot_ws_url
                                                     if self.config.simulator.enabled else ""),
                                hold_max_s=fb.hold_max_s, hold_max_orders=fb.hold_max_orders,
                                ws_orders=fb.ws_orders)

        def switched(old: str, new: str, reason: str, automatic: bool) -> None:
            fallback.record_switch(old, new)  # journaled: a restart resumes on that path
            self._transport_switched(old, new, reason, automatic)
            if new == "fix":
                self.router.ask_about_fallback_orders()

        fallback.policy = TransportPolicy(
            self.router.venue.is_up, lambda: fallback.rest_ok,
            failover_after_s=fb.failover_after_s, failback_after_s=fb.failback_after_s,
            on_switch=switched, before_failback=fallback.reconcile,
            force=fb.force, why_fix_down=self.router.venue.rollover_note)
        self.router.fallback = fallback
        return fallback

    def set_kill_switch(self, on: bool, by: str) -> str | None:
        """The operator's kill switch, kept in the data directory while it is on: a restart,
        `kill -9` included, must not resume trading that an operator halted.

        The switch acts in memory first and whatever the disk does: an operator halting
        trading must not be stopped by a full or read-only data directory. Returns None when
        the change is on disk too, else what the operator must know (it is not, and what a
        restart would do)."""
        self.gate.kill_switch = on
        if not on:
            self.kill_sweeper.disarm()
        try:
            if on:
                self.kill_switch_file.save(by)
            else:
                self.kill_switch_file.clear()
        except OSError as exc:
            return self._not_persisted(
                self.kill_switch_file.path, exc,
                f"a restart would start with the kill switch {'OFF' if on else 'ON'}")
        return None

    def hold_session(self, session_id: fix.SessionID, held: bool, by: str = "",
                     reason: str = "") -> str | None:
        """An operator's logout (`held`) or logon of a session, kept in the data directory
        while held: a restart must not log on a session an operator took down. The caller
        logs the session out or on; this keeps the venue reconnects from undoing it.

        Held (or released) in memory whatever the disk does, so the caller's Logout or Logon
        matches what the session shows. Returns None when the change is on disk too, else
        what the operator must know (it is not, and what a restart would do)."""
        if self._supervisor is not None:
            self._supervisor.hold(session_id, held)
        key = session_id.toString()
        try:
            if held:
                self.session_holds.hold(key, SessionHold(
                    session_id.getBeginString().getValue(),
                    session_id.getSenderCompID().getValue(),
                    session_id.getTargetCompID().getValue(), by, utc_now(), reason))
            else:
                self.session_holds.release(key)
        except OSError as exc:
            name = (f"{session_id.getSenderCompID().getValue()}->"
                    f"{session_id.getTargetCompID().getValue()}")
            return self._not_persisted(
                self.session_holds.path, exc,
                f"a restart would {'log ' + name + ' on again' if held else 'keep it logged out'}")
        return None

    @staticmethod
    def _not_persisted(path: Path, exc: OSError, after_restart: str) -> str:
        """The operator's note for a change made in memory that the data directory refused."""
        note = (f"NOT persisted: cannot write {path} ({exc.strerror or exc}); {after_restart}; "
                "fix the data directory and repeat the command")
        log.error("operator change %s", note)
        return note

    def _apply_session_holds(self) -> list[fix.SessionID]:
        """Log out, before anything connects, the sessions an operator left logged out."""
        held = []
        for h in self.session_holds.load():
            sid = fix.SessionID(h.begin_string, h.sender_comp_id, h.target_comp_id)
            session = fix.Session.lookupSession(sid)
            if session is None:
                log.warning("session %s is held logged out in %s, but this configuration has "
                            "no such session; the hold is kept for when it has", h.name,
                            self.session_holds.path)
                continue
            session.logout(h.reason)
            held.append(sid)
            log.warning("session %s held logged out, as an operator left it (by %s at %s: %s); "
                        "`fixgwctl logon %s` enables it", h.name, h.by, h.at, h.reason, h.name)
        return held

    def _transport_switched(self, old: str, new: str, reason: str, automatic: bool) -> None:
        log.warning("order flow moved from %s to %s: %s", old.upper(), new.upper(), reason)
        for listener in self.transport_listeners:
            try:
                listener(old, new, reason, automatic)
            except Exception:
                log.exception("transport switch listener failed")
        self.publish_transport_switch(old, new, reason, automatic)

    def publish_transport_switch(self, old: str, new: str, reason: str,
                                 automatic: bool) -> None:
        """The transport_switch event of the order flow (also an operator's pin that moves
        nothing: old == new), named after the venue trading session."""
        if self.events is not None:
            v = self.config.venue
            self.events.publish(builders.transport_switch(
                from_transport=old,  # type: ignore[arg-type]
                to_transport=new,  # type: ignore[arg-type]
                reason=reason, automatic=automatic,
                session=f"{v.sender_comp_id}->{v.trading.target_comp_id}"))

    def _build_md_failover(self) -> MdFailover | None:
        """[venue.md_fallback]: market data over Kraken spot WS v2 while FIX MD is down."""
        cfg = self.config.venue.md_fallback
        if not cfg.enabled:
            return None
        url = cfg.ws_url or self.endpoints.spot_ws_url
        if not url:
            log.error("venue.md_fallback is enabled but no WS URL (venue.md_fallback.ws_url) "
                      "is known: market-data fallback off")
            return None
        return MdFailover.from_config(self.md_feed, url, cfg, on_switch=self._md_switched)

    def _md_session(self) -> str:
        v = self.config.venue
        return f"{v.sender_comp_id}->{v.market_data.target_comp_id}"

    def _md_switched(self, old: MdSource, new: MdSource, reason: str, automatic: bool) -> None:
        """Under the feed's hand-over lock: book, trade and top-of-book events name the source
        that fed them, and the switch event is queued with them (between the two sources')."""
        if self.event_sink is None:
            return
        session = self._md_session()
        self.event_sink.set_md_source(
            builders.EventSource.fix(session) if new == "fix"
            else builders.EventSource.ws("kraken-spot-ws-v2"),
            ("transport_switch", {"from_transport": old, "to_transport": new, "reason": reason,
                                  "automatic": automatic, "session": session,
                                  "source": ("gateway", "marketdata")}))

    def _scrub_after_venue_logon(self, status: SessionStatus, old_state: str,
                                 reason: str) -> None:
        if status.role == "venue" and status.state == "logged_on":
            self.store_scrubber.on_logon()

    def _known_symbol(self, symbol: str) -> bool:
        """Tradable = configured and, once the venue's InstrumentList is in, listed by it."""
        if symbol not in self.md_feed.books:
            return False
        return len(self.instruments) == 0 or symbol in self.instruments

    def _snapshot(self, symbol: str) -> SignalSnapshot | None:
        """The gate's signal input for an order symbol: the perp's own snapshot, or for a spot
        symbol the snapshot of its one perp (none when zero or several map to it)."""
        snap = self.signal_runner.latest(symbol)
        if snap is None:
            perps = self.signal_runner.perps_for_spot(symbol)
            if len(perps) == 1:
                snap = self.signal_runner.latest(perps[0])
        return snap

    def _publish_snapshot(self, snap: SignalSnapshot) -> None:
        if self.events is None:
            return
        try:
            values = json_format.MessageToDict(snapshot_to_proto(snap),
                                               preserving_proto_field_name=True)
            self.events.publish(builders.signal_snapshot(symbol=snap.symbol,
                                                         computed_at=int(snap.as_of * 1e9),
                                                         values=values))
        except Exception:
            log.exception("signal snapshot for %s not published", snap.symbol)

    def _mid(self, symbol: str) -> tuple[Decimal | None, float | None]:
        """The gate's view of a book: (mid, age in seconds), or (None, None) without one."""
        book = self.md_feed.books.get(symbol)
        stamp = book.last_update if book is not None else None
        if book is None or stamp is None:
            return None, None
        return book.mid(), (time.monotonic_ns() - stamp.monotonic_ns) / 1e9

    def _lot_size(self, symbol: str) -> Decimal | None:
        inst = self.instruments.get(symbol)
        return None if inst is None else inst.qty_step

    def _instrument_check(self, symbol: str, qty: Decimal, price: Decimal | None) -> str | None:
        if symbol not in self.instruments:
            return None
        return self.instruments.validate_order(symbol, qty, price)

    # ---- settings ----------------------------------------------------------------------------
    def _log_dir(self, role: str) -> Path | None:
        # QuickFIX never writes message files: its FileLog would hold the raw Logon (553/554).
        # The message log is ours (`_start_message_log`), masked.
        return None

    def _message_log_secrets(self) -> tuple[str, ...] | None:
        """What the FIX message log masks (besides every 553/554 value); None = no log."""
        if not self.config.gateway.fix_message_log:
            return None
        c = self.credentials
        return () if c is None else (c.api_key, c.api_secret)

    def _start_message_log(self) -> None:
        """`fix_message_log`: one line per FIX message in <data_dir>/log/fix-messages.log."""
        secrets = self._message_log_secrets()
        if secrets is None:
            return
        path = self.data_dir / "log" / "fix-messages.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        g = self.config.gateway
        # Rotated by size: one line per message fills a disk in days at production rates.
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=g.fix_message_log_max_mb * 1024 * 1024,
            backupCount=g.fix_message_log_backups, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        handler.addFilter(SecretMaskingFilter(secrets))  # belt and braces: already masked
        message_log.addHandler(handler)
        message_log.setLevel(logging.INFO)
        message_log.propagate = False  # the file only: one line per message would drown stderr
        self._message_handler = handler
        log.info("FIX message log (credentials masked): %s", path)

    def _stop_message_log(self) -> None:
        handler = self._message_handler
        if handler is not None:
            message_log.removeHandler(handler)
            handler.close()
            self._message_handler = None

    def oms_settings(self) -> SettingsFile:
        """With TLS, QuickFIX listens on an internal port that only the local TLS bridge may
        reach (QuickFIX binds every interface, so the allow-list is what keeps it private);
        the bridge owns oms.host:oms.port and enforces the client allow-list itself."""
        c = self.config
        if c.oms.tls is not None:
            tls = c.oms.tls
            self._oms_internal_port = self._oms_internal_port or free_port()
            bridge = TlsServerBridge(c.oms.host, c.oms.port,
                                     server_context(tls.cert_file, tls.key_file,
                                                    tls.client_ca_file),
                                     self._oms_internal_port,
                                     allow_addresses=tls.allow_addresses)
            self._bridges.append(bridge)
            extra = {"SocketAcceptPort": str(self._oms_internal_port),
                     "AllowedRemoteAddresses": "127.0.0.1"}
        else:
            extra = {"SocketAcceptPort": str(c.oms.port)}
            extra.update(acceptor_address_policy(c.oms.host, ()))
        extra["MaxLatency"] = str(c.oms.max_latency_s)
        defaults = common_defaults(connection_type="acceptor",
                                   store_dir=self.data_dir / "store" / "oms",
                                   log_dir=self._log_dir("oms"),
                                   schedule=c.oms.schedule, extra=extra)
        sessions = [SessionBlock(c.oms.sender_comp_id, s.comp_id) for s in c.oms.sessions]
        return SettingsFile(defaults, sessions)

    def _through_tls(self, host: str, port: int, tls: TlsConnectConfig | None) -> tuple[str, int]:
        """Where QuickFIX connects for a venue session: straight there, or a local TLS bridge."""
        if tls is None:
            return host, port
        ctx = client_context(tls.ca_file, tls.verify, tls.cert_file, tls.key_file)
        bridge = TlsClientBridge(host, port, ctx, tls.server_hostname or host,
                                 source_address=tls.source_address)
        self._bridges.append(bridge)
        return "127.0.0.1", bridge.local_port

    def venue_settings(self) -> SettingsFile:
        c, e = self.config, self.endpoints
        trd_host, trd_port = self._through_tls(e.trading_host, e.trading_port, c.venue.trading.tls)
        md_host, md_port = self._through_tls(e.md_host, e.md_port, c.venue.market_data.tls)
        defaults = common_defaults(
            connection_type="initiator", store_dir=self.data_dir / "store" / "venue",
            log_dir=self._log_dir("venue"), schedule=c.schedule,
            extra={"HeartBtInt": str(c.venue.heartbeat_interval),
                   "ReconnectInterval": str(max(1, int(c.venue.reconnect_min_s))),
                   # Kraken publishes no complete tag list: a field our dictionary lacks must
                   # not cost a session Reject, which would use up the sequence number and lose
                   # an ExecutionReport (or refuse Kraken's Logon). Such a field is dropped
                   # before anything is passed on to an OMS (Router._strip_unknown).
                   **VENUE_LENIENCY})
        sessions = [
            # PersistMessages=N: a ResendRequest from the venue is answered with a gap fill,
            # never with an old order. An order whose send failed was rejected to the OMS and
            # must not reach the venue later; one the venue may have missed is still "sent, no
            # report" and is settled by the status request `Router.reconcile` makes after every
            # logon (and sent then, under its same ClOrdID, if the venue never got it). It also
            # keeps the Logon (API key, one-time signature) out of the store.
            SessionBlock(c.venue.sender_comp_id, c.venue.trading.target_comp_id,
                         {"SocketConnectHost": trd_host, "SocketConnectPort": str(trd_port),
                          "PersistMessages": "N"}),
            # Market data is a snapshot stream: nothing to resend after a restart, so each logon
            # starts at 1 (Kraken's own MD logon example sends 141=Y).
            SessionBlock(c.venue.sender_comp_id, c.venue.market_data.target_comp_id,
                         {"SocketConnectHost": md_host, "SocketConnectPort": str(md_port),
                          "ResetOnLogon": "Y"}),
        ]
        return SettingsFile(defaults, sessions)

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        c = self.config
        retention_s = c.gateway.closed_order_retention_s
        if retention_s > 0:
            # Forgets closed orders as they pass the retention and compacts the journal when
            # it is mostly history, a batch at a time between FIX messages (the replay at start
            # did both for what was already past it).
            self._evictor = Periodic("order-store-upkeep", min(60.0, retention_s / 10),
                                     self.store.maintain)
            self._evictor.start()
        cfg_dir = self.data_dir / "quickfix"
        venue_handler = self.router.venue_handler(self.credentials,
                                                  c.venue.cancel_orders_on_disconnect)
        venue_handler.trading_target = c.venue.trading.target_comp_id
        venue_handler.sender_comp_id = c.venue.sender_comp_id
        venue_handler.md_handler = self.md_feed
        self._start_message_log()
        venue_app = SessionApplication(venue_handler, "venue", self.board,
                                       self._message_log_secrets())
        venue_settings = self.venue_settings().write(cfg_dir / "venue.cfg")
        # Cancels and replaces the journal holds unanswered (the gateway may have died before
        # sending them): sent again after the venue logon, unless the venue's resend answers.
        self.router.find_unanswered_requests()
        venue_store = fix.FileStoreFactory(venue_settings)
        venue_logs = self._log_factory(venue_settings)
        self._initiator = fix.SocketInitiator(venue_app, venue_store, venue_settings, venue_logs)
        self._keep += [venue_app, venue_settings, venue_store, venue_logs]

        oms_app = SessionApplication(self.router.oms_handler(), "oms", self.board,
                                     self._message_log_secrets())
        oms_settings = self.oms_settings().write(cfg_dir / "oms.cfg")
        for s in c.oms.sessions:
            sid = fix.SessionID("FIX.4.4", c.oms.sender_comp_id, s.comp_id)
            self.router.register_oms(sid, s.accounts, s.cancel_on_disconnect_s)
        # A report journaled but not sent when the gateway died: found from the OMS store as
        # the crash left it (before the acceptor opens, and maybe resets, it), sent once its
        # session exists and before the venue sessions or the REST poller can report more.
        unforwarded = self.router.unforwarded_report(self.data_dir / "store" / "oms")
        oms_store = fix.FileStoreFactory(oms_settings)
        oms_logs = self._log_factory(oms_settings)
        self._acceptor = fix.ThreadedSocketAcceptor(oms_app, oms_store, oms_settings, oms_logs)
        self._keep += [oms_app, oms_settings, oms_store, oms_logs]
        if unforwarded is not None:
            self.router.redeliver(unforwarded)
        self.router.settle_interrupted()
        self.router.watch_absent_oms()

        held = self._apply_session_holds()  # the sessions exist now, and none has connected
        for bridge in self._bridges:  # listening before QuickFIX connects or clients arrive
            bridge.start()
        self._initiator.start()
        self._supervisor = ReconnectSupervisor(
            [fix.SessionID("FIX.4.4", c.venue.sender_comp_id, c.venue.trading.target_comp_id),
             fix.SessionID("FIX.4.4", c.venue.sender_comp_id, c.venue.market_data.target_comp_id)],
            attempt_window_s=max(5.0, c.venue.reconnect_min_s * 3),
            min_backoff_s=c.venue.reconnect_min_s, max_backoff_s=c.venue.reconnect_max_s,
            rollover=c.schedule)
        for sid in held:
            self._supervisor.hold(sid, True)
        self._supervisor.start()
        try:
            self._acceptor.start()
        except fix.RuntimeError as exc:  # the port is taken: a line to act on, not a traceback
            raise ListenError(f"OMS acceptor cannot listen on "
                              f"{host_port(c.oms.host, c.oms.port)} ({exc}); choose another "
                              "port with `fixgw run --oms-port N` or [oms] port") from None
        if self.fallback is not None:
            self.fallback.start()
        if self.md_failover is not None:
            self.md_failover.start()
        self.signal_runner.start()
        self._trading_status_poller = Periodic("trading-status", 0.5,
                                               self.router.trading_status_feed.poll)
        self._trading_status_poller.start()
        # Venue reports the journal refused (disk full) go out once it takes records again.
        self._parked_flusher = Periodic("parked-reports", 1.0, self.router.flush_parked)
        self._parked_flusher.start()
        if c.oms.stall_cut_s > 0:  # an OMS that stopped reading must not hold the venue thread
            self._send_watch = Periodic("oms-send-watch", 1.0, lambda: cut_stalled_oms(
                self.router.oms_contexts(), c.oms.stall_cut_s,
                self._oms_internal_port or c.oms.port))
            self._send_watch.start()
        if self.perp_ws is not None:
            self.perp_ws.start()
        if self.perp_poller is not None:
            self.perp_poller.start()
        log.info("OMS acceptor listening on %s:%d (SenderCompID %s; OMS CompIDs %s)",
                 c.oms.host, c.oms.port, c.oms.sender_comp_id,
                 ", ".join(s.comp_id for s in c.oms.sessions))
        log.info("venue trading initiator -> %s:%d (%s), market data -> %s:%d (%s)",
                 self.endpoints.trading_host, self.endpoints.trading_port,
                 c.venue.trading.target_comp_id, self.endpoints.md_host, self.endpoints.md_port,
                 c.venue.market_data.target_comp_id)

    def _perp_ws_live(self, symbol: str) -> bool:
        """The poller's question: does the WS feed carry this perp right now?"""
        return self.perp_ws is not None and self.perp_ws.is_live(symbol)

    def _log_factory(self, settings: fix.SessionSettings) -> fix.LogFactory:
        """QuickFIX's session events only (logons, resends, rejects, disconnects) on stdout,
        which is what ops read live; messages go to our masked log (`fix_message_log`)."""
        return fix.ScreenLogFactory(False, False, True)

    def stop(self) -> None:
        """Log out every session (QuickFIX waits for the Logout exchange), then close stores."""
        self.router.close()
        if self._trading_status_poller is not None:
            self._trading_status_poller.stop()
        if self._parked_flusher is not None:
            self._parked_flusher.stop()
        if self._send_watch is not None:
            self._send_watch.stop()
        left = self.router.flush_parked()
        if left:
            log.error("%d venue report(s) never journaled nor sent to the OMS (the journal "
                      "refused them to the end); the venue's status answers after the next "
                      "logon show the orders' state", left)
        if self.md_failover is not None:
            self.md_failover.stop()
        self.md_feed.stop()
        if self.router.md is not None:
            self.router.md.close()  # its senders end before the sessions they send on go
        if self.fallback is not None:
            self.fallback.stop()
        if self.perp_ws is not None:
            self.perp_ws.stop()
        if self.perp_poller is not None:
            self.perp_poller.stop()
        self.signal_runner.stop()
        if self._supervisor is not None:
            self._supervisor.stop()
        # The OMS and the venue sessions log out together (see gateway.fix.engines).
        stop_engines([e for e in (self._acceptor, self._initiator) if e is not None])
        # Dropping the engines deletes their sessions from QuickFIX's process-wide registry, so
        # a gateway started again in this process gets fresh sessions, not stale aliases.
        self._acceptor = self._initiator = None
        self._keep.clear()
        for bridge in self._bridges:
            bridge.stop()
        self._bridges.clear()
        if self.events is not None and self._owns_publisher:
            self.events.close()  # the sessions' last events are published before the log closes
        if self._evictor is not None:
            self._evictor.stop()
        self.store.close()
        self._stop_message_log()
        log.info("gateway stopped: sessions logged out, stores flushed")
