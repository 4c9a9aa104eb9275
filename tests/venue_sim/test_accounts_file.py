"""`fixgw venue-sim --accounts FILE`: what a good file gives, and that a bad one is refused
with the file and the field named (and the secret never echoed)."""

from __future__ import annotations

import base64
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError
from gateway.venue_sim.accounts import ApiAccount, load_accounts_file
from gateway.venue_sim.server import SimOptions
from tests.procs import REPO


def _secret() -> str:
    return base64.b64encode(secrets.token_bytes(64)).decode()


def test_accounts_from_env_and_file_with_default_owner(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_secret, file_secret = _secret(), _secret()
    monkeypatch.setenv("BOT_A_SECRET", env_secret)
    monkeypatch.chdir(tmp_path)  # the relative "b.secret" is the working directory's
    (tmp_path / "b.secret").write_text(file_secret + "\n")
    path = tmp_path / "accounts.toml"
    path.write_text('[[accounts]]\napi_key = "bot-a"\napi_secret = { env = "BOT_A_SECRET" }\n'
                    'owner = "BOTA"\n\n'
                    '[[accounts]]\napi_key = "bot-b"\napi_secret = { file = "b.secret" }\n')
    a, b = load_accounts_file(path)
    assert (a.api_key, a.api_secret, a.owner) == ("bot-a", env_secret, "BOTA")
    assert (b.api_key, b.api_secret, b.owner) == ("bot-b", file_secret, "bot-b")


def test_a_relative_secret_file_is_the_working_directory_s_not_the_accounts_file_s(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As every relative path of the deployment config that names the accounts file (README,
    Configuration): before, it was the accounts file's directory's, so the same `bot.secret`
    meant one file in `fixgw run`'s config and another in the accounts file it names."""
    here, there = tmp_path / "cwd", tmp_path / "conf"
    here.mkdir()
    there.mkdir()
    cwd_secret, beside_secret = _secret(), _secret()
    (here / "bot.secret").write_text(cwd_secret + "\n")
    (there / "bot.secret").write_text(beside_secret + "\n")
    (there / "other.secret").write_text(beside_secret + "\n")
    path = there / "accounts.toml"
    path.write_text('[[accounts]]\napi_key = "bot"\napi_secret = { file = "bot.secret" }\n')
    monkeypatch.chdir(here)
    (bot,) = load_accounts_file(path)
    assert bot.api_secret == cwd_secret
    # Only beside the accounts file: not found, and the message names the file, the field,
    # the path looked at and the rule.
    path.write_text('[[accounts]]\napi_key = "bot"\napi_secret = { file = "other.secret" }\n')
    with pytest.raises(ConfigError) as err:
        load_accounts_file(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: accounts[0].api_secret: "), msg
    assert f"file {here / 'other.secret'} does not exist" in msg, msg
    assert "working directory" in msg and beside_secret not in msg, msg


_GOOD = 'api_secret = { env = "GOOD" }\n'


@pytest.mark.parametrize(("body", "where", "says"), [
    ("[[accounts]]\n" + _GOOD, "accounts[0].api_key", "required"),
    ('[[accounts]]\napi_key = "k"\n', "accounts[0].api_secret", "required"),
    ('[[accounts]]\napi_key = "k"\napi_secret = { env = "S", file = "f" }\n',
     "accounts[0].api_secret", "exactly one"),
    ('[[accounts]]\napi_key = "k"\napi_secret = "c2VjcmV0"\n', "accounts[0].api_secret",
     "never written in the file"),
    ('[[accounts]]\napi_key = "k"\napi_secret = { env = "FIXGW_TEST_UNSET_SECRET" }\n',
     "accounts[0].api_secret", "not set"),
    ('[[accounts]]\napi_key = "k"\napi_secret = { file = "missing" }\n',
     "accounts[0].api_secret", "does not exist"),
    ('[[accounts]]\napi_key = "k"\napi_secret = { env = "BAD_B64" }\n', "accounts[0].api_secret",
     "base64"),
    ('[[accounts]]\napi_key = "k"\n' + _GOOD + 'owner = ""\n', "accounts[0].owner",
     "at least 1 character"),
    ('[[accounts]]\napi_key = "k"\n' + _GOOD + "wallet = 5\n", "accounts[0].wallet",
     "unknown field"),
    ('[[accounts]]\napi_key = "k"\n' + _GOOD + '\n[[accounts]]\napi_key = "k"\n' + _GOOD,
     "accounts[1].api_key", "twice"),
    ("accounts = []\n", "accounts", "at least 1 item"),
    ("[[accounts]\n", "not valid TOML", ""),
])
def test_a_bad_file_names_the_file_and_the_field(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, where: str,
        says: str) -> None:
    monkeypatch.setenv("GOOD", _secret())
    monkeypatch.setenv("BAD_B64", "not*base64*at*all")
    monkeypatch.delenv("FIXGW_TEST_UNSET_SECRET", raising=False)
    path = tmp_path / "accounts.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_accounts_file(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and f"{path}: {where}" in msg and says in msg, msg
    assert "not*base64" not in msg and "c2VjcmV0" not in msg


def test_the_simulator_refuses_a_bad_file_and_its_own_key(tmp_path: Path) -> None:
    """The CLI exits 2 with the loader's message; an extra account may not reuse the key the
    simulator already has (FIXGW_SIM_API_KEY)."""
    secret = _secret()
    path = tmp_path / "accounts.toml"
    cmd = [sys.executable, "-m", "gateway.venue_sim", "--data-dir", str(tmp_path / "sim"),
           "--accounts", str(path)]
    env = {"PATH": "/usr/bin:/bin", "FIXGW_SIM_API_KEY": "main-key",
           "FIXGW_SIM_API_SECRET": secret, "BOT_SECRET": _secret()}
    path.write_text('[[accounts]]\napi_key = "bot"\n')
    bad = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and f"{path}: accounts[0].api_secret" in bad.stderr
    path.write_text('[[accounts]]\napi_key = "main-key"\napi_secret = { env = "BOT_SECRET" }\n')
    own = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert own.returncode == 2 and "accounts[0].api_key: is the simulator's own key" in own.stderr
    assert secret not in own.stderr


def test_fix_sessions_are_added_for_owners_that_can_be_comp_ids() -> None:
    """An owner that is a CompID gets the simulator's FIX sessions; one that cannot name a
    session's store files (a raw key, say) trades over REST and WS only."""
    secret = _secret()
    opts = SimOptions(clients=("FIXGW", "MAKER"), extra_accounts=[
        ApiAccount("a", secret, "SDKBOT"), ApiAccount("b", secret, "MAKER"),
        ApiAccount("c", secret, "k3y/with+slash=")])
    assert opts.fix_clients() == ["FIXGW", "MAKER", "SDKBOT"]
