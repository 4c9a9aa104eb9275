"""`[venue.fallback]`: order entry over Kraken spot REST while the FIX trading session is down.

Off by default: a deployment turns it on deliberately, with an API key allowed to trade over
REST (the venue's `api_key`/`api_secret`, the same account as the FIX session).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gateway.config.strict import StrictModel


class FallbackConfig(StrictModel):
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
    # Kraken spot WS v2 private URL for the `executions` channel while failed over (fills reach
    # the OMS as they happen; polling stays as the backstop). Empty = the embedded simulator's
    # WS face when there is one, else polling only (Kraken: wss://ws-auth.kraken.com/v2).
    ws_url: str = ""
    # An order that arrives while no transport is up (FIX down, failover not yet made) is held,
    # acknowledged PendingNew, and sent once on the first path up (FIX back, or REST after
    # failover); held longer than this it is rejected ("held N s ... not sent"). 0 = reject at
    # once, the behaviour before holding existed. Default: long enough to cover failover_after_s
    # plus a REST health check, short enough that a desk is not left guessing.
    hold_max_s: float = Field(default=10.0, ge=0)
    # At most this many orders held at once; more are rejected at once.
    hold_max_orders: int = Field(default=1000, ge=1)
    # While failed over and the private WebSocket (ws_url) is connected, new orders and cancels
    # go over it (add_order/cancel_order: the policy FIX, then WS, then REST); false = REST only.
    ws_orders: bool = True

    @model_validator(mode="after")
    def _url(self) -> FallbackConfig:
        if self.rest_url and not self.rest_url.startswith(("http://", "https://")):
            raise ValueError("rest_url: must be an http(s) URL")
        if self.ws_url and not self.ws_url.startswith(("ws://", "wss://")):
            raise ValueError("ws_url: must be a ws:// or wss:// URL")
        return self


class MdFallbackConfig(StrictModel):
    """`[venue.md_fallback]`: market data over Kraken spot WebSocket v2 while the FIX MD session
    is down (public channels: no credentials needed). Off by default, like the order fallback:
    a deployment chooses to depend on a second venue endpoint."""

    enabled: bool = False
    # Kraken spot WS v2 public URL; empty = the embedded simulator's spot WS face
    # (Kraken: wss://ws.kraken.com/v2).
    ws_url: str = ""
    # FIX MD unhealthy this long -> subscribe book and trade over WS. Unhealthy: logged out,
    # or logged on with a symbol the venue refuses or whose (re)subscribe goes unanswered
    # (the watchdog resubscribes a symbol silent for venue.md_stale_after_s).
    failover_after_s: float = Field(default=2.0, ge=0)
    # FIX MD healthy this long and every symbol's fresh FIX snapshot in -> back to FIX.
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
            raise ValueError("ws_url: must be a ws:// or wss:// URL")
        return self
