from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from time import monotonic

import pytest
import quickfix as fix

from gateway.config import ConfigError, load_config
from gateway.config.model import ScheduleConfig
from gateway.fix.reconnect import ReconnectSupervisor
from gateway.fix.settings import (
    SessionBlock,
    SettingsFile,
    acceptor_address_policy,
    common_defaults,
    schedule_settings,
)
from gateway.server.gateway import Gateway, VenueEndpoints


def test_defaults_are_the_embedded_uat_deployment() -> None:
    c = load_config(None)
    assert (c.oms.host, c.oms.port, c.oms.sender_comp_id) == ("127.0.0.1", 9878, "FIXGW")
    assert [s.comp_id for s in c.oms.sessions] == ["OMS"]
    assert c.venue.trading.target_comp_id == "KRAKEN-TRD"
    assert c.venue.market_data.target_comp_id == "KRAKEN-MD"
    assert c.simulator.enabled and c.gateway.data_dir == Path("./var")


def test_shipped_session_files_validate() -> None:
    root = Path(__file__).resolve().parents[2] / "sessions"
    assert load_config(root / "uat-sim.toml").simulator.enabled
    kr = load_config(root / "kraken-uat.toml")
    assert not kr.simulator.enabled and kr.venue.trading.port == 4001
    # Kraken answers plain TCP with a TLS alert: the template must speak TLS, verified.
    assert kr.venue.trading.tls is not None and kr.venue.trading.tls.verify
    assert kr.venue.market_data.tls is not None and kr.venue.market_data.tls.verify
    assert kr.venue.api_secret is not None and kr.venue.api_secret.env == "KRAKEN_FIX_API_SECRET"


def _refused(tmp_path: Path, toml: str) -> tuple[Path, str]:
    """Load `toml` as a config file that must be refused: its path and the error's text."""
    p = tmp_path / "d.toml"
    p.write_text(toml)
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    return p, str(exc.value)


@pytest.mark.parametrize(("toml", "needle"), [
    ('[oms]\nsender_comp_id = "bad id!"', "oms.sender_comp_id: must be 1-64 characters"),
    ('[venue]\napi_key = { env = "A", file = "/x" }\napi_secret = { env = "B" }',
     "venue.api_key: give exactly one of 'env'"),
    ('[venue]\napi_key = { env = "A" }', "api_key and api_secret go together"),
    ('[simulator]\nenabled = false', "venue.trading.port: must be set"),
    ('[oms]\nport = 0', "oms.port: Input should be greater than or equal to 1"),
    ('[oms]\nmax_latency_s = 99999999999', "oms.max_latency_s: Input should be less than"),
    ('[venue]\nreconnect_min_s = 1e9', "venue.reconnect_min_s: Input should be less than"),
    ('[[oms.sessions]]\ncomp_id = "A"\n[[oms.sessions]]\ncomp_id = "A"', "duplicate OMS comp_id"),
    ('[oms]\nport = 70000', "oms.port: Input should be less than or equal to 65535"),
    ('[grpc]\nmax_subscriber_lag_events = 70000',
     "grpc.max_subscriber_lag_events: Input should be less than 65536"),
    ('[gateway]\ncancel_in_flight_s = 0',
     "gateway.cancel_in_flight_s: Input should be greater than 0"),
    ('[gateway]\ncancel_in_flight_s = 601',
     "gateway.cancel_in_flight_s: Input should be less than or equal to 600"),
    ("[oms\nport = 1", "not valid TOML"),
])
def test_bad_config_names_file_and_field(tmp_path: Path, toml: str, needle: str) -> None:
    p, err = _refused(tmp_path, toml)
    assert str(p) in err
    assert needle in err
    assert "(got {" not in err  # a rule across fields does not echo the section


