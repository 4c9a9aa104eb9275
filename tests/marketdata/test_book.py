"""Book vs a naive reference after seeded random streams; crossing, depth, checksum, threads."""

from __future__ import annotations

import random
import threading
from decimal import Decimal

import pytest

from gateway.marketdata.book import Book, Level, Side, Stamp, TradeSide

D = Decimal
TICK = D("0.1")
LOT = D("0.00000001")


class RefBook:
    """Obviously-correct reference: plain dicts, sorted on every read."""

    def __init__(self, max_depth: int | None = None) -> None:
        self.sides: dict[str, dict[Decimal, Decimal]] = {"bid": {}, "ask": {}}
        self.max_depth = max_depth

    def update(self, side: str, price: Decimal, qty: Decimal) -> None:
        if qty:
            self.sides[side][price] = qty
        else:
            self.sides[side].pop(price, None)

    def truncate(self) -> None:
        if self.max_depth is None:
            return
        bids, asks = self.bids(), self.asks()
        self.sides["bid"] = dict(bids[: self.max_depth])
        self.sides["ask"] = dict(asks[: self.max_depth])

    def bids(self) -> list[tuple[Decimal, Decimal]]:
        return sorted(self.sides["bid"].items(), key=lambda kv: kv[0], reverse=True)

    def asks(self) -> list[tuple[Decimal, Decimal]]:
        return sorted(self.sides["ask"].items(), key=lambda kv: kv[0])


def random_stream(
    rng: random.Random, n: int, mid: int = 450_000
) -> list[tuple[str, Decimal, Decimal]]:
    out = []
    for _ in range(n):
        offset = int(rng.gauss(0, 40))
        # Mostly on the proper side of the mid, sometimes through it (tests crossing handling).
        side = "bid" if (offset < 0) != (rng.random() < 0.05) else "ask"
        price = D(mid + offset) * TICK
        qty = D(0) if rng.random() < 0.3 else D(rng.randint(1, 300_000_000)) * LOT
        out.append((side, price, qty))
    return out


def assert_same(book: Book, ref: RefBook) -> None:
    depth = book.depth(10_000)
    assert [tuple(lv) for lv in depth.bids] == ref.bids()
    assert [tuple(lv) for lv in depth.asks] == ref.asks()
    assert book.level_counts() == (len(ref.bids()), len(ref.asks()))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_updates_match_reference(seed: int) -> None:
    rng = random.Random(seed)
    book, ref = Book("BTC/USD"), RefBook()
    snap = random_stream(rng, 400)
    for side, price, qty in snap:
        ref.update(side, price, qty)
    book.apply_snapshot(ref.bids(), ref.asks())
    assert_same(book, ref)
    for i, (side, price, qty) in enumerate(random_stream(rng, 5_000)):
        book.apply_update(Side(side) if i % 2 else side, price, qty)
        ref.update(side, price, qty)
        if i % 500 == 0:
            assert_same(book, ref)
    assert_same(book, ref)
    top = book.top()
    rb, ra = ref.bids(), ref.asks()
    assert top.bid == (Level(*rb[0]) if rb else None)
    assert top.ask == (Level(*ra[0]) if ra else None)
    assert book.is_crossed() == bool(rb and ra and rb[0][0] >= ra[0][0])


@pytest.mark.parametrize("seed", [7, 8])
def test_batched_updates_with_depth_truncation_match_reference(seed: int) -> None:
    rng = random.Random(seed)
    book, ref = Book("BTC/USD", max_depth=25), RefBook(max_depth=25)
    stream = random_stream(rng, 6_000)
    for start in range(0, len(stream), 6):
        message = stream[start : start + 6]
        book.apply_updates(message)
        for side, price, qty in message:
            ref.update(side, price, qty)
        ref.truncate()
    assert_same(book, ref)
    nb, na = book.level_counts()
    assert nb <= 25 and na <= 25


def test_snapshot_replaces_and_ignores_zero_levels() -> None:
    book = Book("X")
    book.apply_update("bid", D("1.0"), D("5"))
    book.apply_snapshot([(D("2.0"), D("1")), (D("3.0"), D("0")), (D("1.5"), D("2"))], [])
    assert book.depth(5).bids == (Level(D("2.0"), D("1")), Level(D("1.5"), D("2")))
    assert book.depth(5).asks == ()
    assert book.top().ask is None and book.mid() is None and book.spread() is None


def test_removing_absent_level_is_a_noop() -> None:
    book = Book("X")
    book.apply_update("ask", D("10"), D("0"))
    assert book.level_counts() == (0, 0)


def test_depth_top_mid_spread_crossed() -> None:
    book = Book("BTC/USD")
    book.apply_snapshot(
        [(D("100.0"), D("1")), (D("99.5"), D("2")), (D("99.0"), D("3"))],
        [(D("101.0"), D("4")), (D("102.0"), D("5"))],
    )
    assert book.depth(2).bids == (Level(D("100.0"), D("1")), Level(D("99.5"), D("2")))
    assert book.depth(2).asks == (Level(D("101.0"), D("4")), Level(D("102.0"), D("5")))
    assert book.depth(0) == ((), ())
    assert book.mid() == D("100.5")
    assert book.spread() == D("1.0")
    assert not book.is_crossed()
    # mid is cached per book version: every change is seen by the next call
    book.apply_update("ask", D("100.8"), D("1"))
    assert book.mid() == D("100.4")
    book.apply_update("ask", D("100.8"), D("0"))
    assert book.mid() == D("100.5")
    book.apply_update("bid", D("101.0"), D("1"))  # locked: counts as crossed
    assert book.is_crossed()
    book.apply_update("bid", D("101.0"), D("0"))
    book.apply_update("bid", D("101.5"), D("1"))  # crossed
    assert book.is_crossed() and book.spread() == D("-0.5")
    book.apply_update("ask", D("101.0"), D("0"))
    book.apply_update("ask", D("102.0"), D("0"))
    assert not book.is_crossed()  # one side empty


