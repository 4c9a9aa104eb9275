"""The WS client's log while its endpoint is down: one outage, not a line per attempt.

A real client against a loopback port where nothing listens, retrying every few milliseconds,
on a fake clock that moves 30 s at each failed attempt (the client reads it once per
failure), so 120 attempts are an hour of outage; then the simulator's spot WS face starts on
that port and the client connects."""

from __future__ import annotations

import logging
import re

import pytest

from gateway.transports.kraken_ws import KrakenWsPublic
from gateway.venue_sim.accounts import Accounts
from gateway.venue_sim.engine import MatchingEngine
from gateway.venue_sim.spot_ws import SpotWsServer
from tests.conftest import wait_until
from tests.procs import free_port

BTC = "BTC/USD"
STEP_S = 30.0  # fake seconds per failed attempt
# The failed attempts whose reminder is due: the first line at attempt 1 (t = 30), reminders
# 60 s later (attempt 3), then 120, 240, 480 s apart, then every 900 s (30 attempts).
REMINDER_ATTEMPTS = (3, 7, 15, 31, 61, 91, 121, 151, 181)


class StepClock:
    """Monotonic seconds that move STEP_S at each read."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += STEP_S
        return self.now


def test_an_unreachable_endpoint_is_one_warning_rare_reminders_and_one_line_when_back(
        caplog: pytest.LogCaptureFixture) -> None:
    """An hour (120+ attempts) of connection refused: one warning with the error, a reminder
    at the Episode schedule saying how long and how many attempts, every attempt at debug
    (the old client logged a warning per attempt: 120+); then the endpoint comes up and one
    line says the client is connected again and after how long."""
    caplog.set_level(logging.DEBUG, "gateway.transports.kraken_ws")
    port = free_port()
    url = f"ws://127.0.0.1:{port}/v2"
    client = KrakenWsPublic(url, [BTC], backoff_initial=0.001, backoff_max=0.002,
                            open_timeout=2.0, clock=StepClock())
    server = None
    client.start()
    try:
        wait_until(lambda: client.failed_attempts >= 120, timeout=60, what="an hour of attempts")
        server = SpotWsServer(MatchingEngine(seed=3), Accounts(), port=port,
                              heartbeat_interval=0.2)
        server.start()
        wait_until(lambda: client.connected, timeout=20, what="the connection")
        failed = client.failed_attempts
    finally:
        client.stop()
        if server is not None:
            server.stop()

    lines = [(r.levelno, r.getMessage()) for r in caplog.records
             if r.name == "gateway.transports.kraken_ws"]
    warned = [text for level, text in lines if level >= logging.WARNING]
    assert re.fullmatch(rf"{re.escape(url)}: connection failed: .+; retrying with backoff \(at "
                        r"most 0\.002s apart\), each failed attempt logged at debug level, a "
                        r"reminder now and then", warned[0]), warned[0]
    reminders = [a for a in REMINDER_ATTEMPTS if a <= failed]
    assert len(warned) == 1 + len(reminders) + 1, warned
    for attempt, line in zip(reminders, warned[1:-1], strict=True):
        lasted = (attempt - 1) * STEP_S
        minutes, secs = divmod(int(lasted), 60)
        text = (f"{lasted:.1f} s" if lasted < 120 else
                f"{minutes // 60} h {minutes % 60:02d} min {secs:02d} s" if minutes >= 60 else
                f"{minutes} min {secs:02d} s")
        assert line.startswith(f"{url}: still no connection after {text} ({attempt} attempts "
                               f"failed, the last: "), (attempt, line)
    got = re.fullmatch(rf"{re.escape(url)}: connected again after 1 h (\d\d) min (\d\d) s "
                       rf"without a connection \((\d+) attempts failed\)", warned[-1])
    assert got is not None, warned[-1]
    assert int(got[3]) == failed
    debug = [text for level, text in lines if level == logging.DEBUG
             and text.startswith(f"{url}: connection failed again (attempt ")]
    assert len(debug) == failed - 1
