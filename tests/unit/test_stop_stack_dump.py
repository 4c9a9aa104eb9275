"""A gateway stop that hangs dumps every thread's stack (gateway.server.runner), and one that
does not, dumps nothing."""

from __future__ import annotations

import time
from pathlib import Path

from gateway.server.runner import stop_or_dump_stacks


def _stuck_in_shutdown() -> None:
    time.sleep(0.6)


def test_a_slow_stop_dumps_the_stacks_and_still_finishes(tmp_path: Path) -> None:
    out_path = tmp_path / "stderr"
    with out_path.open("w") as out:
        stop_or_dump_stacks(_stuck_in_shutdown, 0.2, out)
    text = out_path.read_text()
    assert "Timeout" in text and "most recent call first" in text
    assert "_stuck_in_shutdown" in text, text


def test_a_quick_stop_dumps_nothing(tmp_path: Path) -> None:
    out_path = tmp_path / "stderr"
    with out_path.open("w") as out:
        stop_or_dump_stacks(lambda: None, 0.2, out)
        time.sleep(0.4)  # past the deadline: the dump was cancelled, not merely not yet due
    assert out_path.read_text() == ""
