"""FIX market-data messages shared by every publisher of books (the simulator's venue feed and
the gateway's fan-out to OMS sessions): snapshot (W) and incremental (X) builders, and the
top-N view diff that turns "the book changed" into exactly the entries one subscriber needs.

A subscriber of depth N must see a level that slides into its top N when a better one is
consumed, and must not see changes below its depth; diffing its previous top-N view against
the current one gives both, and keeps the checksum it computes equal to ours.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import quickfix as fix

from gateway.fix import messages as m
from gateway.kraken.checksum import book_checksum
from gateway.marketdata.book import Book

CHECKSUM_TAG = 5041   # Kraken ChecksumOrderBook
RPT_SEQ = 83          # per-symbol sequence of incrementals
AGGRESSOR_SIDE = 2446

BID, OFFER, TRADE = "0", "1", "2"
NEW, CHANGE, DELETE = "0", "1", "2"


@dataclass(slots=True, frozen=True)
class MdEntry:
    action: str       # 279: 0 new, 1 change, 2 delete
    entry_type: str   # 269: 0 bid, 1 offer, 2 trade
    price: Decimal
    qty: Decimal
    aggressor: str | None = None  # 2446 on trades: 1 buy, 2 sell


@dataclass
class TopView:
    """What one subscriber holds for one symbol: its top-N levels and its RptSeq."""

    depth: int
    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)
    rpt_seq: int = 0
    #: The book sides (BID, OFFER) the subscriber asked for (267); the other stays empty.
    sides: frozenset[str] = frozenset((BID, OFFER))

    def _levels(self, book: Book) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
        d = book.depth(self.depth)
        return ({lv.price: lv.qty for lv in d.bids} if BID in self.sides else {},
                {lv.price: lv.qty for lv in d.asks} if OFFER in self.sides else {})

    def reset_from(self, book: Book) -> None:
        self.bids, self.asks = self._levels(book)
        self.rpt_seq = 0

    def advance(self, book: Book) -> list[MdEntry]:
        """Move the view to the book's current top N; the entries that do it, bids first."""
        new_bids, new_asks = self._levels(book)
        out: list[MdEntry] = []
        for entry_type, old, new in ((BID, self.bids, new_bids), (OFFER, self.asks, new_asks)):
            for px in old.keys() - new.keys():
                out.append(MdEntry(DELETE, entry_type, px, Decimal(0)))
            for px, qty in new.items():
                prev = old.get(px)
                if prev is None:
                    out.append(MdEntry(NEW, entry_type, px, qty))
                elif prev != qty:
                    out.append(MdEntry(CHANGE, entry_type, px, qty))
        self.bids, self.asks = new_bids, new_asks
        return out

    def checksum(self, price_decimals: int, qty_decimals: int) -> int:
        return book_checksum(sorted(self.bids.items(), reverse=True), sorted(self.asks.items()),
                             price_decimals, qty_decimals)


def build_snapshot(req_id: str, symbol: str, view: TopView, checksum: int | None) -> fix.Message:
    w = m.new_message("W")
    w.setField(m.MD_REQ_ID, req_id)
    w.setField(m.SYMBOL, symbol)
    n = 0
    for entry_type, levels in ((BID, sorted(view.bids.items(), reverse=True)),
                               (OFFER, sorted(view.asks.items()))):
        for px, qty in levels:
            g = fix.Group(m.NO_MD_ENTRIES, m.MD_ENTRY_TYPE)
            g.setField(m.MD_ENTRY_TYPE, entry_type)
            g.setField(m.MD_ENTRY_PX, m.decimal_field(px))
            g.setField(m.MD_ENTRY_SIZE, m.decimal_field(qty))
            w.addGroup(g)
            n += 1
    if n == 0:
        w.setField(m.NO_MD_ENTRIES, "0")
    if checksum is not None:
        w.setField(CHECKSUM_TAG, str(checksum))
    return w


def build_incremental(req_id: str, symbol: str, entries: Iterable[MdEntry], rpt_seq: int,
                      checksum: int | None) -> fix.Message:
    x = m.new_message("X")
    x.setField(m.MD_REQ_ID, req_id)
    seq = str(rpt_seq)
    for e in entries:
        g = fix.Group(m.NO_MD_ENTRIES, m.MD_UPDATE_ACTION)
        g.setField(m.MD_UPDATE_ACTION, e.action)
        g.setField(m.MD_ENTRY_TYPE, e.entry_type)
        g.setField(m.SYMBOL, symbol)
        g.setField(m.MD_ENTRY_PX, m.decimal_field(e.price))
        if e.action != DELETE:
            g.setField(m.MD_ENTRY_SIZE, m.decimal_field(e.qty))
        g.setField(RPT_SEQ, seq)
        if e.aggressor is not None:
            g.setField(AGGRESSOR_SIDE, e.aggressor)
        x.addGroup(g)
    if checksum is not None:
        x.setField(CHECKSUM_TAG, str(checksum))
    return x


def group_values(msg: fix.Message, count_tag: int, tag: int) -> list[str]:
    """The `tag` of each entry of the repeating group `count_tag` (none: empty)."""
    out: list[str] = []
    g = fix.Group(count_tag, tag)
    for i in range(1, int(m.get(msg, count_tag) or "0") + 1):
        msg.getGroup(i, g)
        out.append(g.getField(tag))
    return out


def request_symbols(msg: fix.Message) -> list[str]:
    """The symbols of a MarketDataRequest (146 group)."""
    return group_values(msg, m.NO_RELATED_SYM, m.SYMBOL)