@pytest.mark.parametrize(("toml", "field"), [
    ("[oms]\nport = true", "oms.port"),
    ("[oms]\nheartbeat_interval = true", "oms.heartbeat_interval"),
    ("[venue]\nheartbeat_interval = true", "venue.heartbeat_interval"),
    ("[venue.trading]\nport = true", "venue.trading.port"),
    ("[admin]\nport = false", "admin.port"),
    ("[risk]\nmax_orders_per_s = true", "risk.max_orders_per_s"),
    ("[risk]\nmax_open_orders = true", "risk.max_open_orders"),
    ("[venue]\nreconnect_min_s = true", "venue.reconnect_min_s"),
    ("[venue.fallback]\nhold_max_orders = true", "venue.fallback.hold_max_orders"),
    ("[gateway]\ncancel_in_flight_s = true", "gateway.cancel_in_flight_s"),
])
def test_a_boolean_is_not_a_number(tmp_path: Path, toml: str, field: str) -> None:
    """pydantic would read `true` as 1 for any int (or float) field: a port 1, a heartbeat
    every second, one order per second. Every number field refuses it, named."""
    p, err = _refused(tmp_path, toml)
    assert f"{p}: {field}: must be a number, not a boolean (true/false)" in err


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize("inline", ['"kEy-pasted-in"', "12345678901234", "['kEy-pasted-in']"])
def test_a_credential_written_into_the_file_is_refused_without_repeating_it(
        tmp_path: Path, inline: str) -> None:
    """Pasting the key itself where the config names its place is refused, and the error (which
    goes to the terminal and the log) does not quote what was pasted: pydantic's would."""
    p, msg = _refused(tmp_path, f'[venue]\napi_key = {inline}\napi_secret = {{ env = "B" }}\n'
                                f'[admin]\noperator_token = {inline}\n')
    assert f"{p}: venue.api_key: a credential is never written in the file" in msg
    assert f"{p}: admin.operator_token: a credential is never written in the file" in msg
    assert "kEy-pasted-in" not in msg and "12345678901234" not in msg


def test_a_secret_pasted_as_the_variable_name_is_refused_without_repeating_it(
        tmp_path: Path) -> None:
    """`{ env = "<the secret>" }`: a later "variable <secret> is not set" would print it."""
    p, msg = _refused(tmp_path, '[venue]\napi_key = { env = "KRAKEN_KEY" }\n'
                                'api_secret = { env = "c2VjcmV0+/sEcReT==" }\n')
    assert f"{p}: venue.api_secret: 'env' takes the name of an environment variable" in msg
    assert "sEcReT" not in msg


def test_daily_reset_ends_the_session_at_2200_utc_and_starts_it_after_the_rollover() -> None:
    """Never StartTime == EndTime: QuickFIX's TimeRange compares UTC dates for that, so the
    reset would come at midnight whatever time was set (tests/integration/test_daily_rollover
    checks the reset happens when configured)."""
    s = schedule_settings(ScheduleConfig())
    assert s == {"StartTime": "22:00:30", "EndTime": "22:00:00", "UseLocalTime": "N"}
    assert schedule_settings(ScheduleConfig(mode="non-stop")) == {"NonStopSession": "Y"}
    late = ScheduleConfig(reset_time_utc=time(23, 59, 50), rollover_s=30)
    assert late.session_times() == (time(0, 0, 20), time(23, 59, 50))


@pytest.mark.parametrize(("reset", "rollover_s", "now", "inside"), [
    (time(22), 30, "21:59:59", False),
    (time(22), 30, "22:00:00", True),
    (time(22), 30, "22:00:29", True),
    (time(22), 30, "22:00:30", False),
    (time(23, 59, 50), 30, "23:59:55", True),  # the rollover wraps midnight
    (time(23, 59, 50), 30, "00:00:19", True),
    (time(23, 59, 50), 30, "00:00:20", False),
    (time(23, 59, 50), 30, "12:00:00", False),
])
def test_in_rollover(reset: time, rollover_s: int, now: str, inside: bool) -> None:
    when = datetime.combine(date(2026, 11, 26), time.fromisoformat(now), tzinfo=UTC)
    sched = ScheduleConfig(reset_time_utc=reset, rollover_s=rollover_s)
    assert sched.in_rollover(when) is inside
    # The same instant seen from another zone.
    assert sched.in_rollover(when.astimezone(timezone(timedelta(hours=-5)))) is inside
    assert not ScheduleConfig(mode="non-stop").in_rollover(when)


