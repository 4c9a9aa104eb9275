"""Real processes for integration tests: the venue simulator and the gateway, each started the
way ops start them, on free loopback ports, with their output captured for assertions."""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway.config.model import ScheduleConfig
from gateway.server.runner import STOP_STACK_DUMP_S
from gateway.venue_sim.schedule_flags import schedule_flags
from tools.benchlib.procs import Credentials, Lines, event_process_pid, free_port

__all__ = ["REPO", "Credentials", "GatewayProcess", "Lines", "SimProcess", "VenueStack",
           "free_port", "running_pair", "stop_all", "venue_less_config"]

# Test venues run without the daily rollover, so a run across 22:00 UTC is not disturbed.
NON_STOP = ScheduleConfig(mode="non-stop")

REPO = Path(__file__).resolve().parents[1]
# The gateway's worst clean stop: QuickFIX waits up to 10 s for each engine's Logouts, the
# event process up to 15 s for its child; a stop past this is stuck.
STOP_TIMEOUT_S = 45.0

# Every process started here, so that none outlives the test run even when a test fails
# between starting one and its own cleanup (a leaked simulator would keep CI waiting).
_STARTED: list[subprocess.Popen[bytes]] = []


def venue_less_config(tmp: Path, metrics: str = "port = 0", grpc: str = "port = 0") -> Path:
    """A gateway config with no simulator and nothing listening on its venue ports (its
    sessions stay down): for what does not need a venue, its listeners and their settings.
    `metrics` and `grpc` are the bodies of those sections; both take any free port by default,
    as the tests run in parallel and a default port would clash."""
    cfg = tmp / "gw.toml"
    cfg.write_text(f"""
[gateway]
data_dir = "{tmp / 'var'}"
[simulator]
enabled = false
[venue.trading]
port = {free_port()}
[venue.market_data]
port = {free_port()}
[venue.futures]
enabled = false
[grpc]
{grpc}
[admin]
port = 0
[metrics]
{metrics}
""")
    return cfg


def _kill_leftovers() -> None:
    for proc in _STARTED:
        if proc.poll() is None:
            proc.kill()


atexit.register(_kill_leftovers)


def stop_all(stops: Iterable[Callable[[], object]]) -> None:
    """Call each stop at the same time, each on its own thread, and return when all are done;
    the first exception is raised after that.

    A test's FIX clients and gateway spend most of their stop waiting on QuickFIX's one-second
    ticks (FixClient.stop: the Logout goes out on the initiator thread's next wake-up and the
    thread is joined on the one after; the gateway's engines poll their sessions' logout once
    a second), so one after the other they cost a test several seconds of teardown."""
    errors: list[BaseException] = []

    def run(stop: Callable[[], object]) -> None:
        try:
            stop()
        except BaseException as exc:  # re-raised on the caller's thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,), daemon=True) for s in stops]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]



# A book's two sides, best first: (bids, asks) of (price, qty).
Levels = tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]

