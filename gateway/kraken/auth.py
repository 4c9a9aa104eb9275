"""Kraken request signatures and nonces.

Every formula here is Kraken's, not ours; the authoritative notes with sources and test vectors are
in the team fact sheet ``shared/kraken-api.md`` (section 1 spot REST, section 2 futures REST and
WS challenge, section 6 FIX logon). The functions are pure so that the REST/WS clients, the FIX
session glue and the UAT venue simulator (which must *verify* what clients sign) share one
implementation and one set of regression vectors.

Security rules kept by every function below:
  * a secret never appears in an exception message, ``repr`` or log line;
  * secrets are taken as the base64 text Kraken hands out, decoded strictly (a typo in a config
    file must fail loudly at start-up, not as ``EAPI:Invalid signature`` at the first order).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "FIX_SOH",
    "NonceSource",
    "decode_secret",
    "fix_logon_message_input",
    "fix_logon_password",
    "futures_authent",
    "futures_ws_sign_challenge",
    "spot_api_sign",
]

FIX_SOH = "\x01"
"""FIX field separator; Kraken's MessageInput ends every field with it, including the last."""

_U64_MAX = (1 << 64) - 1


def decode_secret(secret_b64: str) -> bytes:
    """Decode a Kraken API secret, strictly.

    Strict (``validate=True``) because the lenient decoder silently drops stray characters, which
    turns a mangled secret into a *different* key and an opaque venue-side signature error. The
    error message describes the problem (length, alphabet) but never echoes the input.
    """
    if not isinstance(secret_b64, str):
        raise TypeError("API secret must be a str holding base64 text")
    text = secret_b64.strip()
    if not text:
        raise ValueError("API secret is empty")
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        # Deliberately no `from exc`: the chained binascii message can quote input fragments.
        raise ValueError(
            f"API secret is not valid base64 ({len(text)} characters; expected standard base64 "
            "alphabet with '=' padding to a multiple of 4); check the credential source"
        ) from None
    if not key:
        raise ValueError("API secret decodes to zero bytes")
    return key


def _b64_hmac_sha512(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha512).digest()).decode("ascii")


def spot_api_sign(secret_b64: str, uri_path: str, nonce: str | int, post_data: str) -> str:
    """Spot REST ``API-Sign`` header (kraken-api.md section 1).

    ``HMAC-SHA512(b64decode(secret), uri_path + SHA256(nonce + post_data))``, base64. The nonce is
    hashed twice on purpose (prefix and inside ``post_data``); ``post_data`` must be the exact
    url-encoded body that goes on the wire, because Kraken signs bytes, not parameters.
    """
    key = decode_secret(secret_b64)
    inner = hashlib.sha256((str(nonce) + post_data).encode("utf-8")).digest()
    return _b64_hmac_sha512(key, uri_path.encode("utf-8") + inner)


def futures_authent(
    secret_b64: str, endpoint_path: str, post_data: str, nonce: str | None = None
) -> str:
    """Futures REST ``Authent`` header (kraken-api.md section 2).

    ``HMAC-SHA512(b64decode(secret), SHA256(post_data + nonce + endpoint_path))``, base64. Unlike
    spot, the path is *inside* the SHA256 and comes last. Kraken signs the path without the
    ``/derivatives`` prefix, so it is stripped here and callers may pass the full URL path. When no
    ``Nonce`` header is sent, pass ``None`` and the nonce is left out of the concatenation.
    """
    key = decode_secret(secret_b64)
    path = endpoint_path.removeprefix("/derivatives")
    message = post_data + (nonce or "") + path
    return _b64_hmac_sha512(key, hashlib.sha256(message.encode("utf-8")).digest())


def futures_ws_sign_challenge(secret_b64: str, challenge: str) -> str:
    """Futures WebSocket ``signed_challenge`` (kraken-api.md section 2, "Futures WS private feeds").

    ``HMAC-SHA512(b64decode(secret), SHA256(challenge))``, base64: the same construction as
    ``Authent`` with the challenge as the whole message.
    """
    key = decode_secret(secret_b64)
    return _b64_hmac_sha512(key, hashlib.sha256(challenge.encode("utf-8")).digest())


def fix_logon_message_input(
    msg_seq_num: int, sender_comp_id: str, target_comp_id: str, api_key: str
) -> str:
    """The FIX logon ``MessageInput`` (kraken-api.md section 6), SOH after every field.

    Exposed separately so the venue simulator can rebuild it from a received Logon and so tests can
    pin the exact byte layout independently of the HMAC.
    """
    if msg_seq_num < 1:
        raise ValueError(f"MsgSeqNum must be >= 1, got {msg_seq_num}")
    s = FIX_SOH
    return f"35=A{s}34={msg_seq_num}{s}49={sender_comp_id}{s}56={target_comp_id}{s}553={api_key}{s}"


