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
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Annotated

from pydantic import Field, StringConstraints

from gateway.config import ConfigError, CredentialRef, StrictModel
from gateway.config.loader import read_toml, validate_model
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


NonBlank = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _AccountEntry(StrictModel):
    api_key: NonBlank
    api_secret: CredentialRef
    owner: NonBlank | None = None  # the engine owner; default the key


class _AccountsFile(StrictModel):
    accounts: list[_AccountEntry] = Field(min_length=1)


def load_accounts_file(path: Path) -> list[ApiAccount]:
    """More API accounts for bots rehearsing against the simulator (`fixgw venue-sim
    --accounts FILE`). Each has its own wallet, orders and nonces, so several bots (say one on
    python-kraken-sdk, one on ccxt, whose nonces differ) share one simulator; an account whose
    owner is a CompID also logs on over FIX as that CompID, signed with its own key. A TOML
    file, its credentials named as in a deployment config:

        [[accounts]]
        api_key = "ccxt-bot"
        api_secret = { env = "CCXT_BOT_SECRET" }   # or { file = "secrets/ccxt-bot" }
        owner = "CCXTBOT"                          # optional: the engine owner; default the key

    Secrets come from the environment or a file the entry names, never from this file. A
    relative secret file is the working directory's, as every relative path of the deployment
    config is (QuickFIX/J's convention; `gateway.config.model`): one rule whether the file is
    named by `[simulator] accounts_file` or by `--accounts`, so `fixgw run --check` and the
    simulator it starts read the same file. Raises `ConfigError` naming the file, the field
    and, for a secret file not found, the path it was looked for at.
    """
    parsed = validate_model(_AccountsFile, read_toml(path), str(path))
    out: list[ApiAccount] = []
    first: dict[str, int] = {}
    for i, entry in enumerate(parsed.accounts):
        if entry.api_key in first:
            raise ConfigError(f"{path}: accounts[{i}].api_key: {entry.api_key!r} appears twice "
                              f"(first in accounts[{first[entry.api_key]}])")
        first[entry.api_key] = i
        ref = entry.api_secret
        # Absolute in the message, so a missing file names where it was looked for.
        file = None if ref.file is None else ref.file.absolute()
        try:
            secret = load_secret(ref.env, file)
            decode_secret(secret)
        except ValueError as exc:  # SecretError (not set, unreadable) or a bad base64 secret
            hint = ""
            if ref.file is not None and not ref.file.is_absolute() and file is not None \
                    and not file.exists():
                hint = (f" (the relative {ref.file} is the working directory's, "
                        "not the accounts file's)")
            raise ConfigError(f"{path}: accounts[{i}].api_secret: {exc}{hint}") from None
        out.append(ApiAccount(entry.api_key, secret, entry.owner or entry.api_key))
    return out
