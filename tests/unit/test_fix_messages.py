"""FIX value helpers of gateway.fix.messages."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from decimal import Decimal

import pytest

from gateway.fix.dictionary import message_tags
from gateway.fix.messages import (
    DATA_FIELDS,
    decimal_field,
    message_from_fields,
    split_fields,
)
from gateway.fix.settings import data_dictionary_path


@pytest.mark.parametrize(("value", "wire"), [
    ("0.00000000", "0.00000000"),  # str() gives 0E-8
    ("0.0000001", "0.0000001"),    # str() gives 1E-7
    ("1E+2", "100"),
    ("45000.5", "45000.5"),
    ("-0.25", "-0.25"),
])
def test_decimal_field_is_plain_digits(value: str, wire: str) -> None:
    assert decimal_field(Decimal(value)) == wire


def test_split_fields_with_and_without_equals_in_values() -> None:
    assert split_fields("35=D\x0111=A\x0158=x\x01") == {"35": "D", "11": "A", "58": "x"}
    assert split_fields("35=j\x0158=a=b\x01") == {"35": "j", "58": "a=b"}


def test_a_message_built_from_fields_keeps_each_value_in_its_own_field() -> None:
    msg = message_from_fields("8", {11: "A\x0138=100", 58: "plain", 38: "1"})
    fields = split_fields(msg.toString())
    assert fields["35"] == "8"
    assert fields["11"] == "A?38=100"  # a SOH in a value must not make a field of its own
    assert fields["38"] == "1" and fields["58"] == "plain"


def test_data_fields_are_every_length_and_data_pair_of_the_dictionary() -> None:
    fields = {f.get("name"): (f.get("number"), f.get("type"))
              for f in ET.parse(data_dictionary_path()).getroot().iter("field")
              if f.get("number")}
    pairs = {fields[name + suffix][0]: number for name, (number, kind) in fields.items()
             if kind == "DATA" for suffix in ("Len", "Length")
             if fields.get(name + suffix, ("", ""))[1] == "LENGTH"}
    assert pairs == DATA_FIELDS


@pytest.mark.parametrize("text", [b"plain", b"\x01\x01x\x00", b"a=b\x0138=100\x0154=Z",
                                  "日本".encode("shift_jis")])
def test_a_data_value_is_read_by_its_length_whatever_bytes_it_holds(text: bytes) -> None:
    value = text.decode("utf-8", "surrogateescape")  # as QuickFIX's binding hands bytes over
    raw = (f"8=FIX.4.4\x019=99\x0135=D\x0111=A\x0138=1\x0154=1\x0158=x=y\x01"
           f"354={len(text)}\x01355={value}\x0110=000\x01")
    f = split_fields(raw)
    assert (f["38"], f["54"], f["58"], f["10"]) == ("1", "1", "x=y", "000")
    assert f["355"].encode("utf-8", "surrogateescape") == text


def test_message_tags_include_header_trailer_components_and_groups() -> None:
    er = message_tags("8")
    # Header, body, Instrument (55), OrderQtyData (38), a group (NoContraBrokers 382, 375)
    # and the trailer.
    assert {"35", "49", "11", "150", "55", "38", "382", "375", "10"} <= er
    assert "5999" not in er and "553" not in er  # 553: Logon only
    assert message_tags("9") >= {"11", "41", "434", "102"} and message_tags("zz") == frozenset()
