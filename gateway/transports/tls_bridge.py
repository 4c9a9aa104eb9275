"""TLS for QuickFIX sessions, bridged in Python because the published `quickfix` wheel is built
without SSL while Kraken's FIX endpoints require TLS 1.2+.

Two bridges, one per role:

* `TlsClientBridge` (venue side): QuickFIX's initiator connects in plain TCP to
  ``127.0.0.1:local_port``; for each such connection the bridge opens TLS to the venue and
  copies bytes both ways.
* `TlsServerBridge` (OMS side): listens with TLS on the public host:port, refuses peers that are
  not on the allow-list, optionally requires a client certificate (mutual TLS), and connects each
  authenticated client to the QuickFIX acceptor's internal plain port.

Design choices, and why:

* One bridge connection is exactly one pair of sockets. When either side closes (or fails), the
  other is closed at once: FIX relies on disconnect semantics (a logout followed by a close, a
  reconnect after a drop), so the far end must see the close promptly and QuickFIX's own
  reconnect logic must apply. Half-close is therefore treated as close: FIX never uses a
  half-open TCP connection, and TLS half-close is not something venues support reliably.
* One thread per connection runs a ``poll()`` loop over both sockets, non-blocking. Not one
  thread per direction: OpenSSL forbids using one ``SSL`` object from two threads at once
  (``SSL_read`` in one thread while ``SSL_write`` runs in another can corrupt the connection or
  crash the interpreter; see openssl/openssl#20446). A single owner thread is the pattern
  OpenSSL documents, needs no locks, and makes closing race-free (only the owner thread ever
  closes its file descriptors, so a descriptor number is never reused under a thread still
  using it).
* The hot path does no parsing and no copying of its own: ``recv_into`` two reusable 64 KiB
  buffers, one per direction, then a non-blocking send of a memoryview of the same buffer; if
  the receiver is slow, the bridge keeps the remainder and stops reading the source
  (back-pressure instead of unbounded buffering). ``TCP_NODELAY`` is set on every socket so
  small FIX messages are never held back by Nagle's algorithm.
* The TLS handshake, the TCP connect to the venue and the connect to the QuickFIX acceptor all
  run on the connection's own thread, non-blocking with a deadline, so a slow or malicious peer
  never stalls the accept loop, and `stop()` interrupts them promptly.
* If the venue connect or handshake fails, the plain socket QuickFIX connected with is closed
  immediately, so QuickFIX sees a disconnect and schedules its reconnect; the reason is logged
  once per failure with the peer, e.g. ``TLS to venue fix.kraken.com:443 failed: certificate
  verify failed: unable to get local issuer certificate``.

Note for deployments: QuickFIX's acceptor binds every interface, so its internal plain port
must be restricted to loopback peers (``AllowedRemoteAddresses=127.0.0.1``), or the TLS bridge
could be bypassed.

May import: the standard library only.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import logging
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["TlsClientBridge", "TlsServerBridge", "client_context", "server_context"]

log = logging.getLogger("fixgw.tls")

_BUF_SIZE = 64 * 1024            # > one TLS record (16 KiB): a read never leaves data in OpenSSL
_BACKLOG = 64
_DOWNSTREAM_CONNECT_TIMEOUT_S = 5.0
_STOP_JOIN_S = 5.0
_DRAIN_LIMIT = 16                # recv calls spent discarding unread input before a close
_IDLE_POLL_MS = 1000             # the pump's poll timeout (see the idle safety net)

_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT
_POLLBAD = select.POLLERR | select.POLLHUP | select.POLLNVAL

_Address = tuple[str, int]


# --------------------------------------------------------------------------------------------
# Contexts
# --------------------------------------------------------------------------------------------

def client_context(ca_file: Path | None = None, verify: bool = True,
                   cert_file: Path | None = None,
                   key_file: Path | None = None) -> ssl.SSLContext:
    """Context for connecting to a venue: TLS 1.2 minimum (Kraken's requirement and the floor
    for anything carrying orders).

    With ``verify`` (the default), the server certificate must chain to ``ca_file`` — only that
    file, so a test or a pinned deployment trusts exactly what it names — or to the system trust
    store when ``ca_file`` is None, and must match the host name. ``verify=False`` exists for
    lab venues with self-signed certificates; it disables both checks. ``cert_file`` (and
    ``key_file`` when the key is not in the same PEM) is presented when the venue asks for a
    client certificate.
    """
    if key_file is not None and cert_file is None:
        raise ValueError("key_file given without cert_file")
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                     cafile=str(ca_file) if ca_file is not None else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert_file is not None:
        ctx.load_cert_chain(str(cert_file), str(key_file) if key_file is not None else None)
    return ctx


def server_context(cert_file: Path, key_file: Path,
                   client_ca_file: Path | None = None) -> ssl.SSLContext:
    """Context for the OMS-facing listener: TLS 1.2 minimum. With ``client_ca_file``, every
    client must present a certificate chaining to it (mutual TLS, ``CERT_REQUIRED``) — an OMS
    is then authenticated before a single byte reaches QuickFIX."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_file), str(key_file))
    if client_ca_file is not None:
        ctx.load_verify_locations(cafile=str(client_ca_file))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

