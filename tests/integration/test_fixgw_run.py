"""The README path: `fixgw run` with its embedded UAT venue, `fixgw oms` against it, and a clean
shutdown on SIGTERM (every session logged out, stores flushed)."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.version import version_line
from tests.conftest import Oms, make_client
from tests.procs import REPO, free_port, start_fixgw_run


def test_run_embedded_venue_then_oms_order_then_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "var"
    gw, out, err, ports = start_fixgw_run(lambda p: [
        "--oms-port", str(p.oms), "--data-dir", str(data), "--grpc-port", str(p.grpc),
        "--admin-port", str(p.admin), "--metrics-port", "0"])
    oms_port, grpc_port, admin_port = ports.oms, ports.grpc, ports.admin
    try:
        ready = out.wait_for(r"fixgw ready: admin=127\.0\.0\.1:\d+, oms=127\.0\.0\.1:(\d+), "
                             r"venue_trading=127\.0\.0\.1:"
                             r"(\d+), venue_md=127\.0\.0\.1:(\d+), grpc=127\.0\.0\.1:(\d+)",
                             timeout=30)
        assert int(ready.group(1)) == oms_port
        assert int(ready.group(4)) == grpc_port
        token = data / "admin.token"
        assert token.stat().st_mode & 0o777 == 0o600
        assert data.stat().st_mode & 0o777 == 0o700  # the stores inside are 0644 (QuickFIX)
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
    assert f"{version_line()}; config: " in log  # the build that ran, first thing in its log
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


def _accounts_file(tmp: Path, secret: str) -> Path:
    (tmp / "bot.secret").write_text(secret + "\n")
    path = tmp / "accounts.toml"
    # Absolute: a relative secret file is the working directory's, not the accounts file's.
    path.write_text('[[accounts]]\napi_key = "bot"\n'
                    f'api_secret = {{ file = "{tmp / "bot.secret"}" }}\nowner = "BOT"\n')
    return path


def test_run_with_an_accounts_file_lets_a_bot_trade_with_the_oms_on_the_embedded_venue(
        tmp_path: Path) -> None:
    """`[simulator] accounts_file`: a python-kraken-sdk bot with its own key trades on the same
    books as the gateway. The OMS bids inside the spread; the bot's sell at that price fills
    against the OMS's order, not the seeded book."""
    spot = pytest.importorskip("kraken.spot", reason="python-kraken-sdk not installed (dev extra)")
    secret = base64.b64encode(secrets.token_bytes(64)).decode()
    cfg = tmp_path / "gw.toml"
    accounts = _accounts_file(tmp_path, secret)
    cfg.write_text(f'[simulator]\nflow_rate_hz = 0\naccounts_file = "{accounts}"\n')
    gw, _out, err, ports = start_fixgw_run(lambda p: [
        "--config", str(cfg), "--oms-port", str(p.oms), "--data-dir", str(tmp_path / "var"),
        "--grpc-port", str(p.grpc), "--admin-port", str(p.admin), "--metrics-port", "0"])
    oms_port = ports.oms
    oms = None
    try:
        port = err.wait_for(r"embedded UAT venue: .* spot REST http://127\.0\.0\.1:(\d+)", 30)[1]
        err.wait_for(r"session FIXGW->KRAKEN-TRD \(venue\): \S+ -> logged_on", 20)
        url = f"http://127.0.0.1:{port}"
        book = spot.Market(url=url).get_order_book(pair="XBTUSD", count=1)
        levels = next(iter(book.values()))
        bid, ask = Decimal(levels["bids"][0][0]), Decimal(levels["asks"][0][0])
        price = ((bid + ask) / 2).quantize(Decimal("0.1"))
        assert bid < price < ask, (bid, ask)
        oms = Oms(make_client(tmp_path, oms_port, "OMS", "FIXGW"))
        oms.c.start()
        cl = oms.buy("0.002", str(price))
        oms.report(cl, "0")
        bot = spot.Trade(key="bot", secret=secret, url=url)
        txid = bot.create_order(ordertype="limit", side="sell", pair="XBTUSD", volume="0.002",
                                price=str(price))["txid"][0]
        fill = oms.report(cl, "F")
        assert Decimal(fill.fields[31]) == price and fill.fields[39] == "2"
        closed = spot.User(key="bot", secret=secret, url=url).get_orders_info(txid=txid)[txid]
        assert closed["status"] == "closed" and Decimal(closed["vol_exec"]) == Decimal("0.002")
    finally:
        if oms is not None:
            oms.c.stop()
        gw.send_signal(signal.SIGTERM)
        gw.wait(timeout=30)


