"""Running the UAT venue simulator as a child process of `fixgw run`.

A child process rather than threads in ours: the simulator's matching engine and synthetic
flow would otherwise compete with the gateway's FIX callbacks for one GIL, and a separate
process is what the real venue is. The child exits when its stdin closes, so even a kill -9
of the gateway leaves no orphan simulator behind. It ignores SIGINT, SIGHUP and SIGTERM: a
Ctrl-C in the terminal, its hangup, or a service manager's stop reaches the whole process group,
and the venue must stay up while `fixgw run` logs its sessions out (`Runtime.stop` stops it
last).

The embedded venue gets fresh random API credentials at each start, handed to the child
through its environment and to the gateway in-process: no credential is ever stored.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from gateway.config.model import ScheduleConfig, SimulatorConfig
from gateway.fix.kraken_logon import KrakenCredentials
from gateway.venue_sim.accounts import load_accounts_file
from gateway.venue_sim.schedule_flags import schedule_flags
from gateway.venue_sim.server import ENV_KEY, ENV_SECRET


def random_credentials() -> KrakenCredentials:
    return KrakenCredentials(api_key="SIM" + secrets.token_hex(16),
                             api_secret=base64.b64encode(secrets.token_bytes(64)).decode())


@dataclass
class SimEndpoints:
    host: str
    trading_port: int
    md_port: int
    futures_rest_port: int
    spot_rest_port: int = 0
    spot_ws_port: int = 0
    futures_ws_port: int = 0  # Kraken Futures WS v1, path /ws/v1


class EmbeddedSimulator:
    def __init__(self, cfg: SimulatorConfig, data_dir: Path, client_comp_ids: list[str],
                 credentials: KrakenCredentials, schedule: ScheduleConfig) -> None:
        self.cfg = cfg
        self.schedule = schedule  # the gateway's venue schedule: both roll over together
        self.data_dir = data_dir
        self.clients = client_comp_ids
        self.credentials = credentials
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoints: SimEndpoints | None = None

    def start(self, timeout_s: float = 30.0) -> SimEndpoints:
        """Raises ConfigError for a bad `accounts_file`, before any process is started."""
        accounts = self.cfg.accounts_file
        if accounts is not None:
            load_accounts_file(accounts)  # the child reads it too; an error here names the field
        cmd = [sys.executable, "-m", "gateway.venue_sim", "--host", self.cfg.host,
               "--trading-port", str(self.cfg.trading_port), "--md-port", str(self.cfg.md_port),
               "--seed", str(self.cfg.seed), "--flow-rate", str(self.cfg.flow_rate_hz),
               "--scenario", self.cfg.scenario,
               "--data-dir", str(self.data_dir), "--exit-on-stdin-eof",
               *schedule_flags(self.schedule)]
        for c in self.clients:
            cmd += ["--client", c]
        if accounts is not None:
            cmd += ["--accounts", str(accounts)]
        env = dict(os.environ)
        env[ENV_KEY] = self.credentials.api_key
        env[ENV_SECRET] = self.credentials.api_secret
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait(timeout=timeout_s)
            raise RuntimeError(f"embedded venue simulator exited during start (code {code})")
        ready = json.loads(line)
        self.endpoints = SimEndpoints(ready["host"], ready["trading_port"], ready["md_port"],
                                      ready["futures_rest_port"],
                                      int(ready.get("spot_rest_port", 0)),
                                      int(ready.get("spot_ws_port", 0)),
                                      int(ready.get("futures_ws", 0)))
        return self.endpoints

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