class _Stopped(Exception):
    """The bridge is stopping: abandon a connect or handshake in progress."""


def _nodelay(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _fmt(addr: _Address | tuple[str, int, int, int] | None) -> str:
    if addr is None:
        return "?"
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _describe(exc: BaseException) -> str:
    """One readable line for a connect/handshake/pump failure (what ops grep for)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _wait(fd: int, events: int, deadline: float, wake_fd: int, what: str) -> None:
    """Block until ``fd`` is ready for ``events`` (or in error), the deadline passes
    (TimeoutError naming ``what``) or the bridge stops (_Stopped)."""
    poller = select.poll()
    poller.register(fd, events)
    poller.register(wake_fd, _POLLIN)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{what} timed out")
        ready = poller.poll(max(1, int(left * 1000 + 0.5)))
        for rfd, _ in ready:
            if rfd == wake_fd:
                raise _Stopped
        if ready:
            return


def _connect(host: str, port: int, deadline: float, wake_fd: int,
             source_address: str | None = None) -> socket.socket:
    """Non-blocking TCP connect (every resolved address in turn) bounded by ``deadline`` and
    interruptible by the bridge's stop. Returns a non-blocking socket with TCP_NODELAY."""
    last: OSError | None = None
    for family, type_, proto, _, addr in socket.getaddrinfo(host, port,
                                                            type=socket.SOCK_STREAM):
        sock = socket.socket(family, type_, proto)
        try:
            _nodelay(sock)
            if source_address is not None:
                sock.bind((source_address, 0))
            sock.setblocking(False)
            err = sock.connect_ex(addr)
            if err == errno.EINPROGRESS:
                _wait(sock.fileno(), _POLLOUT, deadline, wake_fd, "TCP connect")
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))
            return sock
        except OSError as exc:
            sock.close()
            last = exc
        except BaseException:
            sock.close()
            raise
    raise last if last is not None else OSError(f"no address for {host}:{port}")


def _handshake(tls: ssl.SSLSocket, deadline: float, wake_fd: int) -> None:
    """Non-blocking TLS handshake bounded by ``deadline`` (TimeoutError) and by stop."""
    while True:
        try:
            tls.do_handshake()
            return
        except ssl.SSLWantReadError:
            events = _POLLIN
        except ssl.SSLWantWriteError:
            events = _POLLOUT
        except (ssl.SSLEOFError, ConnectionResetError) as exc:
            # Typically an address allow-list or a protocol mismatch at the peer; OpenSSL's own
            # wording ("EOF occurred in violation of protocol") says neither.
            how = "closed" if isinstance(exc, ssl.SSLEOFError) else "reset"
            raise ConnectionError(f"connection {how} by peer during TLS handshake") from exc
        _wait(tls.fileno(), events, deadline, wake_fd, "TLS handshake")


def _drain(sock: socket.socket) -> None:
    """Discard input that is already queued, so close() sends FIN rather than RST (an RST can
    make the peer's kernel drop our last bytes — e.g. a Logout — before the peer reads them)."""
    try:
        sock.setblocking(False)
        for _ in range(_DRAIN_LIMIT):
            if not sock.recv(_BUF_SIZE):
                return
    except (OSError, ValueError):
        return


def _close_plain(sock: socket.socket) -> None:
    _drain(sock)
    sock.close()


def _close_tls(tls: ssl.SSLSocket) -> None:
    """Best-effort close_notify (never blocks: the socket is non-blocking), then close."""
    try:
        tls.setblocking(False)
        tls.unwrap()
    except (OSError, ValueError):
        pass
    _drain(tls)
    tls.close()


