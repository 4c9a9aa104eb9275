"""`[metrics]` and `fixgw run --metrics-port` as ops use them: a bad section fails with the file,
the field and the problem; port 0 takes a free port and the ready line names it (a port already
in use: tests/integration/test_port_in_use.py). The gateway runs without a venue here (nothing
listens on its venue ports): the metrics listener does not depend on one."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from gateway.config.loader import ConfigError, load_config
from tests.procs import REPO, Lines, venue_less_config


def test_bad_metrics_section_names_file_and_field(tmp_path: Path) -> None:
    cfg = venue_less_config(tmp_path, 'prot = 9464\nport = "ninety"')
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    text = str(err.value)
    assert f"{cfg}: metrics.prot: unknown field" in text
    assert f"{cfg}: metrics.port: Input should be a valid integer" in text
    assert load_config(venue_less_config(tmp_path, metrics="")).metrics.port == 9464
    assert load_config(venue_less_config(tmp_path, metrics=""),
                       {"metrics.port": 0}).metrics.port == 0


def test_metrics_port_zero_is_ephemeral_and_printed(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli.main", "run", "--config",
                             str(venue_less_config(tmp_path)), "--metrics-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        out = Lines(proc.stdout)
        err = Lines(proc.stderr)
        try:
            m = out.wait_for(r"fixgw ready: .*metrics=127\.0\.0\.1:(\d+)", timeout=60)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{err.text()}") from None
        port = int(m.group(1))
        assert port not in (0, 9464)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            body = resp.read().decode()
        # No venue: the venue sessions exist and are down.
        assert 'fixgw_session_up{role="venue-trading",session="FIXGW->KRAKEN-TRD"} 0.0' in body
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
