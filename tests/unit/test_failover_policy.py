"""TransportPolicy: when order flow moves between FIX and REST (no processes, a fake clock)."""

from __future__ import annotations

import logging

import pytest

from gateway.routing.failover import TransportPolicy


class World:
    def __init__(self) -> None:
        self.now = 0.0
        self.fix_up = True
        self.rest_up = True
        self.reconciled = True
        self.switches: list[tuple[str, str, bool]] = []
        self.reconciles = 0

    def reconcile(self) -> bool:
        self.reconciles += 1
        return self.reconciled

    def policy(self) -> TransportPolicy:
        return TransportPolicy(
            lambda: self.fix_up, lambda: self.rest_up, failover_after_s=2, failback_after_s=5,
            on_switch=lambda a, b, _r, auto: self.switches.append((a, b, auto)),
            before_failback=self.reconcile, clock=lambda: self.now)


def test_fails_over_after_the_delay_and_back_after_stable_fix_and_reconcile() -> None:
    w = World()
    p = w.policy()
    assert p.evaluate() == "fix"
    w.fix_up = False
    w.now = 1.0
    assert p.evaluate() == "fix"  # not down long enough
    w.now = 3.1
    assert p.evaluate() == "rest" and p.use_rest()
    w.fix_up = True
    w.now = 4.0
    assert p.evaluate() == "rest"
    w.fix_up = False  # flaps: the stability clock restarts
    w.now = 5.0
    assert p.evaluate() == "rest"
    w.fix_up = True
    w.now = 6.0
    assert p.evaluate() == "rest"
    w.now = 10.5
    assert p.evaluate() == "rest" and w.reconciles == 0
    w.now = 11.1
    assert p.evaluate() == "fix" and w.reconciles == 1
    assert w.switches == [("fix", "rest", True), ("rest", "fix", True)]


def test_the_failover_reason_says_why_fix_is_down() -> None:
    """The venue's daily rollover, say: the switch's log line and event name it."""
    w, reasons = World(), []
    p = TransportPolicy(lambda: w.fix_up, lambda: True, failover_after_s=2, failback_after_s=5,
                        on_switch=lambda _a, _b, reason, _auto: reasons.append(reason),
                        clock=lambda: w.now,
                        why_fix_down=lambda: " (the venue's daily rollover, until 22:00:30 UTC)")
    w.fix_up, w.now = False, 0.5
    assert p.evaluate() == "fix"
    w.now = 3.0
    assert p.evaluate() == "rest"
    assert reasons == ["FIX trading session down for 2.5s (the venue's daily rollover, until "
                       "22:00:30 UTC)"]


def test_no_failover_without_rest_and_failback_waits_for_reconcile() -> None:
    w = World()
    p = w.policy()
    p.evaluate()
    w.rest_up = False
    w.fix_up = False
    p.evaluate()
    w.now = 10
    assert p.evaluate() == "fix"  # REST unreachable: nowhere to go
    w.rest_up = True
    assert p.evaluate() == "rest"
    w.fix_up = True
    p.evaluate()
    w.reconciled = False
    w.now = 20
    assert p.evaluate() == "rest"  # REST is up but the orders are not reconciled yet
    w.reconciled = True
    assert p.evaluate() == "fix"


def test_force_pins_the_transport() -> None:
    w = World()
    p = w.policy()
    p.set_force("rest")
    assert p.use_rest() and w.switches == [("fix", "rest", False)]
    w.now = 100
    assert p.evaluate() == "rest"  # FIX healthy, but pinned
    p.set_force("auto")
    assert p.evaluate() == "fix" and w.reconciles == 1


def test_postponed_failback_is_logged_once_and_a_silent_policy_logs_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fixgw.routing.failover")
    w = World()
    p = w.policy()
    w.fix_up = False
    p.evaluate()
    w.now = 3.0
    assert p.evaluate() == "rest"
    w.fix_up, w.reconciled = True, False
    w.now = 4.0
    p.evaluate()
    for t in (9.0, 9.5, 10.0):  # checked every half second while reconciliation lags
        w.now = t
        assert p.evaluate() == "rest"
    postponed = [r for r in caplog.records if "postponed" in r.getMessage()]
    assert len(postponed) == 1
    w.reconciled = True
    assert p.evaluate() == "fix"
    caplog.clear()
    quiet = TransportPolicy(lambda: False, lambda: True, failover_after_s=0,
                            failback_after_s=0, on_switch=lambda *_: None, logger=None)
    quiet.set_force("rest")
    assert quiet.evaluate() == "rest" and not caplog.records