def _tls_summary(tls: ssl.SSLSocket) -> str:
    cipher = tls.cipher()
    parts = [tls.version() or "?", cipher[0] if cipher else "?"]
    subject = (tls.getpeercert() or {}).get("subject", ())
    if isinstance(subject, tuple) and subject:
        parts.append("peer cert " + ",".join(f"{attr[0]}={attr[1]}" for rdn in subject
                                                for attr in rdn))
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# The byte pump
# --------------------------------------------------------------------------------------------

class _Pump:
    """Copies bytes between a plain socket and a TLS socket until either closes.

    Both sockets are non-blocking and owned by the calling thread. State per direction: a
    reusable buffer and, when the receiver could not take everything, the unsent remainder
    (a memoryview into that buffer); while a remainder exists the source is not read.
    """

    def __init__(self, plain: socket.socket, tls: ssl.SSLSocket, wake_fd: int) -> None:
        self.plain, self.tls, self.wake_fd = plain, tls, wake_fd
        self.up = memoryview(bytearray(_BUF_SIZE))      # plain -> TLS
        self.down = memoryview(bytearray(_BUF_SIZE))    # TLS -> plain
        self.up_pending: memoryview | None = None
        self.down_pending: memoryview | None = None
        # What the TLS socket must become ready for before the next read / the pending write
        # is retried; OpenSSL may need to write in order to read and vice versa.
        self.tls_read_ev = _POLLIN
        self.tls_write_ev = _POLLOUT
        self.up_bytes = 0
        self.down_bytes = 0
        self.failed = False     # ended by an error rather than a close (logged as a warning)

    def run(self) -> str:
        """Pump until one side closes or fails; return why (for the log line)."""
        try:
            return self._loop()
        except _Stopped:
            return "bridge stopped"
        except ssl.SSLError as exc:
            # E.g. TLS 1.3: a venue that rejects our client certificate says so only after
            # the client-side handshake has completed, as an alert on the first read.
            self.failed = True
            return f"TLS error: {_describe(exc)}"
        except OSError as exc:
            self.failed = True
            return f"socket error: {_describe(exc)}"

    def _loop(self) -> str:
        plain, wake_fd = self.plain, self.wake_fd
        pfd, tfd = plain.fileno(), self.tls.fileno()
        poller = select.poll()
        poller.register(wake_fd, _POLLIN)
        poll = poller.poll
        p_mask = t_mask = -1
        # QuickFIX/the OMS may have sent bytes while the connection was being set up, and
        # OpenSSL may already hold decrypted data from the handshake's last read: drain both.
        reason = self._tls_to_plain() or self._plain_to_tls_once()
        if reason:
            return reason
        while True:
            mask = _POLLIN if self.up_pending is None else 0
            if self.down_pending is not None:
                mask |= _POLLOUT
            if mask != p_mask:
                poller.register(pfd, mask)
                p_mask = mask
            mask = self.tls_read_ev if self.down_pending is None else 0
            if self.up_pending is not None:
                mask |= self.tls_write_ev
            if mask != t_mask:
                poller.register(tfd, mask)
                t_mask = mask

            p_ev = t_ev = 0
            ready = poll(_IDLE_POLL_MS)
            if not ready:
                # Idle safety net, never reached in normal operation: should OpenSSL ever hold
                # input that poll() cannot see, it is delivered within a second, not never.
                t_ev = _POLLIN
            for fd, ev in ready:
                if fd == pfd:
                    p_ev = ev
                elif fd == tfd:
                    t_ev = ev
                else:
                    raise _Stopped

            if t_ev:
                if t_ev & _POLLBAD and self.down_pending is not None and self.up_pending is None:
                    return "TLS side hung up"     # nothing to try on it that would report why
                if self.up_pending is not None:
                    self._retry_tls_write()
                if self.down_pending is None:
                    reason = self._tls_to_plain()
                    if reason:
                        return reason
            if p_ev:
                if p_ev & _POLLBAD and self.up_pending is not None and self.down_pending is None:
                    return "plain side hung up"
                if self.down_pending is not None:
                    reason = self._flush_down()
                    if reason:
                        return reason
                if self.up_pending is None and p_ev & (_POLLIN | _POLLBAD):
                    reason = self._plain_to_tls_once()
                    if reason:
                        return reason

    def _tls_to_plain(self) -> str | None:
        """Read TLS until OpenSSL has nothing more (poll cannot see data OpenSSL already
        decrypted), forwarding each chunk; stop early if the plain side is full."""
        recv_into, send, down = self.tls.recv_into, self.plain.send, self.down
        pending = self.tls.pending
        while True:
            try:
                n = recv_into(down)
            except ssl.SSLWantReadError:
                self.tls_read_ev = _POLLIN
                return None
            except ssl.SSLWantWriteError:
                self.tls_read_ev = _POLLOUT
                return None
            if n == 0:
                return "closed by TLS peer"
            self.tls_read_ev = _POLLIN
            try:
                sent = send(down[:n])
            except BlockingIOError:
                sent = 0
            self.down_bytes += sent
            if sent < n:
                self.down_pending = down[sent:n]
                return None
            if not pending():
                # OpenSSL holds no more decrypted bytes and, read-ahead being off (CPython never
                # turns it on), no raw bytes past this record: anything else is still in the
                # kernel, where poll() sees it. Skipping the read that would only say "want
                # read" saves a syscall and an exception per message (~2.5 µs per crossing).
                return None

    def _flush_down(self) -> str | None:
        pending = self.down_pending
        assert pending is not None
        try:
            sent = self.plain.send(pending)
        except BlockingIOError:
            return None
        self.down_bytes += sent
        if sent < len(pending):
            self.down_pending = pending[sent:]
            return None
        self.down_pending = None
        return self._tls_to_plain()     # resume: OpenSSL may hold more decrypted data

    def _plain_to_tls_once(self) -> str | None:
        try:
            n = self.plain.recv_into(self.up)
        except BlockingIOError:
            return None
        if n == 0:
            return "closed by plain peer"
        self._write_tls(self.up[:n])
        return None

    def _write_tls(self, data: memoryview) -> None:
        try:
            sent = self.tls.send(data)
        except ssl.SSLWantWriteError:
            self.tls_write_ev = _POLLOUT
            sent = 0
        except ssl.SSLWantReadError:
            self.tls_write_ev = _POLLIN
            sent = 0
        self.up_bytes += sent
        # OpenSSL (no partial-write mode) reports all-or-nothing; a retry must pass the same
        # bytes again, which the remainder view (same buffer, unchanged) guarantees.
        self.up_pending = None if sent >= len(data) else data[sent:]

    def _retry_tls_write(self) -> None:
        pending = self.up_pending
        assert pending is not None
        self._write_tls(pending)