def fix_logon_password(
    secret_b64: str,
    msg_seq_num: int,
    sender_comp_id: str,
    target_comp_id: str,
    api_key: str,
    nonce: str,
) -> str:
    """FIX Logon ``554 Password`` (kraken-api.md section 6).

    ``HMAC-SHA512(b64decode(secret), SHA256(MessageInput + nonce))``, base64, where ``nonce`` is the
    value sent in ``5025`` (ms since epoch; Kraken rejects it if more than ~5 s from server time,
    so it is *not* a :class:`NonceSource` value). ``msg_seq_num`` must be the 34 of the Logon
    actually sent: after a sequence reset it is 1, after a reconnect without reset it is not.
    """
    key = decode_secret(secret_b64)
    message = fix_logon_message_input(msg_seq_num, sender_comp_id, target_comp_id, api_key) + nonce
    return _b64_hmac_sha512(key, hashlib.sha256(message.encode("utf-8")).digest())


class NonceSource:
    """Strictly increasing unsigned 64-bit nonces for one API key, in **microseconds** since epoch.

    Why microseconds: Kraken only needs "greater than the last one accepted for this key"
    (kraken-api.md section 1). Milliseconds (Kraken's quickstart) cap a process at 1000 requests/s
    before the counter runs ahead of the clock; microseconds leave room while staying far below
    2**64 (good until year ~586,000). A key whose last nonce came from a tool using a *larger* unit
    (python-kraken-sdk uses ``time * 1e8``) will get ``EAPI:Invalid nonce`` from us: use a fresh
    key or pass ``units_per_second`` to match.

    Why a lock: several threads (order entry, reconciliation, the dead-man's switch) share one key,
    and Kraken's error guide recommends a mutex-guarded counter over the raw clock.

    Why a file: after a restart with a clock that stepped backwards (NTP, VM migration) the clock
    alone could repeat a nonce. With ``state_path`` set, the source persists a *reservation* (a
    value at least ``reserve`` units above anything it has issued) atomically (temp file, fsync,
    ``os.replace``), and on start resumes at ``max(clock, persisted + 1)``. Reserving ahead means
    the file is written about once per ``reserve`` units of progress, not once per nonce, and a
    crash can never lose a value already handed out.

    One source per key per process: two processes sharing a key (or a state file) need their own
    keys, because nothing here coordinates across processes.
    """

    def __init__(
        self,
        state_path: str | os.PathLike[str] | None = None,
        *,
        units_per_second: int = 1_000_000,
        reserve: int | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        if units_per_second <= 0 or 1_000_000_000 % units_per_second != 0:
            raise ValueError("units_per_second must be a positive divisor of 1_000_000_000")
        self._ns_per_unit = 1_000_000_000 // units_per_second
        self._reserve = units_per_second if reserve is None else reserve  # ~1 s of clock by default
        if self._reserve < 1:
            raise ValueError("reserve must be >= 1")
        self._clock_ns = clock_ns
        self._path = Path(state_path) if state_path is not None else None
        self._lock = threading.Lock()
        self._last = 0
        self._reserved = 0
        if self._path is not None:
            persisted = self._read_state(self._path)
            # Everything up to `persisted` may have been issued before the restart.
            self._last = persisted
            self._reserved = persisted

    @property
    def unit(self) -> str:
        """Human name of the nonce unit, for logs and config validation messages."""
        return {1: "ns", 1_000: "us", 1_000_000: "ms", 1_000_000_000: "s"}.get(
            self._ns_per_unit, f"{self._ns_per_unit}ns"
        )

    @property
    def last(self) -> int:
        """The last nonce handed out (or the persisted high-water mark before the first call)."""
        with self._lock:
            return self._last

    def next(self) -> int:
        """Return a nonce strictly greater than every nonce this key has been given by us."""
        with self._lock:
            candidate = max(self._clock_ns() // self._ns_per_unit, self._last + 1)
            if candidate > _U64_MAX:
                raise OverflowError("nonce would exceed the unsigned 64-bit range")
            if self._path is not None and candidate > self._reserved:
                reserved = min(candidate + self._reserve, _U64_MAX)
                self._write_state(self._path, reserved)  # persist *before* handing it out
                self._reserved = reserved
            self._last = candidate
            return candidate

    def next_str(self) -> str:
        """Convenience for form bodies and headers, which carry the nonce as decimal text."""
        return str(self.next())

    @staticmethod
    def _read_state(path: Path) -> int:
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise OSError(f"cannot read nonce state file {path}: {exc.strerror}") from None
        if not text.isdigit():
            raise ValueError(
                f"nonce state file {path} is corrupt (expected one unsigned integer); refusing to "
                "guess a high-water mark, fix or delete it after checking the key's last nonce"
            )
        value = int(text)
        if value > _U64_MAX:
            raise ValueError(f"nonce state file {path} holds a value above 2**64-1")
        return value

    @staticmethod
    def _write_state(path: Path, value: int) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, f"{value}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
