"""The tags the data dictionary (fix_specs/) allows in each message type, read once.

The venue sessions take fields the dictionary does not know (Kraken documents no complete tag
list, and a strict session would Reject and so lose an ExecutionReport over one new tag), but
an OMS's engine is usually strict: what the gateway passes on to an OMS is cut back to what the
OMS-side dictionary allows.

May import: the standard library and gateway.fix.settings.
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from collections.abc import Iterator

from gateway.fix.settings import data_dictionary_path


@functools.cache
def _root() -> ET.Element:
    return ET.parse(data_dictionary_path()).getroot()


@functools.cache
def _numbers() -> dict[str, str]:
    fields = _root().find("fields")
    assert fields is not None
    return {f.get("name", ""): f.get("number", "") for f in fields.iter("field")}


def _tags(node: ET.Element, components: dict[str, ET.Element]) -> Iterator[str]:
    """Every field tag under `node`: its fields, its groups' counters and contents, and its
    components' (recursively)."""
    for child in node:
        if child.tag in ("field", "group"):
            yield _numbers()[child.get("name", "")]
        if child.tag == "group":
            yield from _tags(child, components)
        elif child.tag == "component":
            yield from _tags(components[child.get("name", "")], components)


@functools.cache
def message_tags(msg_type: str) -> frozenset[str]:
    """Header, body and trailer tags a message of `msg_type` may carry; empty if the
    dictionary has no such message."""
    root = _root()
    defined = root.find("components")  # not root.iter: messages hold empty references too
    comps = {c.get("name", ""): c for c in (defined if defined is not None else ())}
    msg = next((x for x in root.iter("message") if x.get("msgtype") == msg_type), None)
    if msg is None:
        return frozenset()
    parts = [root.find("header"), msg, root.find("trailer")]
    return frozenset(t for part in parts if part is not None for t in _tags(part, comps))
