"""Who is who on the simulated venue's REST and WebSocket faces.

A Kraken API key belongs to an account; the matching engine knows orders by owner. The FIX face
names owners by the client's CompID, so the REST and WS faces map each API key to that same
owner: an order placed over FIX is visible (OpenOrders, QueryOrders, executions) and
cancellable over REST/WS by the same account, which is what failover between transports needs.
WS private channels authenticate with a short-lived token from REST GetWebSocketsToken; this
registry issues and checks them for both faces.
"""

from __future__ import annotations

import secrets
import threading
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType

from gateway.kraken.auth import decode_secret
from gateway.kraken.secrets import load_secret

#: What a rehearsal account holds before it trades (canonical asset codes). The venue does not
#: refuse orders for want of funds; balances report what fills did to this starting wallet, so a
#: bot that reads Balance/BalanceEx sees its trades move it.
DEMO_BALANCES: Mapping[str, Decimal] = MappingProxyType({
    "USD": Decimal("1000000"), "BTC": Decimal("10"), "ETH": Decimal("200"),
    "ARB": Decimal("1000000"),
})


@dataclass(frozen=True)
class ApiAccount:
    api_key: str
    api_secret: str  # base64, as Kraken issues it
    owner: str       # the engine owner (the account's FIX CompID)
    balances: Mapping[str, Decimal] = field(default_factory=lambda: DEMO_BALANCES, compare=False)


class Accounts:
    def __init__(self, accounts: list[ApiAccount] | None = None,
                 token_ttl_s: float = 900.0) -> None:
        self._by_key = {a.api_key: a for a in accounts or []}
        self._tokens: dict[str, tuple[str, float]] = {}
        self._ttl = token_ttl_s
        self._lock = threading.Lock()

    def add(self, account: ApiAccount) -> None:
        with self._lock:
            self._by_key[account.api_key] = account

    def by_key(self, api_key: str) -> ApiAccount | None:
        return self._by_key.get(api_key)

    def by_owner(self, owner: str) -> ApiAccount | None:
        """The account trading as engine ``owner`` (faces track fills for these only)."""
        with self._lock:
            return next((a for a in self._by_key.values() if a.owner == owner), None)

    def issue_token(self, owner: str) -> str:
        """A WebSocket token for `owner` (REST GetWebSocketsToken), valid for `token_ttl_s`."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = (owner, time.monotonic() + self._ttl)
        return token

    def owner_of_token(self, token: str) -> str | None:
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]


class AccountsFileError(ValueError):
    """An accounts file the simulator cannot use; the message names the file and the field."""


_ACCOUNT_FIELDS = frozenset({"api_key", "api_secret_env", "api_secret_file", "owner"})


def load_accounts_file(path: Path) -> list[ApiAccount]:
    """More API accounts for bots rehearsing over REST and WebSocket (`fixgw venue-sim
    --accounts FILE`). Each has its own wallet, orders and nonces, so several bots (say one on
    python-kraken-sdk, one on ccxt, whose nonces differ) share one simulator. A TOML file:

        [[accounts]]
        api_key = "ccxt-bot"
        api_secret_env = "CCXT_BOT_SECRET"    # or api_secret_file = "secrets/ccxt-bot"
        owner = "CCXTBOT"                     # optional: the engine owner; default the key

    Secrets come from the environment or a file the entry names, never from this file. A
    relative `api_secret_file` is relative to the accounts file.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AccountsFileError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise AccountsFileError(f"{path}: not valid TOML: {exc}") from None
    entries = data.get("accounts")
    if not isinstance(entries, list) or not entries:
        raise AccountsFileError(f"{path}: accounts: expected one or more [[accounts]] tables")
    out: list[ApiAccount] = []
    for i, entry in enumerate(entries):
        out.append(_account(path, f"accounts[{i}]", entry))
    keys = [a.api_key for a in out]
    for i, key in enumerate(keys):
        if key in keys[:i]:
            raise AccountsFileError(f"{path}: accounts[{i}].api_key: {key!r} appears twice")
    return out


def _account(path: Path, where: str, entry: object) -> ApiAccount:
    def bad(name: str, problem: str) -> AccountsFileError:
        return AccountsFileError(f"{path}: {where}.{name}: {problem}")

    if not isinstance(entry, dict):
        raise AccountsFileError(f"{path}: {where}: expected a table")
    if "api_secret" in entry:
        raise bad("api_secret", "not in the file: name api_secret_env or api_secret_file")
    unknown = sorted(set(entry) - _ACCOUNT_FIELDS)
    if unknown:
        raise bad(unknown[0], f"unknown field (known: {', '.join(sorted(_ACCOUNT_FIELDS))})")
    key = entry.get("api_key")
    if not isinstance(key, str) or not key.strip():
        raise bad("api_key", "required, a non-empty string")
    env, file = entry.get("api_secret_env"), entry.get("api_secret_file")
    if (env is None) == (file is None):
        raise bad("api_secret_env", "give exactly one of api_secret_env and api_secret_file")
    field_name = "api_secret_env" if env is not None else "api_secret_file"
    source = env if env is not None else file
    if not isinstance(source, str) or not source.strip():
        raise bad(field_name, "a non-empty string")
    try:
        secret = (load_secret(env=source) if env is not None
                  else load_secret(file=path.parent / source))
        decode_secret(secret)
    except ValueError as exc:  # SecretError (not set, unreadable) or a bad base64 secret
        raise bad(field_name, str(exc)) from None
    owner = entry.get("owner", key)
    if not isinstance(owner, str) or not owner.strip():
        raise bad("owner", "a non-empty string")
    return ApiAccount(key, secret, owner)
