"""tools/subscribe_events.py: the reference client resumes across a gateway restart without loss
or duplicates (also when it started live and the restart comes before its first event), reports
(then skips) events the gateway no longer retains, stops on an unreadable journal instead of
retrying it forever, and connects under mutual TLS."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest

from gateway._proto.fixgw.v1 import events_pb2
from gateway.events import EventLog, EventLogConfig, EventServer, EventServerConfig
from gateway.events import builders as b
from gateway.events.journal import MAGIC, RECORD_HEADER
from tests.tls.certs import make_pki, openssl_available

ROOT = Path(__file__).resolve().parents[2]


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "subscribe_events", ROOT / "tools" / "subscribe_events.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["subscribe_events"] = mod
    spec.loader.exec_module(mod)
    return mod


tool = _load_tool()


def ev(i: int) -> events_pb2.Event:
    return b.order_event(
        "accepted", source=b.EventSource.fix("S"), symbol="XBT/USD", cl_ord_id=f"C{i}"
    )


def _serve(tmp_path: Path) -> tuple[EventLogConfig, EventLog, EventServer, int]:
    """A journaled event log and its gRPC server on a free port."""
    cfg = EventLogConfig(journal_dir=tmp_path / "j")
    log = EventLog(cfg)
    server = EventServer(log, EventServerConfig(port=0))
    return cfg, log, server, server.start()


def test_follow_resumes_across_gateway_restart(tmp_path: Path) -> None:
    cfg, log, server, port = _serve(tmp_path)
    for i in range(1, 51):
        log.publish(ev(i))

    got: list[int] = []
    messages: list[str] = []
    request = events_pb2.SubscribeRequest(from_sequence=1)

    def run() -> None:
        for e in tool.follow(f"127.0.0.1:{port}", request, log=messages.append):
            got.append(e.sequence)
            if e.sequence >= 120:
                return

    t = threading.Thread(target=run, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while len(got) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(got) == 50

    # Gateway restart on the same port and journal; the client keeps retrying meanwhile.
    server.stop(0.5)
    log.close()
    log = EventLog(cfg)
    assert log.next_sequence == 51
    server = EventServer(log, EventServerConfig(port=port))
    try:
        server.start()
        for i in range(51, 121):
            log.publish(ev(i))
        t.join(20)
        assert got == list(range(1, 121))
        assert request.from_sequence == 121
        assert any("UNAVAILABLE" in m for m in messages)
    finally:
        server.stop(0)
        log.close()


def test_follow_reports_lost_events_and_continues() -> None:
    log = EventLog(EventLogConfig(ring_capacity=16))
    server = EventServer(log, EventServerConfig(port=0))
    port = server.start()
    try:
        for i in range(1, 101):
            log.publish(ev(i))
        messages: list[str] = []
        request = events_pb2.SubscribeRequest(from_sequence=1)
        got = []
        for e in tool.follow(f"127.0.0.1:{port}", request, log=messages.append):
            got.append(e.sequence)
            if e.sequence == 100:
                break
        assert got == list(range(85, 101))
        assert any("LOST events 1..84" in m for m in messages)
        with pytest.raises(tool.EventsLost):
            next(tool.follow(f"127.0.0.1:{port}", events_pb2.SubscribeRequest(from_sequence=2),
                             skip_lost=False, log=messages.append))  # fmt: skip
    finally:
        server.stop(0)
        log.close()


def test_cli_prints_json_and_keeps_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = EventLog()
    server = EventServer(log, EventServerConfig(port=0))
    port = server.start()
    try:
        for i in range(1, 6):
            log.publish(ev(i))
        log.publish(b.session_event("logon", source=b.EventSource.fix("S")))
        state = tmp_path / "pos"
        # README's spelling (--addr, --kind); --target and --kinds are the same options.
        args = ["--addr", f"127.0.0.1:{port}", "--from-oldest", "--kind", "order"]
        assert tool.main([*args, "--json", "--max-events", "3", "--state-file", str(state)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert [json.loads(line)["order"]["cl_ord_id"] for line in lines] == ["C1", "C2", "C3"]
        assert state.read_text().strip() == "4"
        # Restarted client continues from the state file, human-readable output.
        assert tool.main(["--target", f"127.0.0.1:{port}", "--max-events", "2",
                          "--state-file", str(state)]) == 0  # fmt: skip
        out = capsys.readouterr().out.splitlines()
        assert out[0].startswith("4 order fix:S XBT/USD")
        assert out[1].startswith("5 order")
    finally:
        server.stop(0)
        log.close()


def test_live_start_resumes_from_where_it_began_after_an_early_disconnect(tmp_path: Path) -> None:
    """Started live, the client takes GetLogInfo's next sequence as its position at once: a
    gateway restart before its first event must not make it skip what was published while it
    was away (resubscribing live again would start after those events)."""
    cfg, log, server, port = _serve(tmp_path)
    for i in range(1, 6):
        log.publish(ev(i))
    got: list[int] = []
    request = events_pb2.SubscribeRequest()  # from_sequence 0: live

    def run() -> None:
        for e in tool.follow(f"127.0.0.1:{port}", request, log=lambda m: None,
                             max_backoff_s=0.5):
            got.append(e.sequence)
            if e.sequence >= 10:
                return

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while request.from_sequence == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert request.from_sequence == 6  # a position before any event arrived
        server.stop(0.5)
        log.close()
        log = EventLog(cfg)
        for i in range(6, 9):  # published while the client could not be subscribed
            log.publish(ev(i))
        server = EventServer(log, EventServerConfig(port=port))
        server.start()
        for i in range(9, 11):
            log.publish(ev(i))
        t.join(20)
        assert got == list(range(6, 11))
    finally:
        server.stop(0)
        log.close()


def _corrupt_record(journal_dir: Path, sequence: int) -> None:
    """Flip one payload byte of `sequence`'s record in the (only) segment: its CRC fails."""
    (seg,) = sorted(journal_dir.glob("*.evj"))
    data = bytearray(seg.read_bytes())
    pos = len(MAGIC)
    while True:
        plen, _blen, _crc, seq = RECORD_HEADER.unpack_from(data, pos)
        if seq == sequence:
            data[pos + RECORD_HEADER.size] ^= 0xFF
            seg.write_bytes(bytes(data))
            return
        pos += RECORD_HEADER.size + plen


