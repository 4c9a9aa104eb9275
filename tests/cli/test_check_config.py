"""`fixgw run --check`: the file and everything it names, checked; nothing started.

Every problem is reported at once, each with the field and the file, and no secret value is
ever printed."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest

from gateway.admin.auth import TokenError
from gateway.cli.main import main
from gateway.config import load_config
from gateway.config.loader import ConfigError
from gateway.server.preflight import exposure_warnings, unreserved_ephemeral
from gateway.server.runner import Runtime
from tests.procs import REPO, free_port
from tests.tls.certs import make_pki, openssl_available


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def _run(*args: str, env: dict[str, str] | None = None) -> Ran:
    """`fixgw run ARGS` from the repository root, with the FIXGW_CHECK_* variables of `env` only.

    With --check it runs in this process: the check starts nothing and only prints, and a
    child's interpreter start (QuickFIX, gRPC, numpy imports) was most of each test's time.
    Without, the gateway would start, so it is a child, as ops run it."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("FIXGW_CHECK_")}
    environ = base | (env or {})
    if "--check" not in args:
        p = subprocess.run([sys.executable, "-m", "gateway.cli.main", "run", *args],
                           capture_output=True, text=True, cwd=REPO, timeout=60, env=environ)
        return Ran(p.returncode, p.stdout, p.stderr)
    out, err = io.StringIO(), io.StringIO()
    with (mock.patch.dict(os.environ, environ, clear=True), contextlib.chdir(REPO),
          contextlib.redirect_stdout(out), contextlib.redirect_stderr(err)):
        code = main(["run", *args])
    return Ran(code, out.getvalue(), err.getvalue())


def _check(cfg: Path, env: dict[str, str] | None = None) -> Ran:
    return _run("--config", str(cfg), "--check", env=env)


@pytest.mark.skipif(not openssl_available(), reason="openssl needed to make certificates")
def test_a_good_file_is_ok_and_says_where_the_gateway_would_listen(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    secret = tmp_path / "venue.secret"
    secret.write_text("c2VjcmV0LXZhbHVlLW5ldmVyLXByaW50ZWQ=\n")
    data = tmp_path / "not-yet" / "var"
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f"""
[gateway]
data_dir = "{data}"
[oms]
port = 9900
[oms.tls]
cert_file = "{pki.server_cert}"
key_file = "{pki.server_key}"
client_ca_file = "{pki.ca}"
[venue]
api_key = {{ env = "FIXGW_CHECK_KEY" }}
api_secret = {{ file = "{secret}" }}
[venue.trading]
host = "fix.example.net"
port = 4001
[venue.market_data]
host = "fix.example.net"
port = 4000
[simulator]
enabled = false
[admin]
tls_cert_file = "{pki.server_cert}"
tls_key_file = "{pki.server_key}"
""")
    r = _check(cfg, {"FIXGW_CHECK_KEY": "key-value-never-printed"})
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"fixgw: {cfg}: ok" in out
    assert "OMS acceptor 127.0.0.1:9900 (TLS)" in out
    assert "venue: trading fix.example.net:4001 (FIXGW->KRAKEN-TRD)" in out
    assert f"key from $FIXGW_CHECK_KEY, secret from {secret}" in out
    assert "schedule: daily reset at 22:00:00 UTC, sessions back after 30 s" in out
    assert "never-printed" not in out + r.stderr and "c2VjcmV0" not in out + r.stderr
    # Nothing was started or created: not even the data directory.
    assert not data.parent.exists() and "fixgw ready" not in out