class SimProcess:
    def __init__(self, data_dir: Path, creds: Credentials, clients: tuple[str, ...] = ("FIXGW",),
                 flow_rate: float = 0.0, seed: int = 7, seed_books: bool = False,
                 trading_port: int = 0, md_port: int = 0,
                 tls: tuple[Path, Path] | None = None, scenario: str = "default",
                 accounts_file: Path | None = None, env: dict[str, str] | None = None,
                 schedule: ScheduleConfig = NON_STOP) -> None:
        env = dict(os.environ, FIXGW_SIM_API_KEY=creds.api_key,
                   FIXGW_SIM_API_SECRET=creds.api_secret, **(env or {}))
        cmd = [sys.executable, "-m", "gateway.venue_sim", "--data-dir", str(data_dir),
               "--flow-rate", str(flow_rate), "--seed", str(seed),
               "--trading-port", str(trading_port), "--md-port", str(md_port),
               "--scenario", scenario, *schedule_flags(schedule)]
        for c in clients:
            cmd += ["--client", c]
        if not seed_books:
            cmd.append("--no-seed-books")
        if tls is not None:
            cmd += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
        if accounts_file is not None:
            cmd += ["--accounts", str(accounts_file)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, cwd=REPO)
        _STARTED.append(self.proc)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("venue simulator failed to start: "
                               + self.proc.stderr.read().decode())  # type: ignore[union-attr]
        info = json.loads(line)
        self.host = info["host"]
        self.trading_port = int(info["trading_port"])
        self.md_port = int(info["md_port"])
        self.control_port = int(info["control_port"])
        self.futures_rest_port = int(info["futures_rest_port"])
        self.spot_rest_port = int(info.get("spot_rest_port", 0))
        self.spot_ws_port = int(info.get("spot_ws_port", 0))
        self.futures_ws_port = int(info.get("futures_ws", 0))  # Kraken Futures WS v1, /ws/v1
        self.out = Lines(self.proc.stdout)
        self.err = Lines(self.proc.stderr)

    def control(self, **req: object) -> dict[str, object]:
        """One command on the simulator's control channel (see gateway/venue_sim/control.py)."""
        with socket.create_connection(("127.0.0.1", self.control_port), timeout=10) as s:
            s.sendall((json.dumps(req) + "\n").encode())
            reply = json.loads(s.makefile().readline())
        assert reply.pop("ok"), reply
        return dict(reply)

    def levels(self, symbol: str, depth: int = 10) -> Levels:
        """The venue's own book of `symbol`, (bids, asks) best first: what a client's book
        must match."""
        lv = self.control(cmd="levels", symbol=symbol, depth=depth)
        bids, asks = ([(Decimal(p), Decimal(q)) for p, q in lv[side]]  # type: ignore[attr-defined]
                      for side in ("bids", "asks"))
        return bids, asks

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# A listener of the gateway's whose port was taken (`fixgw run` says so and exits 2), and how
# often a first start retries with new ports (see GatewayProcess._repick_ports).
_PORT_TAKEN = re.compile(r"cannot listen on|cannot bind")
_PORT_RACE_ATTEMPTS = 3


@dataclass(frozen=True)
class RunPorts:
    """The ports a `fixgw run` of a test listens on (the embedded venue picks its own)."""

    oms: int
    grpc: int
    admin: int


def start_fixgw_run(args: Callable[[RunPorts], list[str]], *, oms_port: int | None = None,
                    new_session: bool = False,
                    ) -> tuple[subprocess.Popen[bytes], Lines, Lines, RunPorts]:
    """`fixgw run ARGS(ports)` as ops start it, once it says it is ready: (process, stdout,
    stderr, ports). A port `free_port` handed out and another test's process bound first
    makes it exit 2 naming the listener: it is started again on new ports (the OMS's too,
    unless the test chose it), as `GatewayProcess` does. `new_session`: its own process group,
    as a terminal's job."""
    for attempt in range(1, _PORT_RACE_ATTEMPTS + 1):
        ports = RunPorts(oms_port or free_port(), free_port(), free_port())
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli.main", "run", *args(ports)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
            start_new_session=new_session)
        _STARTED.append(proc)
        out, err = Lines(proc.stdout), Lines(proc.stderr)
        try:
            out.wait_for(r"fixgw ready", timeout=30, alive=lambda p=proc: p.poll() is None)
            return proc, out, err, ports
        except (TimeoutError, RuntimeError) as exc:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            err.wait_closed(5)  # everything it said before it exited
            if attempt == _PORT_RACE_ATTEMPTS or not _PORT_TAKEN.search(err.text()):
                raise TimeoutError(f"{exc}\n--- fixgw run stderr ---\n{err.text()}") from None
    raise AssertionError("unreachable")