def test_bad_inputs_rejected() -> None:
    book = Book("X")
    with pytest.raises(ValueError, match="side"):
        book.apply_update("buy", D("1"), D("1"))
    with pytest.raises(TypeError):
        book.apply_update("bid", 1.5, D("1"))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        book.apply_update("bid", D("1"), D("-1"))
    with pytest.raises(ValueError):
        book.apply_snapshot([(D("-1"), D("1"))], [])
    with pytest.raises(ValueError):
        Book("X", max_depth=0)


def test_checksum_matches_official_vector() -> None:
    # shared/kraken-api.md section 4, applied through the book (unordered input, deeper levels).
    bids = [
        ("45283.5", "0.10000000"), ("45283.4", "1.54582015"), ("45282.1", "0.10000000"),
        ("45281.0", "0.10000000"), ("45280.3", "1.54592586"), ("45279.0", "0.07990000"),
        ("45277.6", "0.03310103"), ("45277.5", "0.30000000"), ("45277.3", "1.54602737"),
        ("45276.6", "0.15445238"), ("45200.0", "9.0"),
    ]  # fmt: skip
    asks = [
        ("45285.2", "0.00100000"), ("45286.4", "1.54571953"), ("45286.6", "1.54571109"),
        ("45289.6", "1.54560911"), ("45290.2", "0.15890660"), ("45291.8", "1.54553491"),
        ("45294.7", "0.04454749"), ("45296.1", "0.35380000"), ("45297.5", "0.09945542"),
        ("45299.5", "0.18772827"), ("45400.0", "9.0"),
    ]  # fmt: skip
    book = Book("BTC/USD")
    rng = random.Random(0)
    b = [(D(p), D(q)) for p, q in bids]
    a = [(D(p), D(q)) for p, q in asks]
    rng.shuffle(b)
    rng.shuffle(a)
    book.apply_snapshot(b, a)
    assert book.checksum(1, 8) == 3310070434
    # An update changes it; undoing the update restores it.
    book.apply_update("ask", D("45285.2"), D("0"))
    assert book.checksum(1, 8) != 3310070434
    book.apply_update("ask", D("45285.2"), D("0.001"))
    assert book.checksum(1, 8) == 3310070434


def test_last_update_and_version() -> None:
    mono = iter(range(100, 10_000, 10))
    wall = iter(range(1_700_000_000_000_000_000, 1_700_000_000_000_100_000, 7))
    book = Book("X", monotonic_ns=lambda: next(mono), wall_ns=lambda: next(wall))
    assert book.last_update is None and book.version == 0
    book.apply_update("bid", D("1"), D("1"))
    assert book.last_update == Stamp(100, 1_700_000_000_000_000_000)
    book.apply_updates([("bid", D("1"), D("2")), ("ask", D("2"), D("1"))])
    assert book.version == 2  # one bump per message
    assert book.last_update == Stamp(110, 1_700_000_000_000_000_007)


def test_trades_ring() -> None:
    book = Book("X", trades_capacity=3)
    for i in range(5):
        book.record_trade(D(100 + i), D("0.5"), "buy" if i % 2 else TradeSide.SELL, time_ns=i)
    trades = book.trades()
    assert [t.price for t in trades] == [D(102), D(103), D(104)]
    assert [t.side for t in trades] == [TradeSide.SELL, TradeSide.BUY, TradeSide.SELL]
    assert trades[-1].time_ns == 4 and trades[-1].received_monotonic_ns > 0
    assert book.trades(1) == trades[-1:] and book.trades(0) == []
    book.clear()
    assert book.level_counts() == (0, 0) and len(book.trades()) == 3
    with pytest.raises(ValueError):
        book.record_trade(D(1), D(1), "bid")


def test_readers_never_see_half_a_message() -> None:
    """``apply_updates`` is atomic: readers see a message's book before or after, never between.

    Each message moves a one-level book up one tick in venue order: the new bid goes in at the
    old ask's price before that ask is deleted, then the new ask goes in and the old bid out.
    After any strict prefix of a message the book is locked, one-sided or two levels deep; after
    the whole message it is again one bid and one ask a tick apart, which is all readers may see.
    (The previous version of this test moved the book so that no prefix was ever crossed, so a
    level-by-level ``apply_updates`` passed it.)"""
    book = Book("X")
    book.apply_snapshot([(D(100), D(1))], [(D(101), D(1))])
    stop = threading.Event()
    errors: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            top = book.top()
            if top.bid is None or top.ask is None or top.ask.price - top.bid.price != 1:
                errors.append(f"half a message: top {top}")
                return
            bids, asks = book.depth(5)
            if len(bids) != 1 or len(asks) != 1:
                errors.append(f"half a message: depth {bids} / {asks}")
                return

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        for i in range(3_000):
            bid = D(100 + i)  # the book before: bid `bid`, ask `bid + 1`
            book.apply_updates(
                [
                    ("bid", bid + 1, D(1)),  # locked with the old ask ...
                    ("ask", bid + 1, D(0)),  # ... which goes: no ask at all ...
                    ("ask", bid + 2, D(1)),
                    ("bid", bid, D(0)),  # ... and two bids until the old one goes
                ]
            )
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert errors == []
    assert book.top() == ((D(3100), D(1)), (D(3101), D(1)))