@pytest.mark.skipif(not openssl_available(), reason="openssl needed to make certificates")
def test_every_problem_is_named_with_its_field_and_the_gateway_would_not_start(
        tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    accounts = tmp_path / "accounts.toml"
    accounts.write_text('[[accounts]]\napi_key = "bot"\n'
                        'api_secret = { env = "FIXGW_CHECK_UNSET_TOO" }\n')
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f"""
[oms.tls]
cert_file = "{pki.server_cert}"
key_file = "{pki.client_key}"
[venue]
api_key = {{ env = "FIXGW_CHECK_UNSET" }}
api_secret = {{ file = "{tmp_path / 'missing.secret'}" }}
[simulator]
accounts_file = "{accounts}"
[grpc]
tls_cert_file = "{not_pem}"
tls_key_file = "{pki.server_key}"
[admin]
tls_cert_file = "{pki.server_cert}"
tls_key_file = "{tmp_path / 'no-such.key'}"
tls_client_ca_file = "{tmp_path / 'no-such-ca.pem'}"
""")
    r = _check(cfg)
    assert r.returncode == 2
    err = r.stderr
    prefix = f"fixgw: {cfg}: "
    assert (f"{prefix}oms.tls.cert_file: {pki.server_cert} with the key {pki.client_key} does "
            "not load") in err  # another certificate's key
    assert f"{prefix}venue.api_key: " in err and "FIXGW_CHECK_UNSET is not set" in err
    assert f"{prefix}venue.api_secret: " in err and "missing.secret does not exist" in err
    assert f"{prefix}simulator.accounts_file: {accounts}: accounts[0].api_secret" in err
    assert (f"{prefix}grpc.tls_cert_file: {not_pem} with the key {pki.server_key} does not "
            "load") in err
    assert f"{prefix}admin.tls_key_file: {tmp_path / 'no-such.key'} does not exist" in err
    assert f"{prefix}admin.tls_client_ca_file: {tmp_path / 'no-such-ca.pem'} does not exist" in err
    assert "admin.tls_cert_file" not in err  # the certificate is fine; its key is missing
    assert f"{prefix}7 problem(s); the gateway would not start" in err
    assert "ok" not in r.stdout


def test_a_usd_notional_limit_with_a_symbol_not_quoted_in_usd_is_a_problem(
        tmp_path: Path) -> None:
    """max_notional_usd compares quantity x price with USD: for ETH/BTC that would be BTC
    taken for dollars (1,000 ETH at 0.05 read as 50 USD)."""
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[venue]\nsymbols = ["BTC/USD", "ETH/BTC"]\n'
                   '[risk]\nmax_notional_usd = "1000"\n')
    r = _check(cfg)
    assert r.returncode == 2
    assert (f"fixgw: {cfg}: risk.max_notional_usd: a limit in USD, but venue.symbols has "
            "ETH/BTC, not quoted in USD") in r.stderr


def test_a_venue_secret_that_is_not_base64_is_a_problem(tmp_path: Path) -> None:
    """Found otherwise only at the first logon, which then goes out unsigned, for ever."""
    secret = tmp_path / "venue.secret"
    secret.write_text("not-base64-at-all!\n")
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f'[venue]\napi_key = {{ env = "FIXGW_CHECK_KEY" }}\n'
                   f'api_secret = {{ file = "{secret}" }}\n')
    r = _check(cfg, {"FIXGW_CHECK_KEY": "key"})
    assert r.returncode == 2
    assert f"fixgw: {cfg}: venue.api_secret: API secret is not valid base64" in r.stderr
    assert "not-base64-at-all" not in r.stderr


def test_the_shipped_kraken_template_needs_its_comp_id_and_credentials(tmp_path: Path) -> None:
    r = _check(REPO / "sessions" / "kraken-uat.toml")
    assert r.returncode == 2
    assert ("venue.sender_comp_id: still the template's CHANGE-ME: set the value the venue gave "
            "you") in r.stderr
    assert "venue.api_key: " in r.stderr and "KRAKEN_FIX_API_KEY is not set" in r.stderr
    assert "clear text" not in r.stderr  # both venue sessions speak TLS


def test_clear_text_off_the_host_and_a_wider_listener_are_warnings(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[oms]\nhost = "10.0.0.5"\n[simulator]\nenabled = false\n'
                   '[venue.trading]\nhost = "fix.example.net"\nport = 4001\n'
                   '[venue.market_data]\nhost = "127.0.0.1"\nport = 4000\n')
    warned = exposure_warnings(load_config(cfg))
    assert len(warned) == 3, warned
    assert warned[0].startswith("oms.host: 10.0.0.5, but without oms.tls the FIX acceptor "
                                "listens on every interface")
    assert warned[1].startswith("venue.trading: fix.example.net is not this host and the "
                                "session has no [venue.trading.tls]")
    assert warned[2].startswith("venue.api_key: not set: the trading session's Logon")
    r = _check(cfg)
    assert r.returncode == 0 and f"fixgw: {cfg}: warning: oms.host: 10.0.0.5" in r.stderr
    assert exposure_warnings(load_config(None)) == []  # the embedded default: all loopback


