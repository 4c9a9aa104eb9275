"""The data directory is created private, and a shared one is named at start
(gateway/server/data_dir.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.server.data_dir import prepare_data_dir


def test_a_new_data_dir_is_private_and_its_parents_are_made(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    path = tmp_path / "a" / "var"
    with caplog.at_level(logging.WARNING, "gateway.server.data_dir"):
        assert prepare_data_dir(path) == path
    assert path.stat().st_mode & 0o777 == 0o700
    assert not caplog.records


def test_an_existing_shared_data_dir_is_kept_and_named(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "var"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    with caplog.at_level(logging.WARNING, "gateway.server.data_dir"):
        prepare_data_dir(path)
    assert path.stat().st_mode & 0o777 == 0o755  # an operator's choice is not undone
    assert f"data directory {path} has mode 755" in caplog.text
    assert f"chmod 700 {path}" in caplog.text