def md_request(req_id: str, symbol: str, sub_type: str = "1", depth: int = 10,
               entry_types: Sequence[str] = (BID, OFFER, TRADE),
               update_type: str = "1") -> fix.Message:
    """A MarketDataRequest (35=V) for one symbol: SubscriptionRequestType (263) `sub_type`,
    MarketDepth `depth`, incremental updates (265) and the MDEntryTypes (267) listed."""
    v = m.new_message("V")
    v.setField(m.MD_REQ_ID, req_id)
    v.setField(m.SUBSCRIPTION_REQUEST_TYPE, sub_type)
    v.setField(m.MARKET_DEPTH, str(depth))
    v.setField(m.MD_UPDATE_TYPE, update_type)
    for entry_type in entry_types:
        g = fix.Group(m.NO_MD_ENTRY_TYPES, m.MD_ENTRY_TYPE)
        g.setField(m.MD_ENTRY_TYPE, entry_type)
        v.addGroup(g)
    g = fix.Group(m.NO_RELATED_SYM, m.SYMBOL)
    g.setField(m.SYMBOL, symbol)
    v.addGroup(g)
    return v


def md_reject(req_id: str, reason: str | None, text: str) -> fix.Message:
    """MarketDataRequestReject (35=Y). MDReqRejReason (281): 0 unknown symbol, 1 duplicate
    MDReqID, 5 unsupported MarketDepth, 6 unsupported MDUpdateType, 8 unsupported MDEntryType;
    None: no code fits (an unsubscribe of an unknown MDReqID), the Text says it."""
    rej = m.new_message("Y")
    rej.setField(m.MD_REQ_ID, req_id)
    if reason is not None:
        rej.setField(m.MD_REQ_REJ_REASON, reason)
    rej.setField(m.TEXT, text)
    return rej


def number(g: fix.FieldMap, tag: int) -> Decimal:
    """A price or size of a venue's entry. ValueError naming the field for one that is not a
    number: QuickFIX passes any text in these fields, and decimal's own InvalidOperation
    says only "[<class 'decimal.ConversionSyntax'>]" (a NaN or an infinity is a number here;
    the book refuses it as a level)."""
    text = g.getField(tag)
    try:
        return Decimal(text)
    except ArithmeticError:
        raise ValueError(f"{tag}={text!r} is not a number") from None


def parse_incremental(msg: fix.Message) -> tuple[list[MdEntry], tuple[int, int] | None]:
    """The entries of an X, and the (first, last) RptSeq (83) among them, if any carries one.

    Both, because FIX 4.4 defines RptSeq "per instrument update": a venue may number each
    entry (1, 2, 3 in one message) or each message (every entry 1); either way the first must
    follow the previous message's last."""
    entries: list[MdEntry] = []
    first: int | None = None
    last = 0
    g = fix.Group(m.NO_MD_ENTRIES, m.MD_UPDATE_ACTION)
    for i in range(1, int(msg.getField(m.NO_MD_ENTRIES)) + 1):
        msg.getGroup(i, g)
        action = g.getField(m.MD_UPDATE_ACTION)
        qty = Decimal(0) if action == DELETE else number(g, m.MD_ENTRY_SIZE)
        if g.isSetField(RPT_SEQ):
            last = int(g.getField(RPT_SEQ))
            first = last if first is None else first
        aggressor = m.get(g, AGGRESSOR_SIDE)
        entries.append(MdEntry(action, g.getField(m.MD_ENTRY_TYPE),
                               number(g, m.MD_ENTRY_PX), qty, aggressor))
    return entries, None if first is None else (first, last)


def snapshot_rpt_seq(msg: fix.Message) -> int:
    """The RptSeq (83) of a full refresh, 0 without one: the baseline the next incremental's
    must follow. FIX 4.4 has none on a W; a venue that numbers its snapshots too sends it in
    the body, as FIX 5.0 defines it (an entry-level one would not pass the dictionary's group
    layout). ValueError for one that is not a number."""
    value = m.get(msg, RPT_SEQ)
    return 0 if value is None else int(value)


def entry_symbols(msg: fix.Message) -> list[str]:
    """The Symbol (55) of each entry of an X that names one (for one without MDReqID)."""
    out: list[str] = []
    g = fix.Group(m.NO_MD_ENTRIES, m.MD_UPDATE_ACTION)
    for i in range(1, int(m.get(msg, m.NO_MD_ENTRIES) or "0") + 1):
        msg.getGroup(i, g)
        symbol = m.get(g, m.SYMBOL)
        if symbol is not None:
            out.append(symbol)
    return out


def parse_snapshot(msg: fix.Message) -> tuple[list[tuple[Decimal, Decimal]],
                                              list[tuple[Decimal, Decimal]]]:
    """(bids, asks) of a full refresh; entries of other types (a trade) are not levels."""
    bids: list[tuple[Decimal, Decimal]] = []
    asks: list[tuple[Decimal, Decimal]] = []
    g = fix.Group(m.NO_MD_ENTRIES, m.MD_ENTRY_TYPE)
    for i in range(1, int(m.get(msg, m.NO_MD_ENTRIES) or "0") + 1):
        msg.getGroup(i, g)
        entry_type = g.getField(m.MD_ENTRY_TYPE)
        if entry_type not in (BID, OFFER):
            continue  # the last trade (269=2) a full refresh may carry: not a level of the book
        level = (number(g, m.MD_ENTRY_PX), number(g, m.MD_ENTRY_SIZE))
        (bids if entry_type == BID else asks).append(level)
    return bids, asks


def trades_only(entries: Sequence[MdEntry]) -> list[MdEntry]:
    return [e for e in entries if e.entry_type == TRADE]