def test_run_refuses_a_bad_accounts_file_naming_it(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.toml"
    accounts.write_text('[[accounts]]\napi_key = "bot"\n'
                        'api_secret = { env = "FIXGW_TEST_UNSET" }\n')
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f'[simulator]\naccounts_file = "{accounts}"\n')
    env = {k: v for k, v in os.environ.items() if k != "FIXGW_TEST_UNSET"}
    r = subprocess.run([sys.executable, "-m", "gateway.cli.main", "run", "--config", str(cfg),
                        "--data-dir", str(tmp_path / "var"), "--oms-port", str(free_port()),
                        "--metrics-port", "0"],
                       capture_output=True, text=True, cwd=REPO, timeout=60, env=env)
    assert r.returncode == 2, r.stderr
    assert f"{accounts}: accounts[0].api_secret: " in r.stderr and "not set" in r.stderr


@pytest.mark.parametrize(("toml", "field"), [
    ('[venue]\napi_key = { env = "FIXGW_TEST_KEY" }\n'
     'api_secret = { env = "FIXGW_TEST_UNSET" }\n', "venue.api_secret"),
    ('[admin]\noperator_token = { env = "FIXGW_TEST_UNSET" }\n', "admin.operator_token"),
], ids=["venue-secret", "admin-token"])
def test_run_refuses_a_credential_not_set_naming_file_and_field(
        tmp_path: Path, toml: str, field: str) -> None:
    """A credential the config names but the environment does not hold stops `fixgw run`
    before anything starts, as `--check` reports it: file, field and why, exit 2 (before, a
    venue secret was a traceback, and an admin token was found only after the sessions had
    logged on)."""
    cfg = tmp_path / "gw.toml"
    cfg.write_text(toml)
    env = {k: v for k, v in os.environ.items() if k != "FIXGW_TEST_UNSET"}
    env["FIXGW_TEST_KEY"] = "a-test-key"
    r = subprocess.run([sys.executable, "-m", "gateway.cli.main", "run", "--config", str(cfg),
                        "--data-dir", str(tmp_path / "var"), "--oms-port", str(free_port()),
                        "--metrics-port", "0"],
                       capture_output=True, text=True, cwd=REPO, timeout=60, env=env)
    assert r.returncode == 2, r.stderr
    assert f"{cfg}: {field}: " in r.stderr and "FIXGW_TEST_UNSET is not set" in r.stderr
    assert "Traceback" not in r.stderr and "logged_on" not in r.stderr + r.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP, signal.SIGTERM],
                         ids=["ctrl_c", "hangup", "service_stop"])
def test_terminal_signal_logs_out_before_the_embedded_venue_stops(
        tmp_path: Path, sig: signal.Signals) -> None:
    """A Ctrl-C in a terminal (SIGINT), the terminal's hangup (SIGHUP) and a service manager's
    stop (SIGTERM to every process of the service: systemd's default KillMode) go to the whole
    process group: the embedded venue and the event process get them too. They must leave
    their stopping to `fixgw run`, which logs its sessions out first and only then stops the
    venue, so the shutdown is the gateway's, not a venue outage (no connection refused from
    the venue's REST or WebSocket faces), and no event is lost."""
    gw, _out, err, _ports = start_fixgw_run(lambda p: [
        "--oms-port", str(p.oms), "--data-dir", str(tmp_path / "var"), "--grpc-port",
        str(p.grpc), "--admin-port", str(p.admin), "--metrics-port", "0"],
        new_session=True)  # its own group, as a terminal's job
    try:
        err.wait_for(r"session FIXGW->KRAKEN-TRD \(venue\): \S+ -> logged_on", 30)
        err.wait_for(r"session FIXGW->KRAKEN-MD \(venue\): \S+ -> logged_on", 20)
    finally:
        os.killpg(gw.pid, sig)
        code = gw.wait(timeout=30)
    log = err.text()
    assert code == 0, log[-4000:]
    stopped = log.index("gateway stopped: sessions logged out, stores flushed")
    assert log.index(f"received {sig.name}: logging out sessions") < stopped
    assert "session FIXGW->KRAKEN-TRD (venue): logged_on -> logged_out" in log[:stopped]
    assert log.index("venue simulator stopping") > stopped
    assert "Connection refused" not in log
    assert " died (" not in log  # the event process, which would be restarted, events lost
