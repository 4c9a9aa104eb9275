"""The TLS bridges over loopback: client bridge -> server bridge -> a plain echo server, with a
real PKI made by tests/tls/certs.py, and finally a real QuickFIX session through both bridges.

What matters for FIX, and is therefore asserted with a time bound, is that every failure and
every close on one side shows up on the other side promptly as a disconnect.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import ssl
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import quickfix as fix

from gateway.fix.settings import free_port
from gateway.transports.tls_bridge import (
    TlsClientBridge,
    TlsServerBridge,
    client_context,
    server_context,
)
from tests.tls.certs import Pki, make_pki, openssl_available

PROMPT_S = 2.0          # "promptly": a disconnect must be visible within this
LOGGER = "fixgw.tls"


# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if not openssl_available():
        pytest.skip("the openssl command line is needed to make the test PKI")
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(autouse=True)
def _bridge_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)


class EchoServer:
    """Plain TCP echo server standing in for the QuickFIX acceptor (or the OMS' peer)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.accepted = 0
        self.eofs = 0
        self.conns: list[socket.socket] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._cond:
                self.accepted += 1
                self.conns.append(conn)
                self._cond.notify_all()
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        try:
            while data := conn.recv(1 << 16):
                conn.sendall(data)
        except OSError:
            return
        with self._cond:
            self.eofs += 1
            self._cond.notify_all()
        conn.close()

    def wait(self, attr: str, n: int, timeout: float = PROMPT_S) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: getattr(self, attr) >= n, timeout), \
                f"echo server: {attr}={getattr(self, attr)} < {n} after {timeout} s"

    def close_connections(self) -> None:
        with self._cond:
            for c in self.conns:
                with suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.close_connections()
        with suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)   # wakes the accept() (close alone won't)
        self.listener.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    e = EchoServer()
    yield e
    e.close()


@contextmanager
def running(*bridges: TlsClientBridge | TlsServerBridge) -> Iterator[None]:
    for b in bridges:
        b.start()
    try:
        yield
    finally:
        for b in reversed(bridges):
            b.stop()


def server_bridge(pki: Pki, echo: EchoServer, *, client_ca: Path | None = None,
                  allow: tuple[str, ...] = ("127.0.0.1",),
                  ctx: ssl.SSLContext | None = None, **kw: float) -> TlsServerBridge:
    ctx = ctx or server_context(pki.server_cert, pki.server_key, client_ca_file=client_ca)
    return TlsServerBridge("127.0.0.1", 0, ctx, downstream_port=echo.port,
                           allow_addresses=allow, **kw)  # type: ignore[arg-type]


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def round_trip(s: socket.socket, payload: bytes) -> bytes:
    s.sendall(payload)
    got = bytearray()
    while len(got) < len(payload):
        chunk = s.recv(1 << 16)
        assert chunk, f"connection closed after {len(got)} of {len(payload)} bytes"
        got += chunk
    return bytes(got)


def wait_closed(s: socket.socket, timeout: float = PROMPT_S) -> float:
    """Read until the peer's close (EOF or reset); the seconds it took. Fails past timeout."""
    s.settimeout(timeout)
    t0 = time.monotonic()
    try:
        while s.recv(1 << 16):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"socket still open after {timeout} s")
    return time.monotonic() - t0


def wait_log(caplog: pytest.LogCaptureFixture, pattern: str,
             timeout: float = PROMPT_S) -> logging.LogRecord:
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        for r in caplog.records:
            if r.name == LOGGER and rx.search(r.getMessage()):
                return r
        if time.monotonic() > deadline:
            lines = "\n".join(r.getMessage() for r in caplog.records if r.name == LOGGER)
            pytest.fail(f"no log line matching {pattern!r}; bridge logged:\n{lines}")
        time.sleep(0.01)


# --------------------------------------------------------------------------------------------
# (1) bytes both ways, large payloads, close propagation
# --------------------------------------------------------------------------------------------