@pytest.mark.parametrize("written", ["22:00:00Z", "17:00:00-05:00", "23:00:00+01:00"])
def test_a_reset_time_with_an_offset_becomes_utc(written: str) -> None:
    """An aware time would fail the schedule's comparisons at run time (killing the reconnect
    supervisor) and be rendered to QuickFIX without its offset: it is converted at load."""
    c = load_config(None, {"schedule.reset_time_utc": written})
    assert c.schedule.reset_time_utc == time(22, 0) and c.schedule.reset_time_utc.tzinfo is None
    assert c.schedule.in_rollover(datetime(2026, 11, 27, 22, 0, 10, tzinfo=UTC))
    assert c.schedule.back_at() == "22:00:30 UTC"


def test_oms_sessions_run_non_stop_unless_given_a_schedule(tmp_path: Path) -> None:
    """The venue's rollover is not the OMS's: its sessions keep their own schedule."""
    def rendered(**overrides: object) -> tuple[str, str]:
        c = load_config(None, {"gateway.data_dir": str(tmp_path), **overrides})
        gw = Gateway(c, VenueEndpoints("127.0.0.1", 1111, "127.0.0.1", 2222), None)
        try:
            return gw.oms_settings().render(), gw.venue_settings().render()
        finally:
            gw.store.close()

    oms, venue = rendered()
    assert "NonStopSession=Y" in oms and "StartTime" not in oms
    assert "StartTime=22:00:30" in venue and "EndTime=22:00:00" in venue
    oms, _ = rendered(**{"oms.schedule.mode": "daily-reset",
                         "oms.schedule.reset_time_utc": "17:00:00", "oms.schedule.rollover_s": 5})
    assert "StartTime=17:00:05" in oms and "EndTime=17:00:00" in oms


def test_loopback_host_becomes_an_allow_list() -> None:
    assert acceptor_address_policy("127.0.0.1", ()) == {"AllowedRemoteAddresses": "127.0.0.1"}
    assert acceptor_address_policy("0.0.0.0", ()) == {}
    assert acceptor_address_policy("0.0.0.0", ("10.0.0.5",)) == {
        "AllowedRemoteAddresses": "10.0.0.5"}


def test_rendered_settings_carry_config(tmp_path: Path) -> None:
    c = load_config(None, {"gateway.data_dir": str(tmp_path), "venue.heartbeat_interval": 45})
    gw = Gateway(c, VenueEndpoints("127.0.0.1", 1111, "127.0.0.1", 2222), None)
    try:
        venue = gw.venue_settings().render()
        oms = gw.oms_settings().render()
    finally:
        gw.store.close()
    assert "HeartBtInt=45" in venue and "SocketConnectPort=1111" in venue
    assert "TargetCompID=KRAKEN-MD" in venue and "ResetOnLogon=Y" in venue
    assert "SocketAcceptPort=9878" in oms and "TargetCompID=OMS" in oms
    assert "FIX44-kraken.xml" in oms and "ValidateUserDefinedFields=Y" in oms
    # An unknown venue tag must not cost a Reject (and a lost report); the OMS side is strict.
    assert "AllowUnknownMsgFields=N" in oms and "ValidateFieldsOutOfOrder=Y" in oms
    assert "AllowUnknownMsgFields=Y" in venue and "ValidateUserDefinedFields=N" in venue


