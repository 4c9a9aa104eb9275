from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from gateway.config.model import ScheduleConfig
from gateway.fix.reconnect import ReconnectSupervisor
from gateway.fix.settings import acceptor_address_policy, schedule_settings
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
    assert kr.venue.api_secret is not None and kr.venue.api_secret.env == "KRAKEN_FIX_API_SECRET"


@pytest.mark.parametrize(("toml", "needle"), [
    ('[oms]\nsender_comp_id = "bad id!"', "oms.sender_comp_id: must be 1-64 characters"),
    ('[venue]\napi_key = { env = "A", file = "/x" }\napi_secret = { env = "B" }',
     "venue.api_key: give exactly one of 'env'"),
    ('[venue]\napi_key = { env = "A" }', "api_key and api_secret go together"),
    ('[simulator]\nenabled = false', "venue.trading.port must be set"),
    ('[[oms.sessions]]\ncomp_id = "A"\n[[oms.sessions]]\ncomp_id = "A"', "duplicate OMS comp_id"),
    ('[oms]\nport = 70000', "oms.port: Input should be less than or equal to 65535"),
    ('[grpc]\nmax_subscriber_lag_events = 70000',
     "grpc.max_subscriber_lag_events: Input should be less than 65536"),
    ("[oms\nport = 1", "not valid TOML"),
])
def test_bad_config_names_file_and_field(tmp_path: Path, toml: str, needle: str) -> None:
    p = tmp_path / "d.toml"
    p.write_text(toml)
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert str(p) in str(exc.value)
    assert needle in str(exc.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize("inline", ['"kEy-pasted-in"', "12345678901234", "['kEy-pasted-in']"])
def test_a_credential_written_into_the_file_is_refused_without_repeating_it(
        tmp_path: Path, inline: str) -> None:
    """Pasting the key itself where the config names its place is refused, and the error (which
    goes to the terminal and the log) does not quote what was pasted: pydantic's would."""
    p = tmp_path / "d.toml"
    p.write_text(f'[venue]\napi_key = {inline}\napi_secret = {{ env = "B" }}\n'
                 f'[admin]\noperator_token = {inline}\n')
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    msg = str(exc.value)
    assert f"{p}: venue.api_key: a credential is never written in the file" in msg
    assert f"{p}: admin.operator_token: a credential is never written in the file" in msg
    assert "kEy-pasted-in" not in msg and "12345678901234" not in msg


def test_daily_reset_is_a_24h_session_at_2200_utc() -> None:
    s = schedule_settings(ScheduleConfig())
    assert s == {"StartTime": "22:00:00", "EndTime": "22:00:00", "UseLocalTime": "N"}
    assert schedule_settings(ScheduleConfig(mode="non-stop")) == {"NonStopSession": "Y"}
    assert schedule_settings(ScheduleConfig(reset_time_utc=time(21, 30)))["StartTime"] == "21:30:00"


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


def test_backoff_doubles_to_the_cap_with_jitter() -> None:
    sup = ReconnectSupervisor([], attempt_window_s=1, min_backoff_s=1, max_backoff_s=8)
    for failures, base in [(1, 1), (2, 2), (3, 4), (4, 8), (9, 8)]:
        for _ in range(20):
            assert 0.8 * base <= sup.backoff(failures) <= 1.2 * base
