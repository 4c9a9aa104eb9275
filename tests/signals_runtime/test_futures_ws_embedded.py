"""`fixgw run` with its embedded venue and no futures WS configuration: the feed's URL is derived
from the simulator's ready line (`futures_ws`), the gateway subscribes every configured perp,
and the snapshots' mark ages show the feed's one-second rhythm."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc

from gateway._proto.fixgw.v1 import signals_pb2, signals_pb2_grpc
from gateway.config.model import Config
from tests.procs import REPO, free_port


def _wait_for(path: Path, pattern: str, timeout: float) -> re.Match[str]:
    """The first match of ``pattern`` in the file a child process writes its output to."""
    deadline = time.monotonic() + timeout
    while True:
        m = re.search(pattern, path.read_text(errors="replace"))
        if m:
            return m
        if time.monotonic() > deadline:
            raise AssertionError(f"no {pattern!r} in {path.name}:\n{path.read_text()[-3000:]}")
        time.sleep(0.1)


def test_embedded_venue_feeds_the_gateway_over_futures_ws(tmp_path: Path) -> None:
    grpc_port = free_port()
    cfg = tmp_path / "gw.toml"
    # Hourly REST polling: fresh marks can only come from the feed.
    toml = "[venue.futures]\npoll_interval_s = 3600\n"
    if "metrics" in Config.model_fields:  # a free metrics port: parallel gateways never clash
        toml += "[metrics]\nport = 0\n"
    cfg.write_text(toml)
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("wb") as o, err.open("wb") as e:
        gw = subprocess.Popen([sys.executable, "-m", "gateway.cli.main", "run", "--config",
                               str(cfg), "--oms-port", str(free_port()), "--data-dir",
                               str(tmp_path / "var"), "--grpc-port", str(grpc_port),
                               "--admin-port", str(free_port())], stdout=o, stderr=e, cwd=REPO)
    try:
        _wait_for(out, r"fixgw ready", timeout=60)
        port = _wait_for(err, r"futures WS ws://127\.0\.0\.1:(\d+)/ws/v1", 10).group(1)
        _wait_for(err, rf"futures WS ws://127\.0\.0\.1:{port}/ws/v1: connected, ticker "
                  r"subscribed for PF_XBTUSD, PF_ARBUSD", timeout=20)
        time.sleep(2.5)  # past the start-up REST poll: from here on only the feed moves marks
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as ch:
            stub = signals_pb2_grpc.SignalServiceStub(ch)
            computed = []
            for _ in range(3):
                snap = stub.Get(signals_pb2.GetSignalRequest(symbol="PF_XBTUSD"), timeout=5)
                assert float(snap.ages.mark_s) < 1.5
                computed.append(snap.computed_at.ToMilliseconds())
                time.sleep(1.2)
            assert computed == sorted(computed) and len(set(computed)) == 3
            assert time.time() - computed[-1] / 1000 < 2.0
    finally:
        gw.send_signal(signal.SIGTERM)
        code = gw.wait(timeout=30)
    assert code == 0
