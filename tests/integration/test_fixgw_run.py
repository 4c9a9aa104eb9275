"""The README path: `fixgw run` with its embedded UAT venue, `fixgw oms` against it, and a clean
shutdown on SIGTERM (every session logged out, stores flushed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.procs import REPO, Lines, free_port


def test_run_embedded_venue_then_oms_order_then_sigterm(tmp_path: Path) -> None:
    oms_port = free_port()
    data = tmp_path / "var"
    grpc_port, admin_port = free_port(), free_port()
    gw = subprocess.Popen([sys.executable, "-m", "gateway.cli.main", "run", "--oms-port",
                           str(oms_port), "--data-dir", str(data), "--grpc-port", str(grpc_port),
                           "--admin-port", str(admin_port)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    out, err = Lines(gw.stdout), Lines(gw.stderr)
    try:
        ready = out.wait_for(r"fixgw ready: admin=127\.0\.0\.1:\d+, oms=127\.0\.0\.1:(\d+), "
                             r"venue_trading=127\.0\.0\.1:"
                             r"(\d+), venue_md=127\.0\.0\.1:(\d+), grpc=127\.0\.0\.1:(\d+)",
                             timeout=30)
        assert int(ready.group(1)) == oms_port
        assert int(ready.group(4)) == grpc_port
        token = data / "admin.token"
        assert token.stat().st_mode & 0o777 == 0o600
        # fixgwctl against the running gateway: the sessions table shows the venue logged on.
        ctl = subprocess.run([sys.executable, "-m", "gateway.cli.ctl", "sessions", "--json"],
                             capture_output=True, text=True, cwd=REPO, timeout=60,
                             env=dict(os.environ, FIXGW_ADDR=f"127.0.0.1:{admin_port}",
                                      FIXGW_TOKEN_FILE=str(token)))
        assert ctl.returncode == 0, ctl.stderr
        assert "KRAKEN-TRD" in ctl.stdout and "logged_on" in ctl.stdout
        assert ready.group(2) != ready.group(3)
        err.wait_for(r"session FIXGW->KRAKEN-TRD \(venue\): \S+ -> logged_on", 20)
        err.wait_for(r"session FIXGW->KRAKEN-MD \(venue\): \S+ -> logged_on", 20)

        # The embedded venue has seeded books around 45,000: a buy far below rests. A resting
        # order never ends, so `fixgw oms` prints its reports for all of --wait (the New comes
        # within milliseconds of the send; the logon is not part of the wait).
        oms = subprocess.run([sys.executable, "-m", "gateway.cli.main", "oms", "buy", "BTC/USD",
                              "0.01", "limit", "30000", "--port", str(oms_port), "--wait", "2"],
                             capture_output=True, text=True, cwd=REPO, timeout=60)
        assert "new  status=new" in oms.stdout, oms.stdout + oms.stderr
        # Marketable: a buy far above the best ask fills against the seeded book.
        oms = subprocess.run([sys.executable, "-m", "gateway.cli.main", "oms", "buy", "BTC/USD",
                              "0.001", "limit", "60000", "--port", str(oms_port), "--wait", "5"],
                             capture_output=True, text=True, cwd=REPO, timeout=60)
        assert "status=filled" in oms.stdout, oms.stdout + oms.stderr
        assert oms.returncode == 0
    finally:
        gw.send_signal(signal.SIGTERM)
        code = gw.wait(timeout=30)
    assert code == 0
    log = err.text()
    assert "received SIGTERM: logging out sessions" in log
    assert "session FIXGW->KRAKEN-TRD (venue): logged_on -> logged_out" in log
    assert "gateway stopped: sessions logged out, stores flushed" in log
    assert (data / "orders.journal").stat().st_size > 0
    assert list((data / "store" / "venue").glob("*.seqnums"))


def test_bad_config_names_file_and_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[oms]\nport = "ninety"\n[venue]\nheartbeat_intervall = 30\n')
    r = subprocess.run([sys.executable, "-m", "gateway.cli.main", "run", "--config", str(cfg)],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 2
    assert f"{cfg}: oms.port:" in r.stderr
    assert "'ninety'" in r.stderr
    assert f"{cfg}: venue.heartbeat_intervall: unknown field" in r.stderr
