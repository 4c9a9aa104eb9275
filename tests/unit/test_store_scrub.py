"""Blanking the venue credentials out of QuickFIX's stored Logons, in place."""

from __future__ import annotations

from pathlib import Path

from gateway.fix.store_scrub import LogonScrubber, scrub_body

SOH = "\x01"


def fix(*fields: str) -> bytes:
    body = SOH.join(fields) + SOH
    return (f"8=FIX.4.4{SOH}9={len(body)}{SOH}{body}10=000{SOH}").encode()


LOGON = fix("35=A", "34=1", "49=FIXGW", "56=KRAKEN-TRD", "98=0", "108=30", "553=KEY123",
            "554=c2VjcmV0cGFzc3dvcmQ=", "5025=1795616332242")
ORDER = fix("35=D", "34=2", "49=FIXGW", "56=KRAKEN-TRD", "11=553=KEY123", "55=BTC/USD")


def test_blanks_only_logon_credentials_keeping_every_offset(tmp_path: Path) -> None:
    body = tmp_path / "FIX.4.4-FIXGW-KRAKEN-TRD.body"
    original = LOGON + ORDER + LOGON.replace(b"34=1", b"34=3")
    body.write_bytes(original)
    blanked, end = scrub_body(body)
    data = body.read_bytes()
    assert (blanked, end, len(data)) == (4, len(original), len(original))
    assert b"KEY123" not in data.replace(ORDER, b"")  # the order's text is not a Logon field
    assert ORDER in data
    assert data.count(b"553=******" + SOH.encode()) == 2
    assert data.count(b"554=" + b"*" * len("c2VjcmV0cGFzc3dvcmQ=") + SOH.encode()) == 2
    blank = LOGON.replace(b"KEY123", b"******").replace(b"c2VjcmV0cGFzc3dvcmQ=", b"*" * 20)
    assert data == blank + ORDER + blank.replace(b"34=1", b"34=3")
    assert scrub_body(body, end) == (0, end)


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
