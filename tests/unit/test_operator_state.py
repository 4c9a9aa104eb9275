"""Operator holds kept across restarts (gateway/server/operator_state.py)."""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from gateway.server.operator_state import KillSwitchFile, SessionHold, SessionHolds


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


def _disk_steps(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What reaches the disk, in order: each fsync (of a file or a directory), rename, unlink.
    The real calls still run; this only records them."""
    steps: list[str] = []
    real_fsync, real_replace, real_unlink = os.fsync, os.replace, Path.unlink

    def fsync(fd: int) -> None:
        steps.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        steps.append("rename")
        real_replace(src, dst)

    def unlink(self: Path, missing_ok: bool = False) -> None:
        steps.append("unlink")
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(Path, "unlink", unlink)
    return steps


def test_a_write_is_synced_renamed_and_its_directory_synced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A power cut right after "kill switch on" must not lose the file: the data is synced
    before the rename, and the directory after it (and after the unlink of "off")."""
    ks = KillSwitchFile(tmp_path / "kill-switch.json")
    steps = _disk_steps(monkeypatch)
    ks.save("operator:ops")
    assert steps == ["fsync file", "rename", "fsync dir"]
    steps.clear()
    ks.clear()
    assert steps == ["unlink", "fsync dir"]
    steps.clear()
    holds = SessionHolds(tmp_path / "session-holds.json")
    holds.hold("FIX.4.4:FIXGW->OMS", _hold("OMS"))
    holds.release("FIX.4.4:FIXGW->OMS")
    assert steps == ["fsync file", "rename", "fsync dir", "unlink", "fsync dir"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temporary file left


def test_concurrent_kill_switch_writes_do_not_collide(tmp_path: Path) -> None:
    """Two operators at once (admin calls run on a thread pool): each write has its own
    temporary file, so none renames away another's and fails."""
    ks = KillSwitchFile(tmp_path / "kill-switch.json")
    errors: list[BaseException] = []

    def flip(n: int) -> None:
        try:
            for i in range(200):
                ks.save(f"operator:{n}-{i}")
                if i % 3 == 0:
                    ks.clear()
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=flip, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ks.save("operator:last")
    assert ks.load() is not None and "operator:last" in (ks.load() or "")
    assert [p.name for p in tmp_path.iterdir()] == ["kill-switch.json"]