def test_data_loss_stops_the_client_instead_of_retrying_forever(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = EventLog(EventLogConfig(journal_dir=tmp_path / "j", ring_capacity=16))
    server = EventServer(log, EventServerConfig(port=0))
    port = server.start()
    try:
        for i in range(1, 101):
            log.publish(ev(i))
        assert log.flush()
        _corrupt_record(tmp_path / "j", 10)  # long out of the 16-event ring: read from disk
        messages: list[str] = []

        def note(msg: str) -> None:
            messages.append(msg)
            if len(messages) > 3:
                raise AssertionError(f"DATA_LOSS retried: {messages}")

        with pytest.raises(tool.EventsUnreadable) as exc:
            for _ in tool.follow(f"127.0.0.1:{port}", events_pb2.SubscribeRequest(
                    from_sequence=1), log=note, max_backoff_s=0.05):
                pass
        assert exc.value.sequence == 10
        rc = tool.main(["--addr", f"127.0.0.1:{port}", "--from-sequence", "1"])
        err = capsys.readouterr().err
        assert rc == 3
        assert "DATA_LOSS" in err and "cannot read event 10" in err
    finally:
        server.stop(0)
        log.close()


@pytest.mark.skipif(not openssl_available(), reason="needs the openssl CLI")
def test_cli_presents_a_client_certificate_under_mutual_tls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pki = make_pki(tmp_path / "pki")
    log = EventLog()
    server = EventServer(log, EventServerConfig(
        port=0, tls_cert_file=pki.server_cert, tls_key_file=pki.server_key,
        tls_client_ca_file=pki.ca))
    port = server.start()
    try:
        for i in range(1, 4):
            log.publish(ev(i))
        assert tool.main(["--addr", f"127.0.0.1:{port}", "--tls-ca", str(pki.ca),
                          "--cert-file", str(pki.client_cert), "--key-file",
                          str(pki.client_key), "--from-sequence", "1", "--max-events", "3",
                          "--json"]) == 0  # fmt: skip
        lines = capsys.readouterr().out.splitlines()
        assert [json.loads(line)["order"]["cl_ord_id"] for line in lines] == ["C1", "C2", "C3"]
        with pytest.raises(SystemExit):  # a certificate without its key is a usage error
            tool.main(["--addr", f"127.0.0.1:{port}", "--cert-file", str(pki.client_cert)])
    finally:
        server.stop(0)
        log.close()


def test_data_loss_for_a_lost_range_names_where_to_skip_to(tmp_path: Path) -> None:
    """A gap the gateway left after its event process died with a failed journal: the client
    stops (no retry loop) and says which sequence skipping it means starting from."""
    jdir = tmp_path / "j"
    log = EventLog(EventLogConfig(journal_dir=jdir, ring_capacity=16))
    for i in range(1, 11):
        log.publish(ev(i))
    log.close()
    log = EventLog(EventLogConfig(journal_dir=jdir, ring_capacity=16, min_next_sequence=21))
    server = EventServer(log, EventServerConfig(port=0))
    port = server.start()
    try:
        log.publish(ev(21))
        assert log.flush()
        with pytest.raises(tool.EventsUnreadable) as exc:
            for _ in tool.follow(f"127.0.0.1:{port}", events_pb2.SubscribeRequest(
                    from_sequence=5), log=lambda _msg: None, max_backoff_s=0.05):
                pass
        assert (exc.value.sequence, exc.value.gap_end) == (11, 21)
        assert "--from-sequence 21" in str(exc.value)
    finally:
        server.stop(0)
        log.close()
