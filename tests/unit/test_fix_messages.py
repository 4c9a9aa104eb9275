"""FIX value helpers of gateway.fix.messages."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.fix.messages import decimal_field, split_fields


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
