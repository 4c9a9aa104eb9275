"""Blanking the venue credentials out of QuickFIX's stored Logons, in place."""

from __future__ import annotations

from pathlib import Path

import pytest
import quickfix

from gateway.fix.store_scrub import LogonScrubber, scrub_body

SOH = "\x01"


def fix(*fields: str) -> bytes:
    body = SOH.join(fields) + SOH
    head = f"8=FIX.4.4{SOH}9={len(body)}{SOH}{body}".encode()
    return head + b"10=%03d\x01" % (sum(head) % 256)


def logon(key: str = "KEY123", password: str = "c2VjcmV0cGFzc3dvcmQ=", seq: int = 1) -> bytes:
    return fix("35=A", f"34={seq}", "49=FIXGW", "56=KRAKEN-TRD", "98=0", "108=30", f"553={key}",
               f"554={password}", "5025=1795616332242")


def parses_with_checksum(data: bytes) -> bool:
    """Every message in a store body parses the way QuickFIX parses a stored one before a
    resend (BodyLength and CheckSum validated); raises InvalidMessage otherwise."""
    for part in data.decode().split("8=FIX.4.4")[1:]:
        quickfix.Message().setString("8=FIX.4.4" + part, True)
    return True


LOGON = logon()
BLANK = logon("******", "*" * 20)
ORDER = fix("35=D", "34=2", "49=FIXGW", "56=KRAKEN-TRD", "11=553=KEY123", "55=BTC/USD")


def test_blanks_only_logon_credentials_keeping_every_offset(tmp_path: Path) -> None:
    body = tmp_path / "FIX.4.4-FIXGW-KRAKEN-TRD.body"
    original = LOGON + ORDER + logon(seq=3)
    body.write_bytes(original)
    blanked, end = scrub_body(body)
    data = body.read_bytes()
    assert (blanked, end, len(data)) == (4, len(original), len(original))
    assert b"KEY123" not in data.replace(ORDER, b"")  # the order's text is not a Logon field
    assert ORDER in data
    assert data.count(b"553=******" + SOH.encode()) == 2
    assert data.count(b"554=" + b"*" * len("c2VjcmV0cGFzc3dvcmQ=") + SOH.encode()) == 2
    assert data == BLANK + ORDER + logon("******", "*" * 20, seq=3)  # checksums recomputed
    assert parses_with_checksum(data)
    assert scrub_body(body, end) == (0, end)


def test_a_stale_checksum_is_what_quickfix_refuses() -> None:
    """Why the scrubber recomputes it: QuickFIX will not parse (and so not resend past) a
    stored message whose CheckSum no longer matches."""
    with pytest.raises(quickfix.InvalidMessage):
        parses_with_checksum(LOGON.replace(b"KEY123", b"******"))


def test_partial_logon_waits_and_reset_store_is_rescanned(tmp_path: Path) -> None:
    body = tmp_path / "FIX.4.4-FIXGW-KRAKEN-TRD.body"
    half = LOGON[: LOGON.index(b"10=")]
    body.write_bytes(ORDER + half)
    blanked, end = scrub_body(body)
    assert blanked == 0 and len(ORDER) < end < len(ORDER) + 20  # resumes at the open Logon
    body.write_bytes(ORDER + LOGON)
    assert scrub_body(body, end)[0] == 2
    body.write_bytes(LOGON)  # a new session day: the store starts over, shorter
    assert scrub_body(body, 10_000)[0] == 2


def test_scrubber_covers_every_body_in_the_store(tmp_path: Path) -> None:
    (tmp_path / "FIX.4.4-FIXGW-KRAKEN-TRD.body").write_bytes(LOGON)
    (tmp_path / "FIX.4.4-FIXGW-KRAKEN-MD.body").write_bytes(LOGON)
    s = LogonScrubber(tmp_path)
    assert s.scrub() == 4
    assert s.scrub() == 0
    assert all(b"KEY123" not in p.read_bytes() for p in tmp_path.glob("*.body"))