# --------------------------------------------------------------------------------------------
# Bridges
# --------------------------------------------------------------------------------------------

class _Bridge:
    """Listener, accept loop, per-connection threads and stop() shared by both bridges."""

    _kind = "bridge"

    def __init__(self, listen_host: str, listen_port: int, max_connections: int) -> None:
        family, type_, proto, _, addr = socket.getaddrinfo(
            listen_host, listen_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        self._listener = socket.socket(family, type_, proto)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(addr)
            # Listening from here, not from start(): with SO_REUSEADDR, a socket that is only
            # bound does not keep another listener off its port on Linux, so a port picked here
            # (port 0) could be taken before start() and fail it with EADDRINUSE (seen in CI).
            # A client that connects before start() waits in the backlog.
            self._listener.listen(_BACKLOG)
        except BaseException:
            self._listener.close()
            raise
        self._listen_addr: tuple[str, int] = self._listener.getsockname()[:2]
        self._max_connections = max_connections
        # The wake pipe: stop() writes one byte and never reads it, so every poll() of every
        # thread of this bridge (accept loop, connects, handshakes, pumps) returns at once.
        self._wake_r, self._wake_w = os.pipe()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._accept_thread: threading.Thread | None = None
        self._started = self._stopped = False
        self._ids = itertools.count(1)

    @property
    def _bound_port(self) -> int:
        return int(self._listen_addr[1])

    def start(self) -> None:
        """Start accepting (one daemon thread; one more per connection)."""
        with self._lock:
            if self._started or self._stopped:
                raise RuntimeError(f"{self._kind} already started or stopped")
            self._started = True
        self._listener.setblocking(False)
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"{self._kind}-{self._bound_port}-accept",
            daemon=True)
        self._accept_thread.start()

    def stop(self) -> None:
        """Close the listener and every live connection (both sockets of each), and wait for
        their threads. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        os.write(self._wake_w, b"x")
        deadline = time.monotonic() + _STOP_JOIN_S
        if self._accept_thread is not None:
            self._accept_thread.join(max(0.0, deadline - time.monotonic()))
        self._listener.close()
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in threads if t.is_alive()]
        if alive or (self._accept_thread is not None and self._accept_thread.is_alive()):
            # Leave the pipe open: a thread still polling it must not see a reused descriptor.
            log.warning("%s %s: threads still running after stop: %s", self._kind,
                        _fmt(self._listen_addr), alive)
            return
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _accept_loop(self) -> None:
        poller = select.poll()
        poller.register(self._listener.fileno(), _POLLIN)
        poller.register(self._wake_r, _POLLIN)
        while True:
            if any(fd == self._wake_r for fd, _ in poller.poll()):
                return
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
            except OSError as exc:      # EMFILE and friends: do not spin, do not die
                log.error("%s %s: accept failed: %s", self._kind, _fmt(self._listen_addr),
                          _describe(exc))
                time.sleep(0.1)
                continue
            try:
                self._admit(sock, addr)
            except Exception:
                log.exception("%s: cannot serve %s", self._kind, _fmt(addr))
                sock.close()

    def _admit(self, sock: socket.socket, addr: _Address) -> None:
        refusal = self._refusal(addr)
        with self._lock:
            if refusal is None and len(self._threads) >= self._max_connections:
                refusal = f"{len(self._threads)} connections already open"
            if refusal is not None:
                log.warning("%s %s: refused connection from %s: %s", self._kind,
                            _fmt(self._listen_addr), _fmt(addr), refusal)
                sock.close()
                return
            t = threading.Thread(target=self._run, args=(sock, addr), daemon=True,
                                 name=f"{self._kind}-{self._bound_port}-{next(self._ids)}")
            self._threads.add(t)
        t.start()

    def _run(self, sock: socket.socket, addr: _Address) -> None:
        try:
            _nodelay(sock)
            sock.setblocking(False)
            self._serve(sock, addr)
        except Exception:
            log.exception("%s: connection from %s failed unexpectedly", self._kind, _fmt(addr))
            sock.close()
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _refusal(self, addr: _Address) -> str | None:
        """Why a peer is refused before any byte is exchanged (None: accept it)."""
        return None

    def _serve(self, sock: socket.socket, addr: _Address) -> None:
        """The connection's whole life, on its own thread; must close ``sock``."""
        raise NotImplementedError


