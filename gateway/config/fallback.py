"""`[venue.fallback]`: order entry over Kraken spot REST while the FIX trading session is down.

Off by default: a deployment turns it on deliberately, with an API key allowed to trade over
REST (the venue's `api_key`/`api_secret`, the same account as the FIX session).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FallbackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    # Kraken spot REST base URL; empty = the embedded simulator's REST face
    # (Kraken: https://api.kraken.com).
    rest_url: str = ""
    # FIX trading session logged out this long -> new orders and cancels go over REST.
    failover_after_s: float = Field(default=2.0, ge=0)
    # FIX logged on and stable this long -> reconcile REST-routed orders, then back to FIX.
    failback_after_s: float = Field(default=5.0, ge=0)
    # QueryOrders poll of open REST-routed orders (each poll costs 1 on the REST counter).
    poll_interval_s: float = Field(default=0.5, gt=0)
    # SystemStatus check (REST health) interval.
    status_interval_s: float = Field(default=5.0, gt=0)
    # "auto" follows health; "fix"/"rest" pin the transport (ops can change it at runtime).
    force: Literal["auto", "fix", "rest"] = "auto"
    # The account's Kraken verification tier: the client-side rate model (kraken-api.md §7).
    tier: Literal["starter", "intermediate", "pro"] = "starter"
    timeout_s: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _url(self) -> FallbackConfig:
        if self.rest_url and not self.rest_url.startswith(("http://", "https://")):
            raise ValueError("rest_url must be an http(s) URL")
        return self


class MdFallbackConfig(BaseModel):
    """`[venue.md_fallback]`: market data over Kraken spot WebSocket v2 while the FIX MD session
    is down (public channels: no credentials needed). Off by default, like the order fallback:
    a deployment chooses to depend on a second venue endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    # Kraken spot WS v2 public URL; empty = the embedded simulator's spot WS face
    # (Kraken: wss://ws.kraken.com/v2).
    ws_url: str = ""
    # FIX MD session logged out this long -> subscribe book and trade over WS.
    failover_after_s: float = Field(default=2.0, ge=0)
    # FIX MD logged on this long and every symbol's fresh FIX snapshot in -> back to FIX.
    failback_after_s: float = Field(default=5.0, ge=0)
    # "auto" follows health; "fix"/"ws" pin the market-data source.
    force: Literal["auto", "fix", "ws"] = "auto"
    # WS silence (no frame, not even a heartbeat) after which the client reconnects.
    heartbeat_timeout_s: float = Field(default=5.0, gt=0)
    # How often the policy looks at the sessions' health.
    check_interval_s: float = Field(default=0.2, gt=0)

    @model_validator(mode="after")
    def _url(self) -> MdFallbackConfig:
        if self.ws_url and not self.ws_url.startswith(("ws://", "wss://")):
            raise ValueError("ws_url must be a ws:// or wss:// URL")
        return self
