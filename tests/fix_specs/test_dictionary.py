"""fix_specs/FIX44-kraken.xml loads in QuickFIX and accepts/rejects what Kraken sends/forbids.

Messages are built as raw text (body length and checksum computed here) so the test exercises the
dictionary exactly as a session would on receipt, without relying on generated message classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

fix: Any = pytest.importorskip("quickfix")

DICT_PATH = Path(__file__).resolve().parents[2] / "fix_specs" / "FIX44-kraken.xml"
SOH = "\x01"


def raw(msg_type: str, body: str, sender: str = "CLIENT", target: str = "KRAKEN-TRD") -> str:
    """A complete FIX 4.4 message from a '|'-separated body."""
    header = f"35={msg_type}|49={sender}|56={target}|34=2|52=20231012-09:54:15.316|"
    content = (header + body).replace("|", SOH)
    prefix = f"8=FIX.4.4{SOH}9={len(content.encode())}{SOH}"
    checksum = sum((prefix + content).encode()) % 256
    return f"{prefix}{content}10={checksum:03d}{SOH}"


@pytest.fixture(scope="module")
def dd() -> Any:
    return fix.DataDictionary(str(DICT_PATH))


def validate(dd: Any, text: str) -> None:
    message = fix.Message(text, dd, True)
    dd.validate(message)


def assert_rejected(dd: Any, text: str, tag: int) -> None:
    with pytest.raises(Exception) as info:  # QuickFIX raises several exception types
        validate(dd, text)
    assert str(tag) in str(info.value)


def test_dictionary_loads_and_says_where_it_comes_from(dd: Any) -> None:
    head = DICT_PATH.read_text(encoding="ascii")[:4000]
    assert "QuickFIX" in head and "License" in head
    assert dd.getVersion() == "FIX.4.4"
    assert dd.isMsgType("x") and dd.isMsgType("y") and dd.isMsgType("r")


def test_trading_logon_with_kraken_fields(dd: Any) -> None:
    body = "98=0|108=60|141=Y|553=APIKEY|554=c2lnbmF0dXJl|109=7|8674=1|5025=1688736075072|5030=N|"
    validate(dd, raw("A", body))


def test_market_data_logon_only_standard_fields(dd: Any) -> None:
    validate(dd, raw("A", "98=0|108=60|141=Y|", target="KRAKEN-MD"))


def test_logon_enum_and_unknown_tag_rejected(dd: Any) -> None:
    assert_rejected(dd, raw("A", "98=0|108=60|8674=2|"), 8674)
    assert_rejected(dd, raw("A", "98=0|108=60|5030=X|"), 5030)
    assert_rejected(dd, raw("A", "98=0|108=60|5999=1|"), 5999)


def test_instrument_list_request_and_list(dd: Any) -> None:
    # Kraken's documented exchange (docs.kraken.com/api/docs/guides/spot-fix-checksums), plus a
    # second instrument to exercise the repeating group.
    validate(dd, raw("x", "55=BTC/USD|320=SLS1000002|559=0|", target="KRAKEN-MD"))
    body = (
        "320=SLS1000002|322=1697104455317568799|560=0|146=2|"
        "55=BTC/USD|562=0.00000001|5010=8|5011=0.0001|2349=1|5022=0.1|5032=1|"
        "55=ETH/USD|562=0.00000001|969=0.01|5010=8|5011=0.001|5012=10000|5013=0.5|2349=2|"
        "5022=0.01|5032=4|"
    )
    validate(dd, raw("y", body, sender="KRAKEN-MD", target="CLIENT"))
    # The group fields are really defined: an undefined one ends the group early, and the rest of
    # the entry then lands in the body, where it is not allowed.
    undefined = body.replace("5011=0.001|", "5999=1|")
    with pytest.raises(Exception, match=r"not defined|[Rr]epeating group"):
        validate(dd, raw("y", undefined, sender="KRAKEN-MD", target="CLIENT"))
    # Note: QuickFIX checks enum values of top-level fields only, not inside repeating groups,
    # so e.g. 5032=9 inside 146 is not rejected by the dictionary; the application must check.


NOS = "11=1623448294234000|55=BTC/USD|54=1|60=20231012-09:54:15.316|38=0.5|40={ord_type}|44=30000|"


@pytest.mark.parametrize("ord_type", ["1", "2", "3", "4", "R", "T", "U", "V"])
def test_kraken_ord_types_accepted(dd: Any, ord_type: str) -> None:
    validate(dd, raw("D", NOS.format(ord_type=ord_type)))


@pytest.mark.parametrize("ord_type", ["Z", "S"])
def test_unknown_ord_type_rejected(dd: Any, ord_type: str) -> None:
    assert_rejected(dd, raw("D", NOS.format(ord_type=ord_type)), 40)


def test_market_data_with_checksum(dd: Any) -> None:
    md = {"sender": "KRAKEN-MD", "target": "CLIENT"}
    snapshot = (
        "262=1|55=BTC/USD|268=2|"
        "269=0|278=B45283.5|270=45283.5|271=0.1|273=13:42:27.208|"
        "269=1|278=O45285.2|270=45285.2|271=0.001|273=13:42:27.208|5060=20231012-09:54:15.316123|"
        "5041=3310070434|"
    )
    validate(dd, raw("W", snapshot, **md))
    # Kraken's documented incremental example, with 55 at body level, plus a trade entry and a
    # checksum above 2**31 (why 5041 is STRING, not QuickFIX's signed 32-bit INT).
    incremental = (
        "55=BTC/USD|262=1|268=3|"
        "279=2|269=1|278=O30300.7|270=30300.7|271=0.0|273=13:42:27.208|"
        "279=0|269=1|278=O31941.0|270=31941.0|271=0.0031746|273=20:40:00.455|"
        "279=0|269=2|278=T1|270=31940.0|271=0.01|273=20:40:00.455|40=2|2446=1|"
        "5041=3310070434|"
    )
    validate(dd, raw("X", incremental, **md))


def test_order_mass_cancel_messages_present(dd: Any) -> None:
    validate(dd, raw("q", "11=MC1|530=7|60=20231012-09:54:15.316|"))
    report = "11=MC1|37=MC1|530=7|531=7|533=3|"
    validate(dd, raw("r", report, sender="KRAKEN-TRD", target="CLIENT"))


def test_only_additions_relative_to_upstream() -> None:
    """Every upstream message type, field and enum value is still there (we only add)."""
    import xml.etree.ElementTree as ET

    upstream_path = Path(fix.__file__).resolve().parents[3] / "share" / "quickfix" / "FIX44.xml"
    if not upstream_path.exists():
        pytest.skip("upstream FIX44.xml not installed next to quickfix")
    ours, upstream = ET.parse(DICT_PATH).getroot(), ET.parse(upstream_path).getroot()

    def inventory(root: ET.Element) -> set[str]:
        items = {f"msg:{m.get('msgtype')}" for m in root.iter("message")}
        for f in root.find("fields") or []:
            items.add(f"field:{f.get('number')}:{f.get('name')}:{f.get('type')}")
            items.update(f"enum:{f.get('number')}:{v.get('enum')}" for v in f.iter("value"))
        return items

    assert inventory(upstream) <= inventory(ours)
