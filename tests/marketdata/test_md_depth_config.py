"""`venue.md_depth` is the MarketDepth (264) of every venue MD subscription: a value Kraken does
not serve, or one its checksum cannot verify, is refused when the config is loaded, naming the
file, the field and the values that are allowed (not found later as a 35=Y per symbol, or as a
book resubscribed forever because its checksum never matches)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config


@pytest.mark.parametrize("depth", [0, 1, 5, 9, 20, 50, 1001])
def test_an_md_depth_kraken_does_not_serve_or_cannot_verify_is_refused(
        tmp_path: Path, depth: int) -> None:
    p = tmp_path / "gw.toml"
    p.write_text(f"[venue]\nmd_depth = {depth}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    text = str(exc.value)
    assert str(p) in text and "venue.md_depth" in text, text
    assert "must be one of 10, 25, 100, 500, 1000" in text, text


@pytest.mark.parametrize("depth", [10, 25, 100, 500, 1000])
def test_every_depth_kraken_serves_and_can_verify_loads(tmp_path: Path, depth: int) -> None:
    p = tmp_path / "gw.toml"
    p.write_text(f"[venue]\nmd_depth = {depth}\n")
    assert load_config(p).venue.md_depth == depth