class TlsClientBridge(_Bridge):
    """Venue side: QuickFIX's initiator connects in plain TCP to ``listen_host:local_port``
    (its ``SocketConnectHost``/``SocketConnectPort``); each connection is carried over TLS to
    ``upstream_host:upstream_port``.

    ``server_hostname`` (default: ``upstream_host``) is sent as SNI and checked against the
    certificate when the context verifies. ``listen_port`` 0 (the default) picks an ephemeral
    port, read back from ``local_port``. ``connect_timeout_s`` bounds TCP connect plus TLS
    handshake. ``source_address`` binds the outgoing connection to a local address (venues
    such as Kraken allow-list the gateway's IP; multi-homed hosts must pick the right one).
    The listener should stay on loopback: anyone who can connect to it speaks to the venue with
    this bridge's client certificate.
    """

    _kind = "tls-client-bridge"

    def __init__(self, upstream_host: str, upstream_port: int, context: ssl.SSLContext,
                 server_hostname: str | None = None, listen_host: str = "127.0.0.1",
                 connect_timeout_s: float = 10.0, source_address: str | None = None,
                 listen_port: int = 0, max_connections: int = 16) -> None:
        super().__init__(listen_host, listen_port, max_connections)
        self.upstream_host, self.upstream_port = upstream_host, upstream_port
        self.context = context
        self.server_hostname = server_hostname or upstream_host
        self.connect_timeout_s = connect_timeout_s
        self.source_address = source_address
        self.local_port: int = self._bound_port

    @property
    def _venue(self) -> str:
        return _fmt((self.upstream_host, self.upstream_port))

    def _serve(self, plain: socket.socket, addr: _Address) -> None:
        deadline = time.monotonic() + self.connect_timeout_s
        tls: ssl.SSLSocket | None = None
        try:
            raw = _connect(self.upstream_host, self.upstream_port, deadline, self._wake_r,
                           self.source_address)
            try:
                tls = self.context.wrap_socket(raw, server_side=False,
                                               server_hostname=self.server_hostname,
                                               do_handshake_on_connect=False)
            except BaseException:
                raw.close()
                raise
            _handshake(tls, deadline, self._wake_r)
        except _Stopped:
            if tls is not None:
                tls.close()
            _close_plain(plain)
            return
        except Exception as exc:
            if tls is not None:
                tls.close()
            # Closing QuickFIX's socket right away is what triggers its reconnect logic.
            _close_plain(plain)
            log.warning("TLS to venue %s failed: %s (closed QuickFIX connection from %s)",
                        self._venue, _describe(exc), _fmt(addr))
            return
        log.info("TLS to venue %s established for %s (%s)", self._venue, _fmt(addr),
                 _tls_summary(tls))
        pump = _Pump(plain, tls, self._wake_r)
        try:
            reason = pump.run()
        finally:
            _close_tls(tls)
            _close_plain(plain)
        log.log(logging.WARNING if pump.failed else logging.INFO,
                "TLS to venue %s for %s closed: %s (sent %d B, received %d B)", self._venue,
                _fmt(addr), reason, pump.up_bytes, pump.down_bytes)