def test_the_rollover_is_no_reconnect_failure(caplog: pytest.LogCaptureFixture) -> None:
    """Inside the venue's rollover QuickFIX keeps the sessions down on purpose: the supervisor
    forgets the failures it counted and lets a session it had backed off log on at once when
    the rollover ends, instead of after a backoff grown by the rollover itself (with the
    defaults, 1 s doubling to 30 s, a 30 s rollover would cost the first logon up to ~16 s)."""
    now = datetime.now(UTC)
    sid = fix.SessionID("FIX.4.4", "FIXGW", "KRAKEN-TRD")
    inside = ScheduleConfig(reset_time_utc=(now - timedelta(seconds=5)).time(), rollover_s=60)
    sup = ReconnectSupervisor([sid], attempt_window_s=5, min_backoff_s=1, max_backoff_s=30,
                              rollover=inside)
    track = sup._tracks[sid.toString()]
    track.failures, track.resume_at, track.enabled_at = 4, 1e9, 0.0
    with caplog.at_level(logging.INFO, logger="fixgw.reconnect"):
        assert sup._rolling_over(100.0)
        assert sup._rolling_over(101.0)
    assert (track.failures, track.resume_at, track.enabled_at) == (0, 101.0, 101.0)
    back_at = (now + timedelta(seconds=55)).strftime("%H:%M:%S")
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 1 and f"sessions are down until {back_at} UTC" in logged[0]

    outside = ScheduleConfig(reset_time_utc=(now + timedelta(hours=1)).time())
    for schedule in (outside, ScheduleConfig(mode="non-stop"), None):
        sup = ReconnectSupervisor([sid], attempt_window_s=5, min_backoff_s=1, max_backoff_s=30,
                                  rollover=schedule)
        track = sup._tracks[sid.toString()]
        track.failures, track.resume_at = 4, 1e9
        assert not sup._rolling_over(100.0)
        assert (track.failures, track.resume_at) == (4, 1e9)


def test_backoff_doubles_to_the_cap_with_jitter() -> None:
    sup = ReconnectSupervisor([], attempt_window_s=1, min_backoff_s=1, max_backoff_s=8)
    for failures, base in [(1, 1), (2, 2), (3, 4), (4, 8), (9, 8)]:
        for _ in range(20):
            assert 0.8 * base <= sup.backoff(failures) <= 1.2 * base


class _Session:
    """What the supervisor reads of a QuickFIX initiator session, and what it does to it."""

    def __init__(self) -> None:
        self.enabled, self.logged_on, self.calls = True, True, []

    def isLoggedOn(self) -> bool:
        return self.logged_on

    def isEnabled(self) -> bool:
        return self.enabled

    def sentLogon(self) -> bool:
        return False

    def logout(self, *reason: str) -> None:
        self.calls.append("logout")
        self.enabled = self.logged_on = False

    def logon(self) -> None:
        self.calls.append("logon")
        self.enabled = True


