"""The FIX message log rotates by size and keeps the configured number of old files."""

from __future__ import annotations

from pathlib import Path

from gateway.config import load_config
from gateway.fix.application import message_log
from gateway.server.gateway import Gateway, VenueEndpoints


def test_message_log_rotates_at_max_size(tmp_path: Path) -> None:
    c = load_config(None, {"gateway.data_dir": str(tmp_path), "gateway.fix_message_log": True,
                           "gateway.fix_message_log_max_mb": 1,
                           "gateway.fix_message_log_backups": 2})
    gw = Gateway(c, VenueEndpoints("127.0.0.1", 1111, "127.0.0.1", 2222), None)
    gw._start_message_log()
    try:
        line = "8=FIX.4.4|35=0|" + "x" * 1000
        for _ in range(3500):  # ~3.5 MB: three rotations, two backups kept
            message_log.info(line)
    finally:
        gw._stop_message_log()
        gw.store.close()
    logs = sorted(p.name for p in (tmp_path / "log").iterdir())
    assert logs == ["fix-messages.log", "fix-messages.log.1", "fix-messages.log.2"]
    assert all((tmp_path / "log" / n).stat().st_size <= 1024 * 1024 for n in logs)
