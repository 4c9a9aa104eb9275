"""The simulator as a process: one matching engine, its FIX acceptor sessions (a trading and a
market-data session per client CompID, on two ports as Kraken runs them), and the synthetic
flow that keeps its books moving."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import quickfix as fix

from gateway.config.model import ScheduleConfig, is_comp_id
from gateway.fix.application import SessionApplication, StatusBoard
from gateway.fix.engines import stop_engines
from gateway.fix.kraken_logon import KrakenCredentials
from gateway.fix.settings import (
    SessionBlock,
    SettingsFile,
    acceptor_address_policy,
    common_defaults,
    free_port,
)
from gateway.transports.tls_bridge import TlsServerBridge, server_context
from gateway.venue_sim.accounts import Accounts, ApiAccount
from gateway.venue_sim.control import ControlServer, Relogons, md_failover_handlers
from gateway.venue_sim.engine import MatchingEngine
from gateway.venue_sim.fix_face import MD_COMP_ID, TRADING_COMP_ID, SimFixFace
from gateway.venue_sim.fix_outbox import DEFAULT_LIMIT
from gateway.venue_sim.flow import SyntheticFlow
from gateway.venue_sim.futures_rest import FuturesRestServer
from gateway.venue_sim.futures_ws import FuturesWsServer
from gateway.venue_sim.spot_rest import SpotRestServer
from gateway.venue_sim.spot_ws import SpotWsServer

log = logging.getLogger("fixgw.venue_sim")

# The simulator's test API key and secret come from these variables (set by `fixgw run` for
# its embedded venue, which generates fresh ones at every start).
ENV_KEY = "FIXGW_SIM_API_KEY"
ENV_SECRET = "FIXGW_SIM_API_SECRET"


@dataclass
class SimOptions:
    host: str = "127.0.0.1"
    trading_port: int = 0
    md_port: int = 0
    seed: int = 7
    flow_rate_hz: float = 20.0
    clients: Sequence[str] = ("FIXGW",)
    data_dir: Path = Path("./var/venue-sim")
    credentials: KrakenCredentials | None = None
    # Fill each book with resting synthetic liquidity at start; tests that want exact,
    # hand-placed books turn it off.
    seed_books: bool = True
    # Perpetual market scenario served by the futures REST face (see scenarios.py).
    scenario: str = "default"
    futures_port: int = 0
    # Kraken Futures WS v1 (ticker, heartbeat) over the same scenario; 0 = a free port.
    futures_ws_port: int = 0
    # TLS on both FIX ports, as Kraken runs them (cert and key files); None = plain TCP.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # More API accounts (`--accounts FILE`) for bots on spot REST/WS and futures REST. One whose
    # owner is a valid CompID also logs on over FIX as that CompID, signed with its own key.
    extra_accounts: Sequence[ApiAccount] = ()
    # Kraken's daily rollover by default (22:00 UTC, ~30 s, sequence numbers reset): a client
    # rehearsing here meets it as it would on Kraken. Tests that must not see it run non-stop.
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    # Messages a FIX session may fall behind (its client not reading) before the simulator
    # disconnects it; see fix_outbox.
    fix_outbox_limit: int = DEFAULT_LIMIT

    def fix_clients(self) -> list[str]:
        """The client CompIDs the FIX acceptors take: `clients`, then the accounts' owners."""
        out = list(self.clients)
        for a in self.extra_accounts:
            if is_comp_id(a.owner) and a.owner not in out:
                out.append(a.owner)
        return out