def test_an_operators_logon_after_a_long_hold_is_not_undone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Held for longer than the attempt window, then logged on by the operator: the time it
    was held is no failed attempt, and the supervisor must not log it out at once."""
    session = _Session()
    monkeypatch.setattr(fix.Session, "lookupSession", staticmethod(lambda sid: session))
    sid = fix.SessionID("FIX.4.4", "FIXGW", "KRAKEN-TRD")
    sup = ReconnectSupervisor([sid], attempt_window_s=5, min_backoff_s=1, max_backoff_s=30)
    sup._check(sid, monotonic() - 100)  # logged on, 100 s ago
    sup.hold(sid, True)
    session.logout()  # the operator's
    sup._check(sid, monotonic() - 50)  # held: left alone
    sup.hold(sid, False)
    session.logon()  # the operator's, connecting now
    sup._check(sid, monotonic())
    assert session.calls == ["logout", "logon"]  # nothing of the supervisor's


@pytest.mark.parametrize("written", ["22", "79200", "22.0"])
@pytest.mark.parametrize("section", ["schedule", "oms.schedule"])
def test_a_reset_time_written_as_a_number_is_refused(tmp_path: Path, written: str,
                                                     section: str) -> None:
    """pydantic reads a number as seconds after midnight: `reset_time_utc = 22` was 00:00:22,
    a daily reset at the wrong time of day that --check printed as ok."""
    p, err = _refused(tmp_path, f"[{section}]\nreset_time_utc = {written}\n")
    assert (f"{p}: {section}.reset_time_utc: must be a time of day, HH:MM:SS (22:00:00), "
            "not a number") in err


@pytest.mark.parametrize(("toml", "line"), [
    ('[[oms.sessions]]\ncomp_id = "A"\n[[oms.sessions]]\ncomp_id = "B"\n'
     '[[oms.sessions]]\ncomp_id = "A"',
     "oms.sessions[2].comp_id: duplicate OMS comp_id 'A', oms.sessions[0]'s too"),
    ("[oms]\nsessions = []", "oms.sessions: at least one OMS session is required"),
    ("[venue]\nreconnect_min_s = 5\nreconnect_max_s = 2",
     "venue.reconnect_max_s: must be >= reconnect_min_s (5.0)"),
    ('[venue]\napi_key = { env = "A" }',
     "venue.api_secret: missing: api_key and api_secret go together"),
    ('[venue]\napi_secret = { env = "A" }',
     "venue.api_key: missing: api_key and api_secret go together"),
    ('[grpc]\ntls_cert_file = "/c"', "grpc.tls_key_file: missing: tls_cert_file and tls_key_file"),
    ('[admin]\ntls_key_file = "/k"', "admin.tls_cert_file: missing: tls_cert_file and tls_key"),
    ('[venue.fallback]\nrest_url = "api.kraken.com"',
     "venue.fallback.rest_url: must be an http(s) URL"),
    ("[simulator]\nenabled = false\n[venue.trading]\nport = 1",
     "venue.market_data.port: must be set when the embedded simulator is disabled"),
    # Two venue sessions with one SessionID: QuickFIX refused the rendered settings at start,
    # a quickfix.ConfigError traceback ("Duplicate Session"), which --check had passed.
    ('[venue.market_data]\ntarget_comp_id = "KRAKEN-TRD"',
     "venue.market_data.target_comp_id: 'KRAKEN-TRD' is venue.trading.target_comp_id too"),
])
def test_a_rule_across_fields_names_the_field(tmp_path: Path, toml: str, line: str) -> None:
    """Not `venue: reconnect_max_s must be ...` or `(top level): venue.trading.port must ...`:
    the dotted field an operator has to change, as for any other error."""
    p, err = _refused(tmp_path, toml)
    assert f"\n  {p}: {line}" in err, err


@pytest.mark.parametrize("host", ["", " ", "fix.example.net ", "fix example.net"])
def test_a_venue_host_that_no_connection_can_use_is_refused(tmp_path: Path, host: str) -> None:
    """An empty host or one with a space passed, and failed only at each connect (DNS), or an
    empty one reached this host."""
    p, err = _refused(tmp_path, f'[venue.trading]\nhost = "{host}"\n')
    assert f"{p}: venue.trading.host: must be a host name or address" in err


@pytest.mark.parametrize("data_dir", [" var", "var/with space", "var#1"])
def test_quickfix_stores_where_the_gateway_looks(tmp_path: Path, data_dir: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative data_dir is relative to the working directory, for the gateway and QuickFIX
    alike. The rendered FileStorePath is absolute: QuickFIX trims a value's spaces, so a
    relative " var" became its "var" while the gateway's journal and the store readers
    (unforwarded reports, the logon scrubber) used " var"."""
    monkeypatch.chdir(tmp_path)
    store = Path(data_dir) / "store" / "oms"
    defaults = common_defaults(connection_type="acceptor", store_dir=store, log_dir=None,
                               schedule=ScheduleConfig(mode="non-stop"))
    settings = SettingsFile(defaults, [SessionBlock("FIXGW", "OMS")]).write(tmp_path / "o.cfg")
    read = settings.get().getString("FileStorePath")
    assert read == str(tmp_path / data_dir / "store" / "oms")
    assert Path(read).is_dir()