def test_a_bad_field_is_still_the_loader_s_error(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[oms]\nport = "ninety"\n')
    r = _check(cfg)
    assert r.returncode == 2 and f"{cfg}: oms.port:" in r.stderr


def test_a_listener_port_in_the_ephemeral_range_is_a_warning_unless_reserved() -> None:
    ports = {"grpc.port": 50051, "admin.port": 50052, "oms.port": 9878}
    warned = unreserved_ephemeral(ports, "32768\t60999\n", "\n")
    assert warned[0].startswith("grpc.port: 50051 lies in this host's ephemeral port range "
                                "(32768-60999) and is not reserved")
    assert warned[1].startswith("admin.port: 50052 lies")
    assert warned[2] == ("reserve them with sysctl -w net.ipv4.ip_local_reserved_ports="
                         "50051,50052, or pick ports below 32768")
    assert len(warned) == 3  # 9878 is below the range
    # What is reserved already stays in the suggested list (the setting is the whole list).
    one = unreserved_ephemeral(ports, "32768 60999", "8080,50052\n")
    assert [w.split(":")[0] for w in one[:-1]] == ["grpc.port"]
    assert one[-1].startswith("reserve it with sysctl -w net.ipv4.ip_local_reserved_ports="
                              "8080,50052,50051,")
    assert unreserved_ephemeral(ports, "32768 60999", "50000-50100") == []
    assert unreserved_ephemeral(ports, "55000 60999", "") == []


def test_check_warns_about_the_default_event_and_admin_ports_on_this_host(tmp_path: Path) -> None:
    """The warning goes to stderr and does not fail the check; whether it comes depends on the
    host's own ephemeral range and reservations, read here the way the check reads them."""
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f'[gateway]\ndata_dir = "{tmp_path / "var"}"\n')
    r = _check(cfg)
    assert r.returncode == 0 and f"fixgw: {cfg}: ok" in r.stdout, r.stderr
    try:
        want = unreserved_ephemeral(
            {"grpc.port": 50051, "admin.port": 50052},
            Path("/proc/sys/net/ipv4/ip_local_port_range").read_text(),
            Path("/proc/sys/net/ipv4/ip_local_reserved_ports").read_text())
    except OSError:
        want = []
    got = [ln.removeprefix(f"fixgw: {cfg}: warning: ") for ln in r.stderr.splitlines()
           if "warning: " in ln]
    assert got == want


def test_a_setting_that_changes_nothing_is_a_warning(tmp_path: Path) -> None:
    """[oms] heartbeat_interval: a FIX acceptor takes HeartBtInt from the OMS's Logon. The
    file still loads (it did before), and --check says so, naming the field."""
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[oms]\nheartbeat_interval = 60\n[[oms.sessions]]\ncomp_id = "OMS"\n'
                   'cancel_on_disconnect_s = 30\n')
    r = _check(cfg)
    assert r.returncode == 0, r.stderr
    assert f"{cfg}: warning: oms.heartbeat_interval has no effect" in r.stderr
    assert "OMS (cancel on disconnect after 30 s)" in r.stdout
    cfg.write_text('[oms]\nport = 9900\n')
    assert "heartbeat_interval" not in _check(cfg).stderr


def test_a_reset_time_on_a_non_stop_schedule_is_a_warning(tmp_path: Path) -> None:
    """A non-stop session never resets: the time given for it was silently ignored."""
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[oms]\nport = 9901\nschedule = { mode = "non-stop", reset_time_utc = '
                   '17:00:00 }\n[schedule]\nmode = "non-stop"\nrollover_s = 60\n')
    r = _check(cfg)
    assert r.returncode == 0, r.stderr
    assert (f"{cfg}: warning: oms.schedule.reset_time_utc has no effect: oms.schedule.mode is "
            '"non-stop" (no daily reset); remove it, or set mode = "daily-reset"') in r.stderr
    assert f"{cfg}: warning: schedule.rollover_s has no effect: schedule.mode is" in r.stderr
    cfg.write_text('[oms]\nport = 9901\nschedule = { reset_time_utc = 17:00:00 }\n')
    assert "no effect" not in _check(cfg).stderr


