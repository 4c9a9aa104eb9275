"""A raw FIX 4.4 test client: one TCP socket and the simplefix codec, no session engine.

Nothing here "does the right thing" on its own: the test decides every header field, every
sequence number and every byte on the wire, which is exactly what a session-protocol
conformance test needs (a real engine would refuse to send most of what we send).

Sequence numbers: `send()` without `seq=` uses `next_seq` and advances it; with an explicit
`seq=` it sends that number and leaves `next_seq` alone (for too-low / too-high / resend cases).
Every message received is kept in `received`, so a failing assertion can show the whole
conversation.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import simplefix

SOH = b"\x01"
Fields = Sequence[tuple[int, str]]

# Header tags this client writes itself, in the order it writes them.
BEGIN_STRING, BODY_LENGTH, MSG_TYPE, SENDER, TARGET, SEQ, SENDING_TIME = 8, 9, 35, 49, 56, 34, 52
POSS_DUP, ORIG_SENDING_TIME, TEST_REQ_ID = 43, 122, 112


def utc_timestamp(when: datetime | None = None, offset_s: float = 0.0) -> str:
    """FIX UTCTimestamp with milliseconds: YYYYMMDD-HH:MM:SS.sss."""
    t = (when or datetime.now(UTC)) + timedelta(seconds=offset_s)
    return t.strftime("%Y%m%d-%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def checksum(data: bytes) -> str:
    return f"{sum(data) % 256:03d}"


def with_bad_checksum(data: bytes) -> bytes:
    """The same message with a CheckSum (10) that is off by one."""
    head, sep, tail = data.rpartition(SOH + b"10=")
    good = int(tail.rstrip(SOH))
    return head + sep + f"{(good + 1) % 256:03d}".encode() + SOH


def with_body_length(data: bytes, delta: int) -> bytes:
    """The same message with BodyLength (9) changed by `delta` (CheckSum recomputed, so only the
    length is wrong)."""
    m = re.match(rb"^(8=[^\x01]*\x01)9=(\d+)\x01", data)
    assert m is not None, data
    head = m.group(1) + f"9={int(m.group(2)) + delta}".encode() + SOH
    body = data[m.end():].rpartition(SOH + b"10=")[0] + SOH
    msg = head + body
    return msg + b"10=" + checksum(msg).encode() + SOH


def with_msg_type_before_body_length(data: bytes) -> bytes:
    """The same message with MsgType (35) moved before BodyLength (9): BodyLength and CheckSum
    stay correct for the new layout, so only the order of the first three fields is wrong."""
    m = re.match(rb"^(8=[^\x01]*\x01)9=\d+\x01(35=[^\x01]*\x01)", data)
    assert m is not None, data
    rest = data[m.end():].rpartition(SOH + b"10=")[0] + SOH
    msg = m.group(1) + m.group(2) + f"9={len(rest)}".encode() + SOH + rest
    return msg + b"10=" + checksum(msg).encode() + SOH


def fields_of(msg: simplefix.FixMessage) -> dict[int, str]:
    """First value of every tag, decoded: convenient for assertions."""
    out: dict[int, str] = {}
    for tag, value in msg.pairs:
        out.setdefault(int(tag), value.decode(errors="replace"))
    return out


def show(msg: simplefix.FixMessage | None) -> str:
    return "<none>" if msg is None else msg.to_string("|")


class RawFixClient:
    """One counterparty of the gateway's OMS acceptor, speaking raw FIX over TCP."""

    def __init__(self, host: str, port: int, sender: str, target: str = "FIXGW",
                 begin_string: str = "FIX.4.4") -> None:
        self.host, self.port = host, port
        self.sender, self.target, self.begin_string = sender, target, begin_string
        self.next_seq = 1
        self.sock: socket.socket | None = None
        self.parser = simplefix.FixParser()
        self.received: list[simplefix.FixMessage] = []
        self.sent: list[bytes] = []
        self.closed = False

    # ---- connection ---------------------------------------------------------------------------
    def connect(self, timeout: float = 5.0) -> RawFixClient:
        self.sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.closed = False
        return self

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None
                self.closed = True

    # ---- building and sending -----------------------------------------------------------------
    def header(self, msg_type: str, seq: int, sending_time: str | None,
               overrides: Mapping[int, str | None] | None = None) -> list[tuple[int, str]]:
        """Standard header in the usual order; `overrides` replaces a tag's value in place, adds
        a tag that is not there (after the standard ones), or with value None drops the tag."""
        h: list[tuple[int, str]] = [
            (BEGIN_STRING, self.begin_string), (MSG_TYPE, msg_type), (SENDER, self.sender),
            (TARGET, self.target), (SEQ, str(seq)),
            (SENDING_TIME, sending_time or utc_timestamp())]
        for tag, value in (overrides or {}).items():
            idx = next((i for i, (t, _) in enumerate(h) if t == tag), None)
            if value is None:
                if idx is not None:
                    del h[idx]
            elif idx is None:
                h.append((tag, value))
            else:
                h[idx] = (tag, value)
        return h

    def encode(self, msg_type: str, fields: Fields = (), *, seq: int | None = None,
               sending_time: str | None = None,
               header_overrides: Mapping[int, str | None] | None = None) -> bytes:
        """The wire bytes of a well-framed message (simplefix computes 9 and 10). Consumes a
        sequence number when `seq` is None."""
        if seq is None:
            seq = self.next_seq
            self.next_seq += 1
        msg = simplefix.FixMessage()
        for tag, value in self.header(msg_type, seq, sending_time, header_overrides):
            msg.append_pair(tag, value)
        for tag, value in fields:
            msg.append_pair(tag, value)
        data: bytes = msg.encode()
        return data

    def send(self, msg_type: str, fields: Fields = (), *, seq: int | None = None,
             sending_time: str | None = None,
             header_overrides: Mapping[int, str | None] | None = None) -> int:
        """Send one message; returns the MsgSeqNum it carried."""
        used = self.next_seq if seq is None else seq
        self.send_raw(self.encode(msg_type, fields, seq=seq, sending_time=sending_time,
                                  header_overrides=header_overrides))
        return used

    def send_raw(self, data: bytes) -> None:
        assert self.sock is not None, "not connected"
        self.sent.append(data)
        self.sock.sendall(data)

    # ---- receiving ----------------------------------------------------------------------------
    def recv(self, timeout: float = 5.0) -> simplefix.FixMessage | None:
        """The next message, or None if nothing complete arrives within `timeout` seconds or
        the peer closed the connection (then `closed` is True)."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.parser.get_message()
            if msg is not None:
                self.received.append(msg)
                return msg
            if self.closed or self.sock is None:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return None
            except OSError:  # reset by peer counts as closed
                chunk = b""
            if not chunk:
                self.closed = True
            else:
                self.parser.append_buffer(chunk)

    def expect(self, msg_type: str, timeout: float = 5.0,
               match: Callable[[dict[int, str]], bool] | None = None) -> simplefix.FixMessage:
        """The next message, which must be of `msg_type` (and satisfy `match`, if given). Plain
        Heartbeats (35=0 without TestReqID) that do not match are skipped, since the acceptor
        may send them at any time; anything else unexpected fails with the transcript."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.0, deadline - time.monotonic()))
            if msg is None:
                raise AssertionError(
                    f"expected 35={msg_type} within {timeout} s, got "
                    f"{'connection closed' if self.closed else 'nothing'}\n{self.transcript()}")
            f = fields_of(msg)
            if f.get(MSG_TYPE) == msg_type and (match is None or match(f)):
                return msg
            if f.get(MSG_TYPE) == "0" and TEST_REQ_ID not in f:
                continue
            raise AssertionError(f"expected 35={msg_type}, got {show(msg)}\n{self.transcript()}")

    def quiet(self, timeout: float) -> list[simplefix.FixMessage]:
        """Everything but plain Heartbeats received within `timeout` s (expected: nothing)."""
        deadline = time.monotonic() + timeout
        got: list[simplefix.FixMessage] = []
        while (left := deadline - time.monotonic()) > 0:
            msg = self.recv(left)
            if msg is None:
                if self.closed:
                    break
                continue
            if fields_of(msg).get(MSG_TYPE) == "0" and msg.get(TEST_REQ_ID) is None:
                continue
            got.append(msg)
        return got

    def is_closed(self, timeout: float = 5.0) -> bool:
        """True if the peer closes the connection within `timeout` s (messages that arrive
        meanwhile are kept in `received`)."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.recv(left)
        return True

    def transcript(self) -> str:
        sent = "\n".join("  > " + d.replace(SOH, b"|").decode(errors="replace")
                         for d in self.sent[-12:])
        got = "\n".join("  < " + show(m) for m in self.received[-12:])
        return f"sent (last 12):\n{sent}\nreceived (last 12):\n{got}"

    # ---- session helpers ----------------------------------------------------------------------
    def logon(self, heartbeat_s: int = 5, *, reset: bool = False, seq: int | None = None,
              extra: Fields = (), timeout: float = 5.0) -> simplefix.FixMessage:
        """Send Logon (35=A 98=0 108=<hb>) and return the acceptor's Logon response."""
        fields: list[tuple[int, str]] = [(98, "0"), (108, str(heartbeat_s))]
        if reset:
            fields.append((141, "Y"))
        fields.extend(extra)
        self.send("A", fields, seq=seq)
        return self.expect("A", timeout)

    def test_request(self, test_req_id: str, timeout: float = 5.0,
                     seq: int | None = None) -> simplefix.FixMessage:
        """Send TestRequest (35=1 112=id); return the Heartbeat that must echo the id."""
        self.send("1", [(TEST_REQ_ID, test_req_id)], seq=seq)
        return self.expect("0", timeout, match=lambda f: f.get(TEST_REQ_ID) == test_req_id)

    def logout(self, timeout: float = 5.0) -> None:
        """Send Logout and wait for the acceptor's Logout and the close of the connection."""
        self.send("5")
        self.expect("5", timeout)
        assert self.is_closed(timeout), self.transcript()
