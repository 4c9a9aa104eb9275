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
from types import MappingProxyType

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