def test_a_real_venue_without_credentials_or_a_fallback_without_a_url_is_a_warning(
        tmp_path: Path) -> None:
    """With the simulator off, no api_key/api_secret sent the trading Logon unsigned (Kraken
    refuses it, at every retry), and [venue.fallback] enabled without rest_url was no fallback
    at all (one error line at start) while --check said "REST fallback: on"."""
    cfg = tmp_path / "gw.toml"
    cfg.write_text("[oms]\nport = 9901\n[simulator]\nenabled = false\n[venue.trading]\n"
                   "port = 4001\n[venue.market_data]\nport = 4000\n[venue.fallback]\n"
                   "enabled = true\n")
    r = _check(cfg)
    assert r.returncode == 0, r.stderr
    assert (f"{cfg}: warning: venue.api_key: not set: the trading session's Logon would go "
            "unsigned (no 553/554/5025), and Kraken refuses it") in r.stderr
    assert (f"{cfg}: warning: venue.fallback.rest_url: not set, and the embedded simulator is "
            "disabled: no REST fallback (Kraken: https://api.kraken.com)") in r.stderr
    assert "REST fallback: off (see the warnings)" in r.stdout


def test_a_secret_pasted_as_a_variable_name_is_not_printed(tmp_path: Path) -> None:
    """`api_secret = { env = "<the key>" }` with a key of letters and digits only: a valid
    variable name, not set, and the error must not print it. A real variable name is shown."""
    pasted = "CJbfPw4tnbf9enZmpewCTKEwmmzO18LXZcHQcu7HPLWre4l8V9I3y"
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f"""
[venue]
api_key = {{ env = "{pasted}" }}
api_secret = {{ env = "FIXGW_CHECK_UNSET_SECRET" }}
""")
    r = _check(cfg)
    assert r.returncode == 2
    assert pasted not in r.stdout + r.stderr
    assert "venue.api_key: credential not found: environment variable named (not shown" in r.stderr
    assert "environment variable FIXGW_CHECK_UNSET_SECRET is not set" in r.stderr


def test_admin_and_event_listeners_off_loopback_without_tls_are_warnings(tmp_path: Path) -> None:
    """The admin bearer token (and the event stream's orders) would cross the network in
    clear text: `--check` and the start say so."""
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[admin]\nhost = "0.0.0.0"\n[grpc]\nhost = "10.0.0.5"\n')
    warned = exposure_warnings(load_config(cfg))
    assert len(warned) == 2, warned
    assert warned[0].startswith("admin.host: 0.0.0.0 is reachable from other hosts and the "
                                "admin listener has no TLS")
    assert "bearer token in clear text" in warned[0]
    assert warned[1].startswith("grpc.host: 10.0.0.5 is reachable from other hosts")
    r = _check(cfg)
    assert r.returncode == 0 and f"fixgw: {cfg}: warning: admin.host: 0.0.0.0" in r.stderr
    off = tmp_path / "off.toml"
    off.write_text('[admin]\nhost = "0.0.0.0"\nenabled = false\n')
    assert exposure_warnings(load_config(off)) == []  # no admin listener, nothing exposed


def test_what_would_fail_only_after_the_venue_logged_on_is_a_problem(tmp_path: Path) -> None:
    """An audit log under a file, the read-only token equal to the operator's, and two
    listeners on one port: the start would find each only once the venue sessions have
    logged on; --check (and the start, before anything) names each with its field."""
    (tmp_path / "plain-file").write_text("")
    (tmp_path / "op.token").write_text("same-token\n")
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f"""
[admin]
port = 50051
audit_log = "{tmp_path}/plain-file/audit.jsonl"
operator_token = {{ file = "{tmp_path}/op.token" }}
read_only_token = {{ env = "FIXGW_CHECK_RO" }}
[grpc]
port = 50051
""")
    r = _check(cfg, {"FIXGW_CHECK_RO": "same-token"})
    assert r.returncode == 2
    err = r.stderr
    assert (f"{cfg}: admin.audit_log: {tmp_path}/plain-file/audit.jsonl cannot be created: "
            f"{tmp_path}/plain-file is a file, not a directory") in err
    assert f"{cfg}: admin.read_only_token: the same token as admin.operator_token" in err
    assert f"{cfg}: admin.port: 50051 is grpc.port too" in err
    assert "same-token" not in r.stdout + err
    assert "3 problem(s)" in err


