"""Operator holds kept across restarts (gateway/server/operator_state.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.server.operator_state import SessionHold, SessionHolds


def _hold(target: str, reason: str = "maintenance") -> SessionHold:
    return SessionHold("FIX.4.4", "FIXGW", target, "operator:ops", "2026-11-27T06:00:00Z",
                       reason)


def test_holds_are_read_back_and_the_file_goes_with_the_last_release(tmp_path: Path) -> None:
    path = tmp_path / "session-holds.json"
    holds = SessionHolds(path)
    assert holds.load() == []
    holds.hold("FIX.4.4:FIXGW->KRAKEN-MD", _hold("KRAKEN-MD"))
    holds.hold("FIX.4.4:FIXGW->OMS", _hold("OMS", "desk closed"))
    again = SessionHolds(path).load()
    assert sorted(h.name for h in again) == ["FIXGW->KRAKEN-MD", "FIXGW->OMS"]
    assert {h.reason for h in again} == {"maintenance", "desk closed"}
    holds.release("FIX.4.4:FIXGW->KRAKEN-MD")
    assert [h.name for h in SessionHolds(path).load()] == ["FIXGW->OMS"]
    holds.release("FIX.4.4:FIXGW->OMS")
    assert not path.exists()
    holds.release("FIX.4.4:FIXGW->OMS")  # releasing what is not held changes nothing


def test_an_unreadable_file_holds_nothing_and_says_so(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "session-holds.json"
    path.write_text('{"FIX.4.4:FIXGW->OMS": {"by": "x"}}\n')
    with caplog.at_level(logging.ERROR, "gateway.server.operator_state"):
        assert SessionHolds(path).load() == []
    assert f"{path} unreadable" in caplog.text