def test_a_symbol_listed_twice_is_refused(tmp_path: Path) -> None:
    """Each logon subscribed it twice (two MarketDataRequests, the second's stream replacing
    the first's in the feed)."""
    p, err = _refused(tmp_path, '[venue]\nsymbols = ["BTC/USD", "ETH/USD", "BTC/USD"]\n')
    assert f"{p}: venue.symbols[2]: 'BTC/USD' is venue.symbols[0] too" in err


@pytest.mark.parametrize("toml", ['[oms.sessions]\ncomp_id = "DESK1"\n',
                                  '[oms]\nsessions = { comp_id = "DESK1" }\n'])
def test_one_oms_session_written_as_a_table_says_how_to_write_it(tmp_path: Path,
                                                                 toml: str) -> None:
    """QuickFIX/J people write a session as one [SESSION] block: "Input should be a valid
    tuple" did not say that an array of tables is [[oms.sessions]]."""
    p, err = _refused(tmp_path, toml)
    assert (f"{p}: oms.sessions: must be an array, not a table: write each entry as its own "
            "[[oms.sessions]] table") in err
    _, err = _refused(tmp_path, '[venue.symbols]\nBTC = "USD"\n')
    assert err.endswith(f"{p}: venue.symbols: must be an array, not a table")


@pytest.mark.parametrize(("toml", "field"), [
    ('[gateway]\ndata_dir = "~/fixgw"', "gateway.data_dir"),
    ('[venue]\napi_key = { file = "~/.kraken/key" }\napi_secret = { env = "S" }',
     "venue.api_key.file"),
    ('[oms.tls]\ncert_file = "~/c.pem"\nkey_file = "/k.pem"', "oms.tls.cert_file"),
])
def test_a_path_starting_with_a_tilde_is_refused(tmp_path: Path, toml: str, field: str) -> None:
    """No shell reads the file: data_dir = "~/fixgw" made a directory named "~" in the working
    directory (the next `rm -rf ~/...` typed to clean it up is another matter), and a
    credential file under ~ was "does not exist"."""
    p, err = _refused(tmp_path, toml)
    assert (f"{p}: {field}: '~' is not expanded (no shell reads this file): give the full "
            "path") in err


@pytest.mark.parametrize("address", ["203.0.113.10 ", "203.0.113", "my-host"])
def test_a_source_address_that_is_not_an_ip_address_is_refused(tmp_path: Path,
                                                               address: str) -> None:
    """It is bound before every connect to the venue: a typo failed each one, not the start."""
    p, err = _refused(tmp_path, f'[venue.trading.tls]\nsource_address = "{address}"\n')
    assert (f"{p}: venue.trading.tls.source_address: must be an IP address of this host"
            in err)
    p.write_text('[venue.trading.tls]\nsource_address = "2001:db8::1"\n')
    assert load_config(p).venue.trading.tls is not None


@pytest.mark.parametrize(("entry", "index"), [('"10.0.0.0/33"', 1), ('"desk-1"', 1)])
def test_an_allow_list_entry_that_is_no_address_is_refused(tmp_path: Path, entry: str,
                                                           index: int) -> None:
    """The TLS listener parsed the list only at start: a ValueError traceback from the bridge,
    after the checks had passed."""
    p, err = _refused(tmp_path, f'[oms.tls]\ncert_file = "/c"\nkey_file = "/k"\n'
                                f'allow_addresses = ["127.0.0.1", {entry}]\n')
    assert (f"{p}: oms.tls.allow_addresses[{index}]: must be an IP address or a CIDR network "
            "(10.0.0.0/24)") in err