class VenueSimulator:
    def __init__(self, opts: SimOptions) -> None:
        self.opts = opts
        self._choose_public_ports()
        # With TLS, QuickFIX listens on internal ports behind TLS bridges on the public ones.
        self._bridges: list[TlsServerBridge] = []
        self._fix_ports = (self.trading_port, self.md_port)
        if opts.tls_cert is not None and opts.tls_key is not None:
            ctx = server_context(opts.tls_cert, opts.tls_key)
            self._fix_ports = (free_port(), free_port())
            self._bridges = [TlsServerBridge(opts.host, public, ctx, internal)
                             for public, internal in zip((self.trading_port, self.md_port),
                                                         self._fix_ports, strict=True)]
        self.engine = MatchingEngine(seed=opts.seed)
        self.face = SimFixFace(self.engine, opts.credentials, opts.extra_accounts,
                               outbox_limit=opts.fix_outbox_limit, clients=opts.fix_clients())
        self.flow = self._make_flow()
        creds = opts.credentials
        self.futures = FuturesRestServer(
            opts.scenario, host=opts.host, port=opts.futures_port,
            api_key=creds.api_key if creds else None,
            api_secret=creds.api_secret if creds else None, engine=self.engine,
            extra_accounts=[(a.api_key, a.api_secret, a.owner) for a in opts.extra_accounts])
        # Reads the REST face's scenario, so both faces always serve the same figures.
        self.futures_ws = FuturesWsServer(lambda: self.futures.scenario, host=opts.host,
                                          port=opts.futures_ws_port)
        # Spot REST and WS v2: the test API key trades as the first client CompID, so orders
        # placed over FIX, REST and WS are one account's orders (what failover needs), and a
        # token from REST GetWebSocketsToken opens the WS private channels.
        self.accounts = Accounts([*([ApiAccount(creds.api_key, creds.api_secret, opts.clients[0])]
                                    if creds is not None and opts.clients else []),
                                  *opts.extra_accounts])
        self.spot_rest = SpotRestServer(self.engine, self.accounts, host=opts.host)
        self.spot_ws = SpotWsServer(self.engine, self.accounts, host=opts.host)
        self._acceptor: fix.ThreadedSocketAcceptor | None = None
        self._keep: list[object] = []
        self._relogons = Relogons()
        self.control = ControlServer(opts.host, {
            "ping": lambda req: {},
            "md_fault": self._md_fault,
            "submission_counts": lambda req: {"counts": {
                f"{owner} {cl}": n
                for (owner, cl), n in self.engine.submission_counts_copy().items()}},
            "levels": self._levels,
            "flow": self._flow,
            "scenario": self._scenario,
            "drop_fix": self._drop_fix,
            "futures_ws": self._futures_ws_fault,
            "rest_fault": self._rest_fault,
            **md_failover_handlers(self.spot_ws, opts.clients[0] if opts.clients else "",
                                   self._relogons),
        })

    def _drop_fix(self, req: dict[str, Any]) -> dict[str, Any]:
        """Log out a client's FIX trading session and refuse its logons for `refuse_s` seconds
        from when it is logged out (QuickFIX disables the session until `logon()`; see
        `Relogons`); REST and WS stay up. With
        `rewind_target_seq` N, the venue then expects the client's last N messages again and
        asks for them with a ResendRequest at the next logon."""
        client = str(req.get("client", self.opts.clients[0]))
        refuse_s = float(req.get("refuse_s", 0.0))
        session = fix.Session.lookupSession(fix.SessionID("FIX.4.4", TRADING_COMP_ID, client))
        if session is None:
            raise ValueError(f"no trading session for client {client!r}")
        was_logged_on = bool(session.isLoggedOn())
        session.logout("dropped by the simulator's control channel")
        rewind = int(req.get("rewind_target_seq", 0))

        def rewind_target() -> None:
            # As if the venue had lost the client's last `rewind` messages: its next logon is
            # "MsgSeqNum too high" and the venue asks for them again (a ResendRequest).
            session.setNextTargetMsgSeqNum(max(1, session.getExpectedTargetNum() - rewind))

        self._relogons.after_drop(session, refuse_s, rewind_target if rewind > 0 else None)
        log.info("dropped FIX trading session of %s; logons refused for %.1fs", client, refuse_s)
        return {"was_logged_on": was_logged_on}

    def _rest_fault(self, req: dict[str, Any]) -> dict[str, Any]:
        """Spot REST faults (see `SpotRestServer`'s test hooks): ``{"fault": "delay",
        "seconds": S, "n": N, "after": true, "path_prefix": P}`` (`set_delay`), ``{"fault":
        "fail", "n": N, "status": 503, "error": E, "path_prefix": P}`` (`fail_next`) or
        ``{"fault": "clear"}``."""
        fault = str(req.get("fault", ""))
        prefix = req.get("path_prefix")
        path_prefix = str(prefix) if prefix else None
        if fault == "delay":
            n = req.get("n")
            self.spot_rest.set_delay(float(req.get("seconds", 0.0)),
                                     None if n is None else int(n),
                                     after=bool(req.get("after", True)),
                                     path_prefix=path_prefix)
        elif fault == "fail":
            self.spot_rest.fail_next(int(req.get("n", 1)), int(req.get("status", 503)),
                                     str(req.get("error", "EService:Busy")),
                                     path_prefix=path_prefix)
        elif fault == "clear":
            self.spot_rest.clear_faults()
        else:
            raise ValueError(f"unknown rest_fault {fault!r}; known: delay, fail, clear")
        return {}

    def _futures_ws_fault(self, req: dict[str, Any]) -> dict[str, Any]:
        """Futures WS faults: ``{"fault": "stall", "symbol": S|null, "seconds": N}`` (no tickers
        for S; null: no tickers and no heartbeats) or ``{"fault": "drop"}`` (close every
        connection). REST keeps serving, so a client's fallback can be exercised."""
        fault = str(req.get("fault", ""))
        if fault == "stall":
            symbol = req.get("symbol")
            self.futures_ws.stall(str(symbol) if symbol else None, float(req.get("seconds", 5.0)))
        elif fault == "drop":
            self.futures_ws.drop_all()
        else:
            raise ValueError(f"unknown futures_ws fault {fault!r}; known: stall, drop")
        return {"connections_total": self.futures_ws.connections_total}

    def _scenario(self, req: dict[str, Any]) -> dict[str, Any]:
        """Switch the perp scenario (by name or file path), or override one perp's figures."""
        if "name" in req:
            self.futures.set_scenario(str(req["name"]))
        if "symbol" in req:
            figures = {k: v for k, v in req.items() if k not in ("cmd", "symbol", "name")}
            self.futures.set_figures(str(req["symbol"]), **figures)
        self.futures_ws.notify()  # WS subscribers see the change now, not on the next tick
        return {"scenario": self.futures.scenario.name}

    def _flow(self, req: dict[str, Any]) -> dict[str, Any]:
        """Start the synthetic flow at `rate_hz` (0 stops it), or run `steps` steps now."""
        steps = int(req.get("steps", 0))
        for _ in range(steps):
            self.flow.step()
        if "rate_hz" in req:
            self.flow.stop()
            rate = float(req["rate_hz"])
            if rate > 0:
                self.flow.rate_hz = rate
                self.flow.start()
        return {"running": self.flow.running, "last_seq": self.engine.last_seq}

    def _md_fault(self, req: dict[str, Any]) -> dict[str, Any]:
        self.face.md.inject(str(req["fault"]), str(req["symbol"]), int(req.get("count", 1)),
                            float(req.get("seconds", 0.0)))
        return {}

    def _levels(self, req: dict[str, Any]) -> dict[str, Any]:
        bids, asks = self.engine.levels(str(req["symbol"]), int(req.get("depth", 10)))
        return {"bids": [[str(p), str(q)] for p, q in bids],
                "asks": [[str(p), str(q)] for p, q in asks]}

    def _make_flow(self) -> SyntheticFlow:
        flow = SyntheticFlow(self.engine, seed=self.opts.seed, symbols=self.engine.symbols,
                             rate_hz=self.opts.flow_rate_hz)
        if self.opts.seed_books:
            flow.seed_books()
        return flow

    def settings(self) -> SettingsFile:
        o = self.opts
        defaults = common_defaults(
            connection_type="acceptor", store_dir=o.data_dir / "store", log_dir=None,
            schedule=o.schedule,
            extra=acceptor_address_policy("127.0.0.1" if self._bridges else o.host, ()))
        sessions: list[SessionBlock] = []
        for client in o.fix_clients():
            sessions.append(SessionBlock(TRADING_COMP_ID, client,
                                         {"SocketAcceptPort": str(self._fix_ports[0])}))
            sessions.append(SessionBlock(MD_COMP_ID, client,
                                         {"SocketAcceptPort": str(self._fix_ports[1])}))
        return SettingsFile(defaults, sessions)

    def start(self) -> None:
        self._start_fix()
        for bridge in self._bridges:
            bridge.start()
        self.control.start()
        self.futures.start()
        self.futures_ws.start()
        self.spot_rest.start()
        self.spot_ws.start()
        if self.opts.flow_rate_hz > 0:
            self.flow.start()
        log.info("venue simulator: trading %s:%d, market data %s:%d, clients %s",
                 self.opts.host, self.trading_port, self.opts.host, self.md_port,
                 ",".join(self.opts.fix_clients()))

    def _start_fix(self, attempts: int = 5) -> None:
        """Start the FIX acceptor. A port the simulator chose itself (`free_port`) can be taken
        by another process between choosing and binding it; then it chooses again, rather
        than failing a start that a moment later would have worked."""
        for attempt in range(1, attempts + 1):
            settings = self.settings().write(self.opts.data_dir / "venue-sim.cfg")
            app = SessionApplication(self.face, "venue-sim", StatusBoard())
            store = fix.FileStoreFactory(settings)
            logs = fix.ScreenLogFactory(False, False, False)
            acceptor = fix.ThreadedSocketAcceptor(app, store, settings, logs)
            try:
                acceptor.start()
            except fix.RuntimeError as exc:
                del acceptor  # its sessions leave QuickFIX's registry with it
                if "Address already in use" not in str(exc) or attempt == attempts or (
                        not self._choose_fix_ports_again()):
                    raise
                log.warning("a FIX port was taken before the simulator bound it (%s); "
                            "listening on other free ports", exc)
                continue
            self._acceptor = acceptor
            self._keep += [app, settings, store, logs]
            return

    def _choose_fix_ports_again(self) -> bool:
        """New free ports for the FIX listeners the options left to the simulator; False
        when every one was configured (then a taken port is the operator's to fix)."""
        o = self.opts
        if self._bridges:  # QuickFIX listens on internal ports, always chosen here
            self._fix_ports = (free_port(), free_port())
            for bridge, internal in zip(self._bridges, self._fix_ports, strict=True):
                bridge.downstream_port = internal
            return True
        if o.trading_port and o.md_port:
            return False
        self._choose_public_ports()
        self._fix_ports = (self.trading_port, self.md_port)
        return True

    def _choose_public_ports(self) -> None:
        """The FIX ports clients connect to: as configured, else free ones."""
        o = self.opts
        self.trading_port = o.trading_port or free_port(o.host)
        self.md_port = o.md_port or free_port(o.host)

    def stop(self) -> None:
        log.info("venue simulator stopping")
        self.flow.stop()
        self.control.stop()
        self.futures.stop()
        self.futures_ws.stop()
        self.spot_rest.close()
        self.spot_ws.stop()
        self._relogons.stop()
        # Before the acceptor: queued reports go out while the sessions are still logged on,
        # and no sender thread is left using a session the acceptor frees.
        self.face.stop()
        if self._acceptor is not None:
            stop_engines([self._acceptor])
            self._acceptor = None
            self._keep.clear()
        for bridge in self._bridges:
            bridge.stop()