def test_round_trip_small_large_and_concurrent(pki: Pki, echo: EchoServer) -> None:
    sb = server_bridge(pki, echo)
    cb = TlsClientBridge("127.0.0.1", sb.port, client_context(ca_file=pki.ca))
    with running(sb, cb):
        with connect(cb.local_port) as s:
            assert round_trip(s, b"8=FIX.4.4\x019=5\x0135=0\x0110=000\x01") == \
                b"8=FIX.4.4\x019=5\x0135=0\x0110=000\x01"
            for i in range(200):                         # many small writes, in order
                assert round_trip(s, b"%06d" % i) == b"%06d" % i
            big = os.urandom(8 * 1024 * 1024)            # both directions at once
            sender = threading.Thread(target=s.sendall, args=(big,))
            sender.start()
            got = bytearray()
            while len(got) < len(big):
                chunk = s.recv(1 << 20)
                assert chunk
                got += chunk
            sender.join()
            assert hashlib.sha256(got).digest() == hashlib.sha256(big).digest()

        # Several connections at once, each its own pair of sockets.
        socks = [connect(cb.local_port) for _ in range(5)]
        payloads = [os.urandom(256 * 1024) for _ in socks]
        results: list[bytes] = [b""] * len(socks)

        def one(i: int) -> None:
            results[i] = round_trip(socks[i], payloads[i])

        workers = [threading.Thread(target=one, args=(i,)) for i in range(len(socks))]
        for w in workers:
            w.start()
        for w in workers:
            w.join(10)
        assert results == payloads
        for s in socks:
            s.close()


def test_stalled_reader_loses_nothing(pki: Pki, echo: EchoServer) -> None:
    """The reader stops reading for a while (the far end keeps echoing): the bridges hold
    remainders and resume; nothing is lost or reordered. (Loopback buffers autotune to tens
    of MB, so whether each hop blocks is proven at the pump level, below.)"""
    sb = server_bridge(pki, echo)
    cb = TlsClientBridge("127.0.0.1", sb.port, client_context(ca_file=pki.ca))
    with running(sb, cb), socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)   # a slow, small reader
        s.connect(("127.0.0.1", cb.local_port))
        big = os.urandom(12 * 1024 * 1024)
        sender = threading.Thread(target=s.sendall, args=(big,))
        sender.start()
        time.sleep(0.3)                                 # stalled reader
        got = bytearray()
        while len(got) < len(big):
            chunk = s.recv(1 << 20)
            assert chunk
            got += chunk
        sender.join(5)
        assert hashlib.sha256(got).digest() == hashlib.sha256(big).digest()


def _small_buffers(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)


def test_pump_back_pressure_both_directions(pki: Pki) -> None:
    """White-box: one pump between a plain socket pair and a TLS connection whose kernel
    buffers are small, so a stalled reader on either side really blocks the writer on the
    other side (the pump holds its remainder and stops reading its source), and everything
    arrives intact once the reader resumes."""
    from gateway.transports.tls_bridge import _Pump

    plain_pump, plain_end = socket.socketpair()
    listener = socket.create_server(("127.0.0.1", 0))
    tls_end_raw = socket.socket()
    _small_buffers(tls_end_raw)
    tls_end_raw.connect(listener.getsockname())
    tls_pump_raw, _ = listener.accept()
    listener.close()
    _small_buffers(tls_pump_raw)
    accepted: list[ssl.SSLSocket] = []
    server_ctx = server_context(pki.server_cert, pki.server_key)
    hs = threading.Thread(target=lambda: accepted.append(
        server_ctx.wrap_socket(tls_pump_raw, server_side=True)))
    hs.start()
    tls_end = client_context(ca_file=pki.ca).wrap_socket(tls_end_raw, server_hostname="localhost")
    hs.join(5)
    tls_pump = accepted[0]
    plain_pump.setblocking(False)
    tls_pump.setblocking(False)
    wake_r, wake_w = os.pipe()
    pump = _Pump(plain_pump, tls_pump, wake_r)
    result: list[str] = []
    runner = threading.Thread(target=lambda: result.append(pump.run()))
    runner.start()
    try:
        up, down = os.urandom(8 * 1024 * 1024), os.urandom(8 * 1024 * 1024)
        w_up = threading.Thread(target=plain_end.sendall, args=(up,))
        w_down = threading.Thread(target=tls_end.sendall, args=(down,))
        w_up.start()
        w_down.start()
        time.sleep(0.3)                                  # both readers stalled
        assert w_up.is_alive() and w_down.is_alive(), "writers should be blocked"
        assert pump.up_pending is not None and pump.down_pending is not None

        got_up = bytearray()
        got_down = bytearray()

        def read_all(sock: socket.socket, into: bytearray, n: int) -> None:
            while len(into) < n:
                chunk = sock.recv(1 << 16)
                assert chunk
                into += chunk

        readers = [threading.Thread(target=read_all, args=(tls_end, got_up, len(up))),
                   threading.Thread(target=read_all, args=(plain_end, got_down, len(down)))]
        for t in readers:
            t.start()
        for t in (*readers, w_up, w_down):
            t.join(10)
        assert bytes(got_up) == up and bytes(got_down) == down
        # The pump counts a chunk after its send returns, which may be after the reader got it.
        deadline = time.monotonic() + 5
        while ((pump.up_bytes, pump.down_bytes) != (len(up), len(down))
               and time.monotonic() < deadline):
            time.sleep(0.01)
        assert pump.up_bytes == len(up) and pump.down_bytes == len(down)
    finally:
        os.write(wake_w, b"x")
        runner.join(5)
        for sock in (plain_pump, plain_end, tls_pump, tls_end):
            sock.close()
        os.close(wake_r)
        os.close(wake_w)
    assert result == ["bridge stopped"]


