"""The benchmark's child processes: simulator, bare relay and gateway, each on free loopback
ports with its own fresh data directory (so every FileStore and journal starts empty).

Why so careful about cleanup: a benchmark that leaves a simulator or gateway behind skews the
next run on a 2-core machine. Every child is stopped by `Fleet.close` (its stdin closed, which
stops the simulator and the relay, and SIGTERM, which stops the gateway; then SIGKILL), and
every child gets PR_SET_PDEATHSIG on Linux (the simulator, which ignores SIGTERM under an owner,
sees its stdin close), so even a SIGKILLed benchmark leaves nothing running.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import ctypes.util
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from gateway.fix.settings import free_port

REPO = Path(__file__).resolve().parents[2]
RELAY_SCRIPT = Path(__file__).resolve().parent / "relay.py"


def _pdeathsig_hook() -> Callable[[], None] | None:
    """A preexec_fn that makes the kernel SIGTERM the child when we die (Linux only).

    libc and prctl are resolved here, in the parent, so the child only makes one call after
    fork (nothing that could take an import lock held by another thread)."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    prctl = ctypes.CDLL(name, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)

    return hook


_PDEATHSIG = _pdeathsig_hook()


class Lines:
    """Collects a pipe's lines on a thread so the child never blocks on a full pipe.

    Shared by the benchmarks and the tests (tests/procs.py): both start the same processes."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._t = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._t.start()

    def _pump(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            with self._cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = 20.0,
                 alive: Callable[[], bool] = lambda: True, start: int = 0) -> re.Match[str]:
        """The first line from index `start` matching `pattern`; raises with the output's tail
        on timeout, and at once if `alive()` says the process has exited."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        i = start
        with self._cond:
            while True:
                while i < len(self.lines):
                    mt = rx.search(self.lines[i])
                    if mt:
                        return mt
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no line matching {pattern!r} within {timeout} s:\n"
                                       + "\n".join(self.lines[-30:]))
                if not alive():
                    raise RuntimeError(f"process exited before printing {pattern!r}")
                self._cond.wait(min(left, 0.2))

    def wait_closed(self, timeout: float) -> None:
        """Wait until the stream has ended: its process exited and every line it wrote is in."""
        self._t.join(timeout)

    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def tail(self, n: int = 25) -> str:
        with self._cond:
            return "\n".join(self.lines[-n:])


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    out: Lines
    err: Lines

    def alive(self) -> bool:
        return self.proc.poll() is None

    def describe(self) -> str:
        return (f"--- {self.name} (pid {self.proc.pid}, rc {self.proc.poll()}) stdout ---\n"
                f"{self.out.tail()}\n--- {self.name} stderr ---\n{self.err.tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """Close its stdin (the simulator and the relay exit on that; the simulator, run by an
        owner, ignores SIGTERM), SIGTERM it (the gateway stops on that), then wait."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Credentials:
    """Fresh test API credentials per run: the simulator checks the signed Kraken logon."""

    api_key: str = field(default_factory=lambda: "BENCH" + secrets.token_hex(8))
    api_secret: str = field(
        default_factory=lambda: base64.b64encode(secrets.token_bytes(64)).decode())


@dataclass(frozen=True)
class SimEndpoints:
    host: str
    trading_port: int
    md_port: int
    pid: int


def with_settings(toml_text: str, settings: Sequence[tuple[str, str]]) -> str:
    """`toml_text` with (dotted key, TOML value) settings added: each goes under its table's
    header when the text has one (TOML refuses a table opened twice), else in a new table."""
    lines = toml_text.splitlines()
    for key, value in settings:
        table, _, name = key.rpartition(".")
        if not table or not name:
            raise ValueError(f"{key!r}: give a table and a key, e.g. gateway.gc_freeze_interval_s")
        header = f"[{table}]"
        if header in lines:
            lines.insert(lines.index(header) + 1, f"{name} = {value}")
        else:
            lines += ["", header, f"{name} = {value}"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Hop:
    """A relay or gateway: where the OMS connects, and the pid whose CPU time we account."""

    port: int
    pid: int


def cpu_ns(pid: int) -> int | None:
    """CPU time of every live thread of `pid`, in ns (Linux schedstat; None elsewhere).

    Why not /proc/<pid>/stat: its clock ticks are 10 ms, too coarse for one phase of a round.
    """
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as f:
                    total += int(f.read().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                continue  # the thread ended between listdir and open
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    return total


def event_process_pid(gateway_pid: int, timeout_s: float = 10.0) -> int | None:
    """The gateway's event process (gateway.events.process), whose CPU is the gateway's too."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            for task in os.listdir(f"/proc/{gateway_pid}/task"):
                with open(f"/proc/{gateway_pid}/task/{task}/children", encoding="ascii") as f:
                    for pid in f.read().split():
                        with open(f"/proc/{pid}/cmdline", "rb") as c:
                            if b"gateway.events.process" in c.read():
                                return int(pid)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return None
        time.sleep(0.1)
    return None


class Fleet:
    """Every child process of one benchmark run; `close` stops them all, newest first."""

    def __init__(self, workdir: Path, creds: Credentials) -> None:
        self.workdir = workdir
        self.creds = creds
        self.children: list[Child] = []

    def _spawn(self, name: str, cmd: list[str], env_extra: dict[str, str],
               cwd: Path | None = None) -> Child:
        env = dict(os.environ, **env_extra)
        env.setdefault("PYTHONUNBUFFERED", "1")
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, cwd=cwd or REPO,
                                preexec_fn=_PDEATHSIG)
        assert proc.stdout is not None and proc.stderr is not None
        child = Child(name, proc, Lines(proc.stdout), Lines(proc.stderr))
        self.children.append(child)
        return child

    def _first_json(self, child: Child, timeout: float) -> dict[str, object]:
        try:
            line = child.out.wait_for(r"^\{.*\}$", timeout, child.alive).group(0)
        except (TimeoutError, RuntimeError) as exc:
            raise RuntimeError(f"{child.name} did not start: {exc}\n{child.describe()}") from None
        data: dict[str, object] = json.loads(line)
        return data

    def start_sim(self, name: str, clients: tuple[str, ...]) -> SimEndpoints:
        """`python -m gateway.venue_sim` with static empty books: every order rests or is
        canceled, so its cost per order stays flat for the whole run."""
        data_dir = self.workdir / name
        cmd = [sys.executable, "-m", "gateway.venue_sim", "--data-dir", str(data_dir),
               "--flow-rate", "0", "--no-seed-books", "--exit-on-stdin-eof", "--non-stop"]
        for c in clients:
            cmd += ["--client", c]
        child = self._spawn(name, cmd, {"FIXGW_SIM_API_KEY": self.creds.api_key,
                                        "FIXGW_SIM_API_SECRET": self.creds.api_secret})
        info = self._first_json(child, 30)
        return SimEndpoints(str(info["host"]), int(str(info["trading_port"])),
                            int(str(info["md_port"])), child.proc.pid)

    def start_relay(self, name: str, sim: SimEndpoints, *, sender: str, oms_side_comp: str,
                    oms_comp: str) -> Hop:
        port = free_port()
        cmd = [sys.executable, str(RELAY_SCRIPT), "--listen-port", str(port),
               "--venue-host", sim.host, "--venue-port", str(sim.trading_port),
               "--data-dir", str(self.workdir / name), "--sender", sender,
               "--oms-side-comp", oms_side_comp, "--oms-comp", oms_comp]
        child = self._spawn(name, cmd, {"FIXGW_BENCH_API_KEY": self.creds.api_key,
                                        "FIXGW_BENCH_API_SECRET": self.creds.api_secret})
        self._first_json(child, 30)
        return Hop(port, child.proc.pid)

    def start_gateway(self, name: str, sim: SimEndpoints, *, oms_comp: str,
                      wrapper: list[str] | None = None, checkout: Path | None = None,
                      settings: Sequence[tuple[str, str]] = (),
                      env: Mapping[str, str] | None = None) -> Hop:
        """`fixgw run` with its embedded simulator disabled, pointed at `sim`, otherwise at
        production defaults (journal fsync interval, validation, logging level). Every port is
        a `free_port`: the defaults (50051, 50052) lie in the kernel's ephemeral range, where
        any connection's source port can hold them (a CI run failed so).

        For an A/B run (bench_fix --b-*): `checkout` runs the gateway's code from another
        working tree (a git worktree of another commit), `settings` adds TOML settings
        (dotted key, TOML value) and `env` environment variables."""
        data_dir = self.workdir / name
        data_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        config = data_dir / "gateway.toml"
        config.write_text(f"""
[gateway]
data_dir = "{data_dir / 'var'}"

[oms]
port = {port}

[[oms.sessions]]
comp_id = "{oms_comp}"

[venue]
api_key = {{ env = "FIXGW_BENCH_API_KEY" }}
api_secret = {{ env = "FIXGW_BENCH_API_SECRET" }}

[venue.trading]
host = "{sim.host}"
port = {sim.trading_port}

[venue.market_data]
host = "{sim.host}"
port = {sim.md_port}

[schedule]
mode = "non-stop"

[simulator]
enabled = false

[grpc]
port = {free_port()}

[admin]
port = {free_port()}

[metrics]
port = 0
""", encoding="utf-8")
        if settings:
            config.write_text(with_settings(config.read_text(encoding="utf-8"), settings),
                              encoding="utf-8")
        # `wrapper` (e.g. the profiling launcher) replaces `-m gateway.cli.main`.
        launcher = wrapper if wrapper is not None else ["-m", "gateway.cli.main"]
        cmd = [sys.executable, *launcher, "run", "--config", str(config)]
        extra = {"FIXGW_BENCH_API_KEY": self.creds.api_key,
                 "FIXGW_BENCH_API_SECRET": self.creds.api_secret, **(env or {})}
        if checkout is not None:
            # `-m` puts the working directory first on sys.path, ahead of the installed package.
            extra["PYTHONPATH"] = str(checkout)
        child = self._spawn(name, cmd, extra, cwd=checkout)
        try:
            child.out.wait_for(r"fixgw ready", 40, child.alive)
            child.err.wait_for(r"session FIXGW->KRAKEN-TRD \(venue\): \S+ -> logged_on", 40,
                               child.alive)
        except (TimeoutError, RuntimeError) as exc:
            raise RuntimeError(f"{name} did not start: {exc}\n{child.describe()}") from None
        return Hop(port, child.proc.pid)

    def check_alive(self) -> None:
        """Raise with the dead child's output: a crashed hop otherwise looks like a hang."""
        for c in self.children:
            if not c.alive():
                raise RuntimeError(f"{c.name} exited during the run\n{c.describe()}")

    def describe(self) -> str:
        return "\n".join(c.describe() for c in self.children)

    def close(self) -> None:
        for c in reversed(self.children):
            try:
                c.stop()
            except Exception as exc:  # keep stopping the others
                print(f"bench_fix: stopping {c.name} failed: {exc}", file=sys.stderr)
        self.children.clear()
