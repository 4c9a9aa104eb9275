"""`fixgw --version` and `fixgwctl --version`: the installed build and the engines under it."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata

import pytest

from tests.procs import REPO


@pytest.mark.parametrize("module,prog", [("gateway.cli.main", "fixgw"),
                                         ("gateway.cli.ctl", "fixgwctl")])
def test_version_names_fixgw_quickfix_grpcio_and_python(module: str, prog: str) -> None:
    r = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True,
                       text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    want = (f"{prog} {metadata.version('fixgw')} (quickfix {metadata.version('quickfix')}, "
            f"grpcio {metadata.version('grpcio')}, Python {sys.version.split()[0]})")
    assert line == want
    assert re.fullmatch(r"\S+ \d+\.\d+\.\d+ \(quickfix \d+\.\d+\.\d+, grpcio \S+, "
                        r"Python \d+\.\d+\.\d+\)", line)
