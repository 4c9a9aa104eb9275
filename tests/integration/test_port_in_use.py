"""A listener whose port is taken stops `fixgw run` with exit 2 and one line: which listener,
which address, and the flag or setting that picks another. Never a traceback from grpcio
(the admin and event ports did that until the tenth session; the default 50051 and 50052 lie
in the kernel's ephemeral range, where any connection's source port can hold them; the OMS
acceptor's QuickFIX error did until the twenty-second)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests import procs
from tests.procs import REPO, venue_less_config

CASES = {
    # QuickFIX's: the acceptor starts after the venue sessions, which are logged out again.
    "OMS acceptor": ("--oms-port", "OMS acceptor cannot listen on 127.0.0.1:{port}",
                     "[oms] port", ""),
    "metrics": ("--metrics-port", "metrics listener cannot bind 127.0.0.1:{port}",
                "[metrics] port", ""),
    "admin": ("--admin-port", "admin service cannot listen on 127.0.0.1:{port}",
              "[admin] enabled = false", ""),
    "events, in their process": ("--grpc-port", "event service cannot listen on 127.0.0.1:{port}",
                                 "[grpc] port", ""),
    "events, in the gateway": ("--grpc-port", "event service cannot listen on 127.0.0.1:{port}",
                               "[grpc] port", "event_process = false"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_taken_port_stops_the_start_in_one_line(tmp_path: Path, case: str) -> None:
    flag, what, setting, grpc_extra = CASES[case]
    cfg = venue_less_config(tmp_path, grpc=f"port = 0\n{grpc_extra}")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "gateway.cli.main", "run", "--config", str(cfg),
                            flag, str(port)],
                           capture_output=True, text=True, cwd=REPO, timeout=90)
    assert r.returncode == 2, r.stderr[-3000:]
    assert what.format(port=port) in r.stderr, r.stderr[-3000:]
    assert flag in r.stderr and setting in r.stderr
    assert "Traceback" not in r.stderr and "fixgw ready" not in r.stdout


@contextmanager
def _first_pick_taken(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """The first port the harness's `free_port` hands out (the OMS's) is one a listener of
    ours holds, as another test's process would have bound it first; yields that port."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        picks = iter([taken])
        real = procs.free_port
        monkeypatch.setattr(procs, "free_port", lambda: next(picks, None) or real())
        yield taken


def test_the_harness_starts_a_gateway_again_when_a_port_it_picked_was_taken(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`free_port` only finds a port free: a process of a test running in parallel may bind it
    before the gateway does, which then exits 2 naming it (a CI run failed so). The harness
    picks new ports and starts it again; a port the test chose itself is kept."""
    creds = procs.Credentials()
    sim = procs.SimProcess(tmp_path / "sim", creds)
    try:
        with _first_pick_taken(monkeypatch) as taken:
            gw = procs.GatewayProcess(tmp_path / "gw", sim, creds)  # TimeoutError without
            try:
                assert gw.oms_port != taken and gw.proc is not None and gw.proc.poll() is None
            finally:
                gw.stop()
    finally:
        sim.stop()


def test_a_fixgw_run_of_a_test_is_started_again_when_a_port_it_picked_was_taken(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same for the tests that start `fixgw run` with its embedded venue themselves
    (`start_fixgw_run`): a run that exited 2 on a taken port was a failed test (the likely
    cause of a SIGTERM test's gateway exiting 2 right after its venue logons in a full-suite
    run)."""
    with _first_pick_taken(monkeypatch) as taken:
        proc, _out, err, ports = procs.start_fixgw_run(lambda p: [
            "--oms-port", str(p.oms), "--data-dir", str(tmp_path / "var"), "--grpc-port",
            str(p.grpc), "--admin-port", str(p.admin), "--metrics-port", "0"])
        try:
            assert ports.oms != taken and proc.poll() is None
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, err.tail()
