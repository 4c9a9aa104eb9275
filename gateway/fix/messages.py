"""Small, fast helpers over quickfix.Message for the hot path.

Tag numbers are named once here; building messages uses integer tags and strings directly
(`setField(int, str)`), which is the cheapest path through the SWIG binding (~0.6 µs a field).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

import quickfix as fix

# Header / session
MSG_TYPE: Final = 35
SENDER_COMP_ID: Final = 49
TARGET_COMP_ID: Final = 56
MSG_SEQ_NUM: Final = 34
POSS_DUP: Final = 43
POSS_RESEND: Final = 97
ORIG_SENDING_TIME: Final = 122
SENDING_TIME: Final = 52
TEXT: Final = 58
RESET_SEQ_NUM_FLAG: Final = 141
USERNAME: Final = 553
PASSWORD: Final = 554
KRAKEN_NONCE: Final = 5025
CANCEL_ON_DISCONNECT: Final = 8674

# Orders
ACCOUNT: Final = 1
AVG_PX: Final = 6
CL_ORD_ID: Final = 11
CUM_QTY: Final = 14
EXEC_ID: Final = 17
LAST_PX: Final = 31
LAST_QTY: Final = 32
ORDER_ID: Final = 37
ORDER_QTY: Final = 38
ORD_STATUS: Final = 39
ORD_TYPE: Final = 40
ORIG_CL_ORD_ID: Final = 41
PRICE: Final = 44
SIDE: Final = 54
SYMBOL: Final = 55
TIME_IN_FORCE: Final = 59
TRANSACT_TIME: Final = 60
ORD_REJ_REASON: Final = 103
CXL_REJ_REASON: Final = 102
EXEC_TYPE: Final = 150
LEAVES_QTY: Final = 151
CXL_REJ_RESPONSE_TO: Final = 434
MASS_CANCEL_REQUEST_TYPE: Final = 530
MASS_CANCEL_RESPONSE: Final = 531
MASS_CANCEL_REJECT_REASON: Final = 532
TOTAL_AFFECTED_ORDERS: Final = 533
MASS_STATUS_REQ_ID: Final = 584
MASS_STATUS_REQ_TYPE: Final = 585
TOT_NUM_REPORTS: Final = 911
LAST_RPT_REQUESTED: Final = 912

# BusinessMessageReject
REF_SEQ_NUM: Final = 45
REF_MSG_TYPE: Final = 372
BUSINESS_REJECT_REF_ID: Final = 379
BUSINESS_REJECT_REASON: Final = 380

# Market data
MD_REQ_ID: Final = 262
SUBSCRIPTION_REQUEST_TYPE: Final = 263
MARKET_DEPTH: Final = 264
MD_UPDATE_TYPE: Final = 265
NO_MD_ENTRY_TYPES: Final = 267
NO_MD_ENTRIES: Final = 268
MD_ENTRY_TYPE: Final = 269
MD_ENTRY_PX: Final = 270
MD_ENTRY_SIZE: Final = 271
MD_UPDATE_ACTION: Final = 279
NO_RELATED_SYM: Final = 146
MD_REQ_REJ_REASON: Final = 281

_SIDE_NAMES: Final = {"1": "buy", "2": "sell"}


SOH: Final = "\x01"
Fields = dict[str, str]


# FIX 4.4's data fields (type DATA) by the length field that precedes them
# (tests/unit/test_fix_messages.py checks this against fix_specs/). A data value may hold any
# byte, SOH and "=" included: only its length says where it ends.
DATA_FIELDS: Final = {
    "90": "91", "93": "89", "95": "96", "212": "213", "348": "349", "350": "351",
    "352": "353", "354": "355", "356": "357", "358": "359", "360": "361", "362": "363",
    "364": "365", "445": "446", "618": "619", "621": "622",
}
_DATA_LENGTHS: Final = frozenset(DATA_FIELDS)


def split_fields(raw: str) -> Fields:
    """Tag (as on the wire, e.g. "11") -> value, from one message string.

    One toString() and one split replace a dozen binding calls (each of which also releases and
    retakes the GIL): the order path reads every field it needs from this dict. For a repeated
    tag (repeating groups) the last occurrence wins, so group content is read with QuickFIX's
    group API instead.

    A message with a data field (EncodedText and the like) is read by length, not by SOH: a
    split would fail on a SOH inside the value, or worse, read "\x0138=100" inside it as an
    OrderQty that QuickFIX never validated.
    """
    body = raw[:-1]
    if body.count("=") == body.count(SOH) + 1:
        # No "=" inside a value (the usual case): one split at C speed, paired by zip.
        it = iter(body.replace("=", SOH).split(SOH))
        fields = dict(zip(it, it, strict=True))
        if _DATA_LENGTHS.isdisjoint(fields):
            return fields
        return split_fields_with_data(raw)
    fields = {}
    for part in raw.split(SOH)[:-1]:
        tag, eq, value = part.partition("=")
        if not eq or tag in _DATA_LENGTHS:
            return split_fields_with_data(raw)
        fields[tag] = value
    return fields


def split_fields_with_data(raw: str) -> Fields:
    """`split_fields` for a message with data fields: each data value is taken by the byte
    length its length field gives (the message string carries bytes that are not UTF-8 as
    surrogate escapes, as QuickFIX's binding hands them over). ValueError if it does not
    parse."""
    b = raw.encode("utf-8", "surrogateescape")
    fields: Fields = {}
    at, end = 0, len(b)
    data_tag, data_len = "", 0
    while at < end:
        eq = b.index(b"=", at)
        tag = b[at:eq].decode("ascii")
        if tag == data_tag:
            stop = eq + 1 + data_len
            if b[stop:stop + 1] != b"\x01":
                raise ValueError(f"data field {tag}: {data_len} bytes do not end at a SOH")
        else:
            stop = b.index(b"\x01", eq + 1)
        value = b[eq + 1:stop].decode("utf-8", "surrogateescape")
        fields[tag] = value
        at = stop + 1
        data_tag = DATA_FIELDS.get(tag, "")
        if data_tag:
            data_len = int(value)
    return fields


def decimal_field(value: Decimal) -> str:
    """A Decimal as a FIX Qty or Price value: plain digits, always. ``str()`` writes a zero
    with eight places as ``0E-8`` (and 0.0000001 as ``1E-7``), which FIX's float types do not
    allow: an OMS's engine rejects the whole message (seen with a venue's CumQty=0.00000000)."""
    return format(value, "f")


def get(msg: fix.FieldMap, tag: int) -> str | None:
    """A field's value, or None when absent (no exception on the common path)."""
    return msg.getField(tag) if msg.isSetField(tag) else None


