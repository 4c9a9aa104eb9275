"""Invalid business input gets an ExecutionReport reject (150=8, 39=8) with OrdRejReason and a
Text that says what was wrong; nothing reaches the venue."""

from __future__ import annotations

import pytest

from tests.conftest import Oms, new_id, order_fields


def _reject(oms: Oms, fields: list[tuple[int, str]]) -> dict[int, str]:
    cl = fields[0][1]
    oms.send("D", fields)
    r = oms.report(cl, "8")
    assert r.fields[39] == "8"
    return r.fields


@pytest.mark.parametrize(
    ("kwargs", "reason", "text"),
    [
        ({"symbol": "DOGE/USD"}, "1", "unknown symbol 'DOGE/USD'"),
        ({"qty": "0"}, "13", "OrderQty must be a positive number, got '0'"),
        ({"qty": "-1"}, "13", "OrderQty must be a positive number, got '-1'"),
        ({"ord_type": "2", "price": None}, "99", "limit order (OrdType 2) requires Price (44)"),
        ({"ord_type": "3"}, "11", "OrdType 3 (Stop) is not supported"),
        ({"tif": "0"}, "11", "TimeInForce 0 (Day) is not supported"),
        ({"price": "0"}, "99", "Price must be a positive number, got '0'"),
        ({"side": "5"}, "11", "Side '5' is not supported"),
    ],
)
def test_invalid_order_is_rejected_with_reason(oms: Oms, kwargs: dict[str, str | None],
                                               reason: str, text: str) -> None:
    base: dict[str, str | None] = {"side": "1", "qty": "0.01", "price": "20000.0",
                                   "symbol": "BTC/USD", "ord_type": None, "tif": "1"}
    base.update(kwargs)
    cl = new_id("V")
    f = _reject(oms, order_fields(cl, base["side"] or "1", base["qty"] or "", base["price"],
                                  symbol=base["symbol"] or "", ord_type=base["ord_type"],
                                  tif=base["tif"] or "1"))
    assert f[103] == reason
    assert text in f[58]
    assert f[54] == base["side"]  # the reject repeats the order as it was sent


def test_duplicate_clordid_rejected_original_untouched(oms: Oms) -> None:
    cl = oms.buy("0.01", "21000.0")
    oms.report(cl, "0")
    oms.send("D", order_fields(cl, "1", "0.02", "21000.0"))
    r = oms.report(cl, "8")
    assert r.fields[103] == "6"
    assert "duplicate ClOrdID" in r.fields[58]
    oms.send("H", [(11, cl), (55, "BTC/USD"), (54, "1")])
    st = oms.report(cl, "I")
    assert st.fields[39] == "0" and st.fields[38] == "0.01000000"