class TlsServerBridge(_Bridge):
    """OMS side: accepts TLS on ``listen_host:port`` and connects each client, after the
    handshake, to the QuickFIX acceptor at ``downstream_host:downstream_port`` in plain TCP.

    ``allow_addresses`` lists client IP addresses (CIDR networks are accepted too); anyone
    else is refused right after accept, before the handshake, with a log line naming the
    address. Empty means no address filter — then rely on mutual TLS (``server_context`` with
    ``client_ca_file``). ``handshake_timeout_s`` bounds how long a client may take to finish
    the handshake; ``max_connections`` caps live connections (threads) per bridge.
    """

    _kind = "tls-server-bridge"

    def __init__(self, listen_host: str, listen_port: int, context: ssl.SSLContext,
                 downstream_port: int, downstream_host: str = "127.0.0.1",
                 allow_addresses: Sequence[str] = (), handshake_timeout_s: float = 10.0,
                 max_connections: int = 64) -> None:
        if isinstance(allow_addresses, str):
            raise TypeError("allow_addresses must be a sequence of addresses, not a string")
        self._allow = [ipaddress.ip_network(a.strip(), strict=False) for a in allow_addresses]
        super().__init__(listen_host, listen_port, max_connections)
        self.context = context
        self.downstream_host, self.downstream_port = downstream_host, downstream_port
        self.handshake_timeout_s = handshake_timeout_s
        self.port: int = self._bound_port

    def start(self) -> None:
        if not self._allow:
            try:
                loopback = ipaddress.ip_address(self._listen_addr[0]).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                log.warning("%s %s: no client address allow-list; any host may attempt TLS",
                            self._kind, _fmt(self._listen_addr))
        super().start()

    def _refusal(self, addr: _Address) -> str | None:
        if not self._allow:
            return None
        try:
            ip = ipaddress.ip_address(addr[0].split("%", 1)[0])
        except ValueError:
            return "unparsable address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self._allow):
            return None
        return "address not in allow-list"

    def _serve(self, raw: socket.socket, addr: _Address) -> None:
        peer = _fmt(addr)
        try:
            tls = self.context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        except BaseException:
            raw.close()
            raise
        plain: socket.socket | None = None
        try:
            _handshake(tls, time.monotonic() + self.handshake_timeout_s, self._wake_r)
        except _Stopped:
            tls.close()
            return
        except Exception as exc:
            tls.close()
            log.warning("TLS handshake from %s failed: %s", peer, _describe(exc))
            return
        try:
            plain = _connect(self.downstream_host, self.downstream_port,
                             time.monotonic() + _DOWNSTREAM_CONNECT_TIMEOUT_S, self._wake_r)
        except _Stopped:
            _close_tls(tls)
            return
        except Exception as exc:
            _close_tls(tls)
            log.error("TLS from %s: connect to acceptor %s failed: %s", peer,
                      _fmt((self.downstream_host, self.downstream_port)), _describe(exc))
            return
        log.info("TLS from %s established (%s)", peer, _tls_summary(tls))
        pump = _Pump(plain, tls, self._wake_r)
        try:
            reason = pump.run()
        finally:
            _close_tls(tls)
            _close_plain(plain)
        log.log(logging.WARNING if pump.failed else logging.INFO,
                "TLS from %s closed: %s (received %d B, sent %d B)", peer, reason,
                pump.down_bytes, pump.up_bytes)