def msg_type(msg: fix.Message) -> str:
    return str(msg.getHeader().getField(MSG_TYPE))


def new_message(msg_type_: str) -> fix.Message:
    m = fix.Message()
    m.getHeader().setField(MSG_TYPE, msg_type_)
    return m


def message_from_body(msg_type_: str, body: str) -> fix.Message:
    """A message from its body as FIX text (``"tag=value\x01"`` per field), parsed by QuickFIX
    in one call: a dozen ``setField`` calls cross the binding a dozen times, each giving up the
    GIL (~13 µs for an ExecutionReport against ~4 µs). QuickFIX fills in the header, BodyLength
    and CheckSum when it sends. No groups (parsed without a dictionary). The caller vouches
    that no value holds a SOH: one would split into fields of its own."""
    out = fix.Message()
    out.setString(f"8=FIX.4.4\x019=0\x0135={msg_type_}\x01{body}10=000\x01", False)
    return out


def message_from_fields(msg_type_: str, fields: Mapping[int, str]) -> fix.Message:
    """:func:`message_from_body` for values the caller cannot vouch for (a venue client's
    ClOrdID, a Text naming what it sent): a SOH in a value becomes "?" rather than a field of
    its own. Checked once over the whole body, so the common case costs one count."""
    body = "".join(f"{t}={v}\x01" for t, v in fields.items())
    if body.count("\x01") != len(fields):
        body = "".join(f"{t}={v.replace(chr(1), '?')}\x01" for t, v in fields.items())
    return message_from_body(msg_type_, body)


def mass_cancel_report(cl: str, req_type: str, report_id: str,
                       refused: tuple[str, str] | None = None) -> fix.Message:
    """An OrderMassCancelReport (35=r) for request `cl`; with `refused` (MassCancelRejectReason,
    Text) a refusal (531=0), else the caller sets what was accepted."""
    rep = new_message("r")
    rep.setField(CL_ORD_ID, cl)
    rep.setField(ORDER_ID, report_id)
    rep.setField(MASS_CANCEL_REQUEST_TYPE, req_type)
    if refused is not None:
        rep.setField(MASS_CANCEL_RESPONSE, "0")
        rep.setField(MASS_CANCEL_REJECT_REASON, refused[0])
        rep.setField(TEXT, refused[1])
    return rep


def utc_timestamp() -> str:
    """FIX UTCTimestamp with microseconds, e.g. 20260101-12:00:00.123456."""
    return datetime.now(UTC).strftime("%Y%m%d-%H:%M:%S.%f")


def strip_resend_header(msg: fix.Message) -> None:
    """Drop a forwarded message's resend markers: on the next hop it is a new message."""
    header = msg.getHeader()
    for tag in (POSS_DUP, POSS_RESEND, ORIG_SENDING_TIME):
        if header.isSetField(tag):
            header.removeField(tag)


class ExecIdSource:
    """Unique ExecIDs for reports the gateway itself originates (rejects, status answers)."""

    def __init__(self, prefix: str = "GW") -> None:
        self._prefix = f"{prefix}{time.time_ns() // 1000:x}-"
        self._seq = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._seq)}"


def side_name(side: str) -> str:
    return _SIDE_NAMES.get(side, side)