def test_an_oms_session_that_is_a_venue_session_is_refused_naming_its_field(
        tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[[oms.sessions]]\ncomp_id = "OMS"\n[[oms.sessions]]\ncomp_id = "KRAKEN-MD"\n')
    r = _check(cfg)
    assert r.returncode == 2
    assert (f"{cfg}: oms.sessions[1].comp_id: 'KRAKEN-MD' makes the OMS session "
            "FIXGW->KRAKEN-MD the same as the venue market data session") in r.stderr
    other = tmp_path / "other.toml"
    other.write_text('[oms]\nsender_comp_id = "GW"\n[[oms.sessions]]\ncomp_id = "KRAKEN-MD"\n')
    assert _check(other).returncode == 0  # GW->KRAKEN-MD is not FIXGW->KRAKEN-MD


def test_the_start_builds_the_admin_service_before_any_session_logs_on(tmp_path: Path) -> None:
    """Whatever the check did not catch (here it is skipped): an audit log that cannot be
    opened stops the start, naming the setting, before the venue initiator has started."""
    (tmp_path / "plain-file").write_text("")
    config = load_config(None, {
        "gateway.data_dir": str(tmp_path / "var"), "oms.port": free_port(),
        "grpc.port": 0, "grpc.event_process": False, "metrics.enabled": False,
        "admin.port": 0, "admin.audit_log": str(tmp_path / "plain-file" / "audit.jsonl")})
    rt = Runtime(config)
    try:
        with pytest.raises(ConfigError, match=r"admin audit log .*plain-file/audit\.jsonl cannot "
                                              r"be opened .*fix \[admin\] audit_log"):
            rt.start()
        assert rt.gateway is not None and rt.gateway._initiator is None  # never started
        assert not any(st.state == "logged_on" for st in rt.gateway.board.sessions.values())
    finally:
        rt.stop()


def test_a_bad_value_from_a_flag_names_the_flag_not_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[oms]\nport = 9900\n')
    r = _run("--config", str(cfg), "--admin-port", "70000", "--check")
    assert r.returncode == 2
    assert "--admin-port (admin.port): Input should be less than or equal to 65535" in r.stderr
    assert f"{cfg}: admin.port" not in r.stderr


def test_a_section_that_is_not_a_table_is_a_config_error_with_a_flag(tmp_path: Path) -> None:
    """`oms = 5` in the file and --oms-port on the command line: the file's error, named, not
    a TypeError traceback."""
    cfg = tmp_path / "gw.toml"
    cfg.write_text('oms = 5\n')
    r = _run("--config", str(cfg), "--oms-port", "9901", "--check")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert (f"{cfg}: oms: must be a table ([oms]), not int; --oms-port sets oms.port in it"
            in r.stderr)


def test_two_listeners_on_one_port_by_a_flag_name_the_flag(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[grpc]\nport = 50061\n')
    r = _run("--config", str(cfg), "--admin-port", "50061", "--check")
    assert r.returncode == 2
    assert "fixgw: --admin-port (admin.port): 50061 is grpc.port too" in r.stderr


def test_the_embedded_venue_on_a_listener_s_port_is_a_problem(tmp_path: Path) -> None:
    """The embedded simulator listens on its FIX ports before the gateway's acceptor binds:
    `simulator.trading_port = 9878` passed the check, then the start failed with a
    quickfix.RuntimeError traceback ("Address already in use") after the venue logged on."""
    cfg = tmp_path / "gw.toml"
    cfg.write_text("[oms]\nport = 9901\n[simulator]\ntrading_port = 9901\nmd_port = 9901\n")
    r = _run("--config", str(cfg), "--check")
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"fixgw: {cfg}: simulator.trading_port: 9901 is oms.port too" in r.stderr
    # One acceptor serves both of the simulator's sessions: one port for both is no clash.
    assert "simulator.md_port" not in r.stderr
    r = _run("--config", str(cfg), "--oms-port", "9902", "--check")
    assert "simulator" not in r.stderr, r.stderr
    # A disabled simulator listens nowhere.
    cfg.write_text("[oms]\nport = 9901\n[simulator]\nenabled = false\ntrading_port = 9901\n"
                   "[venue.trading]\nport = 4001\n[venue.market_data]\nport = 4000\n")
    assert "simulator" not in _run("--config", str(cfg), "--check").stderr


def test_the_check_says_where_a_relative_data_dir_is(tmp_path: Path) -> None:
    """Relative to the working directory (not the file's): under a service manager that is
    not where ops stand, so the check prints it resolved."""
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[gateway]\ndata_dir = "./var/uat"\n[oms]\nport = 9901\n')
    r = _run("--config", str(cfg), "--check")
    assert r.returncode == 0, r.stderr
    where = REPO / "var" / "uat"
    assert f"  data: var/uat (relative to the working directory: {where})" in r.stdout


def _credential_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A venue key (0600), a venue secret others can read (0644) and an operator token its
    group can read (0640)."""
    key, secret, op = tmp_path / "venue.key", tmp_path / "venue.secret", tmp_path / "op.token"
    key.write_text("key-value-never-printed\n")
    secret.write_text("c2VjcmV0LXZhbHVlLW5ldmVyLXByaW50ZWQ=\n")
    op.write_text("op-token-never-printed\n")
    for path, mode in ((key, 0o600), (secret, 0o644), (op, 0o640)):
        path.chmod(mode)
    return key, secret, op


def test_credential_files_others_can_read_are_warnings_in_the_check(tmp_path: Path) -> None:
    """Every file-sourced credential gets the same mode check: the venue secret as much as
    the admin token; a warning (exit 0), not a refusal."""
    key, secret, op = _credential_files(tmp_path)
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f"""
[gateway]
data_dir = "{tmp_path / 'var'}"
[venue]
api_key = {{ file = "{key}" }}
api_secret = {{ file = "{secret}" }}
[admin]
operator_token = {{ file = "{op}" }}
""")
    r = _check(cfg)
    assert r.returncode == 0, r.stderr
    assert (f"fixgw: {cfg}: warning: venue.api_secret: file {secret} can be used by others "
            "(mode 0644)") in r.stderr
    assert (f"fixgw: {cfg}: warning: admin.operator_token: file {op} can be used by its group "
            "(mode 0640)") in r.stderr
    assert "venue.api_key: file" not in r.stderr
    assert "never-printed" not in r.stdout + r.stderr and "c2VjcmV0" not in r.stderr


def test_credential_files_others_can_read_are_warned_about_at_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The start says the same as --check, first, even when something else stops it (here a
    read-only token file that is missing), and changes no file it did not make."""
    key, secret, op = _credential_files(tmp_path)
    config = load_config(None, {
        "gateway.data_dir": str(tmp_path / "var"), "oms.port": free_port(),
        "venue.api_key": {"file": str(key)}, "venue.api_secret": {"file": str(secret)},
        "admin.operator_token": {"file": str(op)},
        "admin.read_only_token": {"file": str(tmp_path / "missing.token")}})
    rt = Runtime(config)
    try:
        with caplog.at_level(logging.WARNING, "fixgw"), pytest.raises(TokenError):
            rt.start()
        assert rt.gateway is None
    finally:
        rt.stop()
    assert f"venue.api_secret: file {secret} can be used by others (mode 0644)" in caplog.text
    assert f"admin.operator_token: file {op} can be used by its group (mode 0640)" in caplog.text
    assert "venue.api_key: file" not in caplog.text and "never-printed" not in caplog.text
    assert stat.S_IMODE(secret.stat().st_mode) == 0o644 and stat.S_IMODE(op.stat().st_mode) == 0o640


def test_a_config_file_that_is_not_utf8_is_a_config_error_naming_the_byte(
        tmp_path: Path) -> None:
    """A file saved as Latin-1 (an accented comment): exit 2 with the file and the byte
    offset, at --check and at start alike, not a UnicodeDecodeError traceback (exit 1)."""
    cfg = tmp_path / "gw.toml"
    cfg.write_bytes(b"[oms]\nport = 9900  # caf\xe9\n")
    for args in (("--check",), ()):
        r = _run("--config", str(cfg), *args)
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr
        assert (f"fixgw: {cfg}: not UTF-8 text (TOML must be): byte offset 24 (0xe9) is not "
                "valid UTF-8") in r.stderr


def test_an_admin_token_that_is_not_printable_ascii_fails_the_check(tmp_path: Path) -> None:
    """The start would refuse it (no client could send it as gRPC metadata): so does --check,
    naming the field, without printing the token."""
    op = tmp_path / "op.token"
    op.write_text("na\u00efve-token-value\n", encoding="utf-8")
    op.chmod(0o600)
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f"""
[gateway]
data_dir = "{tmp_path / 'var'}"
[admin]
operator_token = {{ file = "{op}" }}
""")
    r = _check(cfg)
    assert r.returncode == 2, r.stderr
    assert (f"fixgw: {cfg}: admin.operator_token: admin token file {op}: character 3 of the "
            "token is not printable ASCII") in r.stderr
    assert "ve-token-value" not in r.stdout + r.stderr