def test_burst_of_small_messages_from_far_end(pki: Pki, echo: EchoServer) -> None:
    """Many TLS records arriving back to back (several per TCP segment) are all delivered
    without waiting for more traffic."""
    sb = server_bridge(pki, echo)
    cb = TlsClientBridge("127.0.0.1", sb.port, client_context(ca_file=pki.ca))
    with running(sb, cb), connect(cb.local_port) as s:
        assert round_trip(s, b"x") == b"x"
        echo.wait("accepted", 1)
        far = echo.conns[-1]
        msgs = [b"8=FIX.4.4\x0135=8\x0111=%05d\x01" % i for i in range(2000)]
        for m in msgs:
            far.sendall(m)                                # one TLS record each, back to back
        want = b"".join(msgs)
        s.settimeout(PROMPT_S)
        got = bytearray()
        while len(got) < len(want):
            got += s.recv(1 << 16)
        assert bytes(got) == want


def test_client_close_propagates_to_the_far_end(pki: Pki, echo: EchoServer,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    sb = server_bridge(pki, echo)
    cb = TlsClientBridge("127.0.0.1", sb.port, client_context(ca_file=pki.ca))
    with running(sb, cb), connect(cb.local_port) as s:
        assert round_trip(s, b"logout") == b"logout"
        s.shutdown(socket.SHUT_WR)                    # half-close by QuickFIX ...
        echo.wait("eofs", 1)                          # ... is seen by the far end ...
        assert wait_closed(s) < PROMPT_S              # ... and the pair is closed
        wait_log(caplog, r"TLS to venue 127\.0\.0\.1:\d+ for .* closed: closed by plain peer "
                         r"\(sent 6 B, received 6 B\)")
        wait_log(caplog, r"TLS from 127\.0\.0\.1:\d+ closed: closed by TLS peer")


def test_far_end_close_propagates_to_quickfix_side(pki: Pki, echo: EchoServer,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    sb = server_bridge(pki, echo)
    cb = TlsClientBridge("127.0.0.1", sb.port, client_context(ca_file=pki.ca))
    with running(sb, cb), connect(cb.local_port) as s:
        assert round_trip(s, b"hello") == b"hello"
        echo.close_connections()                      # the acceptor drops the session
        assert wait_closed(s) < PROMPT_S
        wait_log(caplog, r"TLS from .* closed: closed by plain peer")
        wait_log(caplog, r"TLS to venue .* closed: closed by TLS peer")


def test_stop_closes_live_connections(pki: Pki, echo: EchoServer) -> None:
    sb = server_bridge(pki, echo)
    cb = TlsClientBridge("127.0.0.1", sb.port, client_context(ca_file=pki.ca))
    sb.start()
    cb.start()
    try:
        s = connect(cb.local_port)
        assert round_trip(s, b"x") == b"x"
        t0 = time.monotonic()
        cb.stop()
        assert time.monotonic() - t0 < PROMPT_S
        assert wait_closed(s) < PROMPT_S
        echo.wait("eofs", 1)                          # the far end saw it too
        s.close()
        with pytest.raises(OSError):                  # the listener is gone
            connect(cb.local_port).close()
    finally:
        cb.stop()
        sb.stop()


# --------------------------------------------------------------------------------------------
# (2) venue certificate refused, and other upstream failures: QuickFIX's socket closes at once
# --------------------------------------------------------------------------------------------

def test_wrong_ca_closes_plain_socket_and_logs(pki: Pki, echo: EchoServer,
                                               caplog: pytest.LogCaptureFixture) -> None:
    sb = server_bridge(pki, echo)
    cb = TlsClientBridge("127.0.0.1", sb.port, client_context(ca_file=pki.other_ca))
    with running(sb, cb), connect(cb.local_port) as s:
        s.sendall(b"8=FIX.4.4\x01")                   # QuickFIX's Logon, never delivered
        assert wait_closed(s) < PROMPT_S
        rec = wait_log(caplog, rf"TLS to venue 127\.0\.0\.1:{sb.port} failed: certificate "
                               r"verify failed: unable to get local issuer certificate")
        assert rec.levelno == logging.WARNING
    time.sleep(0.1)
    assert echo.accepted == 0
    failures = [r for r in caplog.records if "failed: certificate verify" in r.getMessage()]
    assert len(failures) == 1                          # once per failure


def test_hostname_mismatch_is_refused(pki: Pki, echo: EchoServer,
                                      caplog: pytest.LogCaptureFixture) -> None:
    sb = server_bridge(pki, echo)
    cb = TlsClientBridge("127.0.0.1", sb.port, client_context(ca_file=pki.ca),
                         server_hostname="fix.venue.example")
    with running(sb, cb), connect(cb.local_port) as s:
        assert wait_closed(s) < PROMPT_S
        wait_log(caplog, r"failed: certificate verify failed: Hostname mismatch")
    assert echo.accepted == 0


def test_upstream_refused_closes_plain_socket(caplog: pytest.LogCaptureFixture) -> None:
    dead = free_port()
    cb = TlsClientBridge("127.0.0.1", dead, client_context())
    with running(cb), connect(cb.local_port) as s:
        assert wait_closed(s) < PROMPT_S
        wait_log(caplog, rf"TLS to venue 127\.0\.0\.1:{dead} failed: Connection refused")


def test_upstream_handshake_timeout_closes_plain_socket(
        caplog: pytest.LogCaptureFixture) -> None:
    mute = socket.create_server(("127.0.0.1", 0))    # accepts TCP, never answers the hello
    try:
        cb = TlsClientBridge("127.0.0.1", mute.getsockname()[1], client_context(),
                             connect_timeout_s=0.5)
        with running(cb), connect(cb.local_port) as s:
            elapsed = wait_closed(s)
            assert 0.3 < elapsed < PROMPT_S
            wait_log(caplog, r"TLS to venue .* failed: TLS handshake timed out")
    finally:
        mute.close()


# --------------------------------------------------------------------------------------------
# (3) verify=False against a self-signed server (and verification is on by default)
# --------------------------------------------------------------------------------------------

def test_verify_false_accepts_self_signed(pki: Pki, echo: EchoServer,
                                          caplog: pytest.LogCaptureFixture) -> None:
    ctx = server_context(pki.self_signed_cert, pki.self_signed_key)
    sb = server_bridge(pki, echo, ctx=ctx)
    lax = TlsClientBridge("127.0.0.1", sb.port, client_context(verify=False))
    strict = TlsClientBridge("127.0.0.1", sb.port, client_context())   # system trust store
    with running(sb, lax, strict):
        with connect(lax.local_port) as s:
            assert round_trip(s, b"ping") == b"ping"
        with connect(strict.local_port) as s:
            assert wait_closed(s) < PROMPT_S
        wait_log(caplog, r"failed: certificate verify failed: self.signed certificate")


# --------------------------------------------------------------------------------------------
# (4) allow-list
# --------------------------------------------------------------------------------------------

def test_allow_list_refuses_other_addresses(pki: Pki, echo: EchoServer,
                                            caplog: pytest.LogCaptureFixture) -> None:
    sb = server_bridge(pki, echo, allow=("127.0.0.1",))
    via_other = TlsClientBridge("127.0.0.1", sb.port, client_context(ca_file=pki.ca),
                                source_address="127.0.0.2")
    with running(sb, via_other):
        # A raw TLS client from 127.0.0.2: refused before the handshake.
        raw = socket.socket()
        try:
            raw.bind(("127.0.0.2", 0))
        except OSError as exc:
            raw.close()
            pytest.skip(f"cannot bind 127.0.0.2 on this host: {exc}")
        raw.settimeout(5)
        raw.connect(("127.0.0.1", sb.port))
        ctx = client_context(ca_file=pki.ca)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            ctx.wrap_socket(raw, server_hostname="localhost")
        raw.close()
        wait_log(caplog, r"refused connection from 127\.0\.0\.2:\d+: address not in allow-list")
        # Through the client bridge from 127.0.0.2: QuickFIX's side is closed at once.
        with connect(via_other.local_port) as s:
            assert wait_closed(s) < PROMPT_S
        wait_log(caplog, r"TLS to venue .* failed: connection (closed|reset) by peer during "
                         r"TLS handshake")
    assert echo.accepted == 0


def test_allow_list_validation() -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with pytest.raises(ValueError):
        TlsServerBridge("127.0.0.1", 0, ctx, 1, allow_addresses=["not-an-ip"])
    with pytest.raises(TypeError):
        TlsServerBridge("127.0.0.1", 0, ctx, 1, allow_addresses="127.0.0.1")
    b = TlsServerBridge("127.0.0.1", 0, ctx, 1, allow_addresses=["10.0.0.0/8", "127.0.0.1"])
    assert b._refusal(("10.1.2.3", 1)) is None
    assert b._refusal(("::ffff:127.0.0.1", 1)) is None
    assert b._refusal(("127.0.0.2", 1)) == "address not in allow-list"
    b.stop()


# --------------------------------------------------------------------------------------------
# (5) mutual TLS
# --------------------------------------------------------------------------------------------

def test_mutual_tls(pki: Pki, echo: EchoServer, caplog: pytest.LogCaptureFixture) -> None:
    sb = server_bridge(pki, echo, client_ca=pki.ca)
    anonymous = TlsClientBridge("127.0.0.1", sb.port, client_context(ca_file=pki.ca))
    wrong = TlsClientBridge("127.0.0.1", sb.port,
                            client_context(ca_file=pki.ca, cert_file=pki.self_signed_cert,
                                           key_file=pki.self_signed_key))
    good = TlsClientBridge("127.0.0.1", sb.port,
                           client_context(ca_file=pki.ca, cert_file=pki.client_cert,
                                          key_file=pki.client_key))
    with running(sb, anonymous, wrong, good):
        for refused in (anonymous, wrong):
            with connect(refused.local_port) as s:
                s.sendall(b"8=FIX.4.4\x01")
                assert wait_closed(s) < PROMPT_S
        wait_log(caplog, r"TLS handshake from 127\.0\.0\.1:\d+ failed: .*"
                         r"(PEER_DID_NOT_RETURN_A_CERTIFICATE|peer did not return)")
        wait_log(caplog, r"TLS handshake from 127\.0\.0\.1:\d+ failed: certificate verify")
        # TLS 1.3: the client bridge learns of the rejection only from the alert after its
        # own handshake completed; that close is reported as a failure too.
        rec = wait_log(caplog, r"TLS to venue .* closed: TLS error: .*(CERTIFICATE_REQUIRED|"
                               r"UNKNOWN_CA|certificate)")
        assert rec.levelno == logging.WARNING
        assert echo.accepted == 0                     # nothing reached the acceptor
        with connect(good.local_port) as s:
            assert round_trip(s, b"authenticated") == b"authenticated"
        wait_log(caplog, r"TLS from .* established \(.*peer cert commonName=fixgw-test-oms")


# --------------------------------------------------------------------------------------------
# (6) TLS version floor
# --------------------------------------------------------------------------------------------

def _tls11_context(server_side: bool) -> ssl.SSLContext:
    """A context capped at TLS 1.1 (security level 0 so OpenSSL 3 still offers it), or skip."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side
                                 else ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        except (ValueError, ssl.SSLError) as exc:
            pytest.skip(f"local OpenSSL cannot make a TLS 1.1 context: {exc}")
    if not server_side:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_contexts_require_tls12() -> None:
    assert client_context().minimum_version == ssl.TLSVersion.TLSv1_2
    assert client_context(verify=False).minimum_version == ssl.TLSVersion.TLSv1_2
    with pytest.raises(ValueError):
        client_context(key_file=Path("k.pem"))


def test_tls11_client_is_refused(pki: Pki, echo: EchoServer,
                                 caplog: pytest.LogCaptureFixture) -> None:
    sb = server_bridge(pki, echo)
    old = _tls11_context(server_side=False)
    with running(sb):
        raw = socket.create_connection(("127.0.0.1", sb.port), timeout=5)
        try:
            with pytest.raises(ssl.SSLError) as err:
                old.wrap_socket(raw)
        finally:
            raw.close()
        if "NO_PROTOCOLS_AVAILABLE" in str(err.value) or "NO_CIPHERS" in str(err.value):
            pytest.skip(f"local OpenSSL will not offer TLS 1.1: {err.value}")
        assert "PROTOCOL_VERSION" in str(err.value)
        wait_log(caplog, r"TLS handshake from 127\.0\.0\.1:\d+ failed: .*UNSUPPORTED_PROTOCOL")
    assert echo.accepted == 0


def test_tls11_venue_is_refused(pki: Pki, echo: EchoServer,
                                caplog: pytest.LogCaptureFixture) -> None:
    old = _tls11_context(server_side=True)
    old.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    sb = server_bridge(pki, echo, ctx=old)
    cb = TlsClientBridge("127.0.0.1", sb.port, client_context(ca_file=pki.ca))
    with running(sb, cb), connect(cb.local_port) as s:
        assert wait_closed(s) < PROMPT_S
        rec = wait_log(caplog, r"TLS to venue .* failed: ")
        if "NO_PROTOCOLS_AVAILABLE" in rec.getMessage():
            pytest.skip("local OpenSSL will not serve TLS 1.1")
        assert re.search(r"PROTOCOL|protocol", rec.getMessage())


# --------------------------------------------------------------------------------------------
# Handshakes run on the connection's thread: a silent client cannot block the accept loop
# --------------------------------------------------------------------------------------------

def test_silent_client_does_not_block_accepts(pki: Pki, echo: EchoServer,
                                              caplog: pytest.LogCaptureFixture) -> None:
    sb = server_bridge(pki, echo, handshake_timeout_s=1.0)
    cb = TlsClientBridge("127.0.0.1", sb.port, client_context(ca_file=pki.ca))
    with running(sb, cb):
        silent = [connect(sb.port) for _ in range(3)]     # TCP only, never a ClientHello
        t0 = time.monotonic()
        with connect(cb.local_port) as s:
            assert round_trip(s, b"still served") == b"still served"
        assert time.monotonic() - t0 < 0.9
        for q in silent:
            assert wait_closed(q, timeout=3.0) < 3.0
            q.close()
        wait_log(caplog, r"TLS handshake from .* failed: TLS handshake timed out")


# --------------------------------------------------------------------------------------------
# (7) A real QuickFIX session through both bridges
# --------------------------------------------------------------------------------------------

class _App(fix.Application):  # type: ignore[misc]
    """Records logon/logout; everything else is accepted as is (camelCase: QuickFIX's API)."""

    def __init__(self) -> None:
        super().__init__()
        self.logged_on = threading.Event()
        self.logged_out = threading.Event()

    def onCreate(self, session_id: fix.SessionID) -> None:
        pass

    def onLogon(self, session_id: fix.SessionID) -> None:
        self.logged_on.set()

    def onLogout(self, session_id: fix.SessionID) -> None:
        self.logged_out.set()

    def toAdmin(self, message: fix.Message, session_id: fix.SessionID) -> None:
        pass

    def fromAdmin(self, message: fix.Message, session_id: fix.SessionID) -> None:
        pass

    def toApp(self, message: fix.Message, session_id: fix.SessionID) -> None:
        pass

    def fromApp(self, message: fix.Message, session_id: fix.SessionID) -> None:
        pass


def _settings(path: Path, defaults: dict[str, str], sender: str,
              target: str) -> fix.SessionSettings:
    lines = ["[DEFAULT]", *(f"{k}={v}" for k, v in defaults.items()),
             "", "[SESSION]", "BeginString=FIX.4.4",
             f"SenderCompID={sender}", f"TargetCompID={target}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return fix.SessionSettings(str(path))


def test_quickfix_session_through_both_bridges(pki: Pki, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    tag = uuid.uuid4().hex[:8].upper()
    oms, gw = f"OMS{tag}", f"GW{tag}"
    common = {"StartTime": "00:00:00", "EndTime": "00:00:00", "HeartBtInt": "30",
              "UseDataDictionary": "N", "SocketNodelay": "Y", "ResetOnLogon": "Y",
              "FileStorePath": str(tmp_path / "store")}
    internal = free_port()
    acc_app, ini_app = _App(), _App()
    acc_settings = _settings(tmp_path / "acceptor.cfg",
                             {**common, "ConnectionType": "acceptor",
                              "SocketAcceptPort": str(internal),
                              "AllowedRemoteAddresses": "127.0.0.1"}, gw, oms)
    # QuickFIX keeps C++ references to the application, settings and store factory: every one
    # must outlive its engine, so none is created inline (a collected factory crashes stop()).
    acc_store, ini_store = fix.MemoryStoreFactory(), fix.MemoryStoreFactory()
    # ThreadedSocketAcceptor, not SocketAcceptor: QuickFIX 1.16's SocketAcceptor::stop() races
    # its own thread (onStop() walks the server's socket map while onStart() deletes the
    # server) and segfaults now and then under load; the threaded acceptor locks around it.
    acceptor = fix.ThreadedSocketAcceptor(acc_app, acc_store, acc_settings)
    # Listening on `internal` before the bridges pick their ports (port 0). `free_port` picks
    # below the ephemeral range, out of reach of a bind to port 0; listening first keeps the
    # test right even where that range is configured differently.
    acceptor.start()
    try:
        sb = TlsServerBridge("127.0.0.1", 0, server_context(pki.server_cert, pki.server_key,
                                                            client_ca_file=pki.ca),
                             downstream_port=internal, allow_addresses=["127.0.0.1"])
        cb = TlsClientBridge("127.0.0.1", sb.port,
                             client_context(ca_file=pki.ca, cert_file=pki.client_cert,
                                            key_file=pki.client_key),
                             server_hostname="localhost")
        ini_settings = _settings(tmp_path / "initiator.cfg",
                                 {**common, "ConnectionType": "initiator",
                                  "SocketConnectHost": "127.0.0.1",
                                  "SocketConnectPort": str(cb.local_port),
                                  "ReconnectInterval": "1"}, oms, gw)
        initiator = fix.SocketInitiator(ini_app, ini_store, ini_settings)
        with running(sb, cb):
            initiator.start()
            try:
                assert ini_app.logged_on.wait(10), "initiator never logged on"
                assert acc_app.logged_on.wait(5), "acceptor never saw the logon"
                wait_log(caplog, r"TLS from 127\.0\.0\.1:\d+ established \(TLSv1\.[23]")
            finally:
                initiator.stop()
            # The initiator's Logout and close crossed both bridges.
            assert acc_app.logged_out.wait(5), "acceptor never saw the logout"
            assert ini_app.logged_out.is_set()
    finally:
        acceptor.stop()
