"""Kraken's trading-session logon fields (shared/kraken-api.md §6), added in toAdmin.

The password signs the logon's own MsgSeqNum, so it must be computed on the outgoing message
after QuickFIX has filled the header; if the logon carries ResetSeqNumFlag=Y, QuickFIX resets
to 1 after toAdmin returns, so 1 is what gets signed.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

import quickfix as fix

from gateway.fix.messages import (
    CANCEL_ON_DISCONNECT,
    KRAKEN_NONCE,
    MSG_SEQ_NUM,
    PASSWORD,
    RESET_SEQ_NUM_FLAG,
    SENDER_COMP_ID,
    TARGET_COMP_ID,
    USERNAME,
    get,
)
from gateway.kraken.auth import fix_logon_password


@dataclass(frozen=True)
class KrakenCredentials:
    api_key: str
    api_secret: str  # base64, as Kraken issues it

    def __repr__(self) -> str:  # never print the secret, even in a traceback
        return f"KrakenCredentials(api_key={self.api_key[:4]}…, api_secret=***)"


def add_trading_logon_fields(
    msg: fix.Message, creds: KrakenCredentials, cancel_on_disconnect: bool
) -> None:
    header = msg.getHeader()
    seq = 1 if get(msg, RESET_SEQ_NUM_FLAG) == "Y" else int(header.getField(MSG_SEQ_NUM))
    nonce = str(time.time_ns() // 1_000_000)
    password = fix_logon_password(
        creds.api_secret, seq, header.getField(SENDER_COMP_ID), header.getField(TARGET_COMP_ID),
        creds.api_key, nonce,
    )
    msg.setField(USERNAME, creds.api_key)
    msg.setField(PASSWORD, password)
    msg.setField(KRAKEN_NONCE, nonce)
    # 8674: 0 = cancel this session's orders on disconnect, 1 = leave them.
    msg.setField(CANCEL_ON_DISCONNECT, "0" if cancel_on_disconnect else "1")


def verify_trading_logon(
    msg: fix.Message, creds: KrakenCredentials, max_skew_s: float = 60.0
) -> str | None:
    """The venue's side of the check: None when good, else Kraken-style error text."""
    header = msg.getHeader()
    key, password, nonce = get(msg, USERNAME), get(msg, PASSWORD), get(msg, KRAKEN_NONCE)
    if key is None or password is None or nonce is None:
        return "EAPI:Invalid key (logon needs 553 Username, 554 Password and 5025 Nonce)"
    if key != creds.api_key:
        return "EAPI:Invalid key"
    if not nonce.isdigit() or abs(int(nonce) / 1000 - time.time()) > max_skew_s:
        return f"EAPI:Invalid nonce (5025 must be ms since epoch within {max_skew_s:.0f} s)"
    seq = 1 if get(msg, RESET_SEQ_NUM_FLAG) == "Y" else int(header.getField(MSG_SEQ_NUM))
    expected = fix_logon_password(
        creds.api_secret, seq, header.getField(SENDER_COMP_ID), header.getField(TARGET_COMP_ID),
        key, nonce,
    )
    if not hmac.compare_digest(expected.encode(), password.encode()):
        return "EAPI:Invalid signature"
    return None