class GatewayProcess:
    """`fixgw run --config <generated>` against a SimProcess (simulator disabled in config)."""

    def __init__(self, data_dir: Path, sim: SimProcess, creds: Credentials,
                 oms_port: int | None = None, oms_comp_ids: tuple[str, ...] = ("OMS",),
                 session_toml: dict[str, str] | None = None,
                 extra_toml: str = "", venue_toml: str = "md_stale_after_s = 3600",
                 oms_toml: str = "", trading_toml: str = "", md_toml: str = "",
                 futures_toml: str = "", gateway_toml: str = "", grpc_toml: str = "",
                 schedule_toml: str = 'mode = "non-stop"', wait_venue: bool = True) -> None:
        self.data_dir = data_dir
        self.oms_port = oms_port or free_port()
        self.grpc_port = free_port()
        self.admin_port = free_port()
        # Never the default 9464: gateways of parallel tests would fight over it.
        self.metrics_port = free_port()
        self.config_path = data_dir / "gateway.toml"
        data_dir.mkdir(parents=True, exist_ok=True)
        more = session_toml or {}  # per OMS CompID: lines of its [[oms.sessions]] table
        sessions = "".join(f'\n[[oms.sessions]]\ncomp_id = "{c}"\n{more.get(c, "")}\n'
                           for c in oms_comp_ids)
        self.config_path.write_text(f"""
[gateway]
data_dir = "{data_dir / 'var'}"
journal_fsync_interval_ms = 20
{gateway_toml}

[oms]
port = {self.oms_port}
{oms_toml}
{sessions}
[venue]
reconnect_min_s = 0.5
reconnect_max_s = 2.0
api_key = {{ env = "FIXGW_TEST_API_KEY" }}
api_secret = {{ env = "FIXGW_TEST_API_SECRET" }}
{venue_toml}

[venue.futures]
base_url = "http://127.0.0.1:{sim.futures_rest_port}"
{futures_toml}

[venue.trading]
port = {sim.trading_port}
{trading_toml}

[venue.market_data]
port = {sim.md_port}
{md_toml}

[schedule]
{schedule_toml}

[simulator]
enabled = false

[grpc]
port = {self.grpc_port}
{grpc_toml}

[metrics]
port = {self.metrics_port}

[admin]
port = {self.admin_port}
{extra_toml}
""")
        self._env = dict(os.environ, FIXGW_TEST_API_KEY=creds.api_key,
                         FIXGW_TEST_API_SECRET=creds.api_secret)
        self.proc: subprocess.Popen[bytes] | None = None
        for attempt in range(1, _PORT_RACE_ATTEMPTS + 1):
            try:
                self.start(wait_venue)
                return
            except TimeoutError as exc:
                if attempt == _PORT_RACE_ATTEMPTS or not _PORT_TAKEN.search(str(exc)):
                    raise
            self._repick_ports(oms_too=oms_port is None)

    def _repick_ports(self, oms_too: bool) -> None:
        """A port `free_port` handed out was bound by another process before the gateway bound
        it (tests running in parallel pick from the same range): the gateway said so and exited
        (exit 2). Its listeners get new ports, the OMS's too unless the test chose it."""
        assert self.proc is not None
        self.proc.wait(10)
        text = self.config_path.read_text()
        listeners = ("grpc_port", "admin_port", "metrics_port")
        for attr in (("oms_port", *listeners) if oms_too else listeners):
            old, new = getattr(self, attr), free_port()
            text = text.replace(f"\nport = {old}\n", f"\nport = {new}\n")
            setattr(self, attr, new)
        self.config_path.write_text(text)

    def start(self, wait_venue: bool = True) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli.main", "run", "--config", str(self.config_path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self._env, cwd=REPO)
        _STARTED.append(self.proc)
        self.out = Lines(self.proc.stdout)
        self.err = Lines(self.proc.stderr)
        proc = self.proc
        try:
            self.out.wait_for(r"fixgw ready", timeout=30, alive=lambda: proc.poll() is None)
        except (TimeoutError, RuntimeError) as exc:
            if proc.poll() is not None:
                self.err.wait_closed(5)  # everything it said before it exited
            raise TimeoutError(f"{exc}\n--- gateway stderr ---\n{self.err.text()}") from None
        if wait_venue:
            self.err.wait_for(r"session FIXGW->KRAKEN-TRD \(venue\): \S+ -> logged_on", 30)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def fixgwctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`fixgwctl ARGS` against this gateway's admin service, as ops run it (FIXGW_ADDR and
        the token file `fixgw run` generated)."""
        env = dict(os.environ, FIXGW_ADDR=f"127.0.0.1:{self.admin_port}",
                   FIXGW_TOKEN_FILE=str(self.data_dir / "var" / "admin.token"))
        return subprocess.run([sys.executable, "-m", "gateway.cli.ctl", *args],
                              capture_output=True, text=True, env=env, cwd=REPO, timeout=30)

    def event_process_pid(self) -> int | None:
        """The gateway's event process (a child running gateway.events.process), if any."""
        assert self.proc is not None
        return event_process_pid(self.proc.pid, timeout_s=5.0)

    def stop(self) -> int:
        """SIGTERM, and wait for the clean stop. A stop slower than the gateway's stack dump
        (STOP_STACK_DUMP_S) is reported as a warning with the stacks, and one past
        STOP_TIMEOUT_S fails the test: the tests check what the gateway does, not how fast it
        logs out under a loaded machine, but a slow stop must not go unseen."""
        assert self.proc is not None
        if self.proc.poll() is None:
            t0 = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise TimeoutError(f"the gateway did not stop within {STOP_TIMEOUT_S:.0f} s of "
                                   f"SIGTERM; the last of its log:\n{self.err.tail(200)}") from None
            took = time.monotonic() - t0
            if took > STOP_STACK_DUMP_S:
                time.sleep(0.2)  # the rest of its stderr
                warnings.warn(f"the gateway took {took:.1f} s to stop; the last of its log "
                              f"(with its thread stacks):\n{self.err.tail(200)}", stacklevel=2)
            return code
        return int(self.proc.returncode)


@contextmanager
def running_pair(tmp: Path, **gw_kwargs: object) -> Iterator[tuple[SimProcess, GatewayProcess]]:
    creds = Credentials()
    sim = SimProcess(tmp / "sim", creds)
    gw = None
    try:
        gw = GatewayProcess(tmp / "gw", sim, creds, **gw_kwargs)  # type: ignore[arg-type]
        yield sim, gw
    finally:
        if gw is not None:
            gw.stop()
        sim.stop()


class VenueStack:
    """A simulator, the gateway in front of it and the FIX clients a test starts, all stopped on
    exit whatever the test did (failover tests kill, restart and stop the gateway themselves).

        with VenueStack(tmp_path, clients=("FIXGW", "MAKER")) as v:
            gw = v.gateway(venue_toml=...)
            v.clients.append(oms)            # anything with .c.stop(): tests.conftest.Oms
    """

    def __init__(self, tmp: Path, clients: tuple[str, ...] = ("FIXGW",)) -> None:
        self.tmp = tmp
        self.creds = Credentials()
        self.sim = SimProcess(tmp / "sim", self.creds, clients=clients)
        self.gw: GatewayProcess | None = None
        self.clients: list[Any] = []

    def gateway(self, **kwargs: Any) -> GatewayProcess:
        self.gw = GatewayProcess(self.tmp / "gw", self.sim, self.creds, **kwargs)
        return self.gw

    def oms(self, comp: str = "OMS") -> Any:
        """An OMS FIX client of the gateway, logged on and stopped on exit (tests.conftest.Oms)."""
        from tests.conftest import Oms, make_client  # conftest imports this module
        assert self.gw is not None, "start the gateway first"
        return self._started(Oms(make_client(self.tmp, self.gw.oms_port, comp, "FIXGW")))

    def maker(self) -> Any:
        """The venue's other trading client (CompID MAKER), to trade against the gateway."""
        from tests.conftest import Oms, make_client
        return self._started(Oms(make_client(self.tmp, self.sim.trading_port, "MAKER",
                                             "KRAKEN-TRD", self.creds)))

    def drop_fix(self, refuse_s: float) -> int:
        """The venue drops the gateway's FIX trading session and refuses it for `refuse_s`;
        returns the gateway's log position from just before (to wait for what follows)."""
        assert self.gw is not None
        mark = len(self.gw.err.lines)
        self.sim.control(cmd="drop_fix", client="FIXGW", refuse_s=refuse_s)
        return mark

    def take_fix_down(self, refuse_s: float) -> int:
        """`drop_fix`, then wait until the gateway's trading session has left logged_on;
        returns the same log position."""
        assert self.gw is not None
        mark = self.drop_fix(refuse_s)
        self.gw.err.wait_for(r"FIXGW->KRAKEN-TRD \(venue\): logged_on -> ", 10, start=mark)
        return mark

    def _started(self, client: Any) -> Any:
        client.c.start()
        self.clients.append(client)
        return client

    def __enter__(self) -> VenueStack:
        return self

    def __exit__(self, *exc: object) -> None:
        # The clients and the gateway are stopped together (each spends most of its stop in
        # QuickFIX's one-second waits): the gateway then logs out whichever OMS sessions are
        # still logged on, as it does when ops stop it under a connected OMS.
        try:
            stop_all([*(c.c.stop for c in self.clients),
                      *([self.gw.stop] if self.gw is not None else [])])
        finally:
            self.sim.stop()
