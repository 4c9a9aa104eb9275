#!/usr/bin/env python3
"""Market-data micro-benchmarks; prints ONE JSON object on stdout.

    python tools/bench_md.py                  # default: 300k level updates, seed 42
    python tools/bench_md.py --updates 1000000 --seed 7

Why: the book sits on the market-data thread's hot path, and the budget is
>= 100,000 level updates/s in pure Python. A raw number depends on the machine, so the same run
also times a plain-dict baseline (the cheapest possible "book": no ordering, no lock, no
timestamps) over the *same* stream and reports the ratio. The ratio is the figure to watch in CI.

The stream is realistic for a crypto L2 feed: a random-walk mid, updates concentrated near the
touch (geometric distance in ticks), ~30 % deletes, quantities at 8 decimals, and a 1000-level
snapshot per side first. All Decimals are built before the clock starts.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

Update = tuple[str, Decimal, Decimal]


def make_stream(
    n: int, seed: int, levels: int = 1_000
) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]], list[Update]]:
    """Snapshot (bids, asks) and ``n`` updates; integer ticks converted to Decimal once."""
    rng = random.Random(seed)
    tick = Decimal("0.1")
    lot = Decimal("0.00000001")
    mid = 450_000  # in ticks: 45000.0

    def qty() -> Decimal:
        return Decimal(rng.randint(1, 500_000_000)) * lot

    bids = [(Decimal(mid - 1 - i) * tick, qty()) for i in range(levels)]
    asks = [(Decimal(mid + 1 + i) * tick, qty()) for i in range(levels)]
    updates: list[Update] = []
    for _ in range(n):
        if rng.random() < 0.001:  # occasional drift of the mid
            mid += rng.choice((-1, 1)) * rng.randint(1, 5)
        distance = min(int(rng.expovariate(1 / 8)), levels - 1)
        if rng.random() < 0.5:
            side, price_ticks = "bid", mid - 1 - distance
        else:
            side, price_ticks = "ask", mid + 1 + distance
        q = Decimal(0) if rng.random() < 0.3 else qty()
        updates.append((side, Decimal(price_ticks) * tick, q))
    return bids, asks, updates


def bench_book(
    bids: list[tuple[Decimal, Decimal]], asks: list[tuple[Decimal, Decimal]], updates: list[Update]
) -> dict[str, float]:
    from gateway.marketdata.book import Book

    book = Book("BTC/USD")
    book.apply_snapshot(bids, asks)
    apply = book.apply_update
    t0 = time.perf_counter()
    for side, price, q in updates:
        apply(side, price, q)
    single = len(updates) / (time.perf_counter() - t0)

    batched_book = Book("BTC/USD")
    batched_book.apply_snapshot(bids, asks)
    batch = 8  # a typical 35=X / WS frame carries a handful of levels
    chunks = [updates[i : i + batch] for i in range(0, len(updates), batch)]
    t0 = time.perf_counter()
    for chunk in chunks:
        batched_book.apply_updates(chunk)
    batched = len(updates) / (time.perf_counter() - t0)

    rounds = 2_000
    t0 = time.perf_counter()
    for _ in range(rounds):
        book.checksum(1, 8)
    checksums = rounds / (time.perf_counter() - t0)
    return {"single": single, "batched": batched, "checksums": checksums}


def bench_dict_baseline(updates: list[Update]) -> float:
    sides: dict[str, dict[Decimal, Decimal]] = {"bid": {}, "ask": {}}
    t0 = time.perf_counter()
    for side, price, q in updates:
        levels = sides[side]
        if q:
            levels[price] = q
        else:
            levels.pop(price, None)
    return len(updates) / (time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------
# PLACEHOLDER, part 2 of this benchmark (not implemented yet).
# ---------------------------------------------------------------------------------------------
def venue_md_to_book_p99_latency_us() -> float | None:
    """PLACEHOLDER: p99 latency from a venue 35=X leaving the simulator to the Book being updated.

    To be measured end to end once the market-data FIX session and the venue simulator are wired
    together (simulator stamps each 35=X, the MD handler records Book.last_update.monotonic_ns).
    Returns None until then, and the JSON reports null so that nobody mistakes it for a result.
    """
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--updates", type=int, default=300_000, help="level updates to time")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

    bids, asks, updates = make_stream(args.updates, args.seed)
    book = bench_book(bids, asks, updates)
    baseline = bench_dict_baseline(updates)
    result: dict[str, Any] = {
        "benchmark": "bench_md",
        "python": platform.python_version(),
        "updates": len(updates),
        "seed": args.seed,
        "snapshot_levels_per_side": len(bids),
        "level_updates_per_s": round(book["single"]),
        "level_updates_per_s_batched_8": round(book["batched"]),
        "baseline_dict_updates_per_s": round(baseline),
        "ratio_book_to_dict": round(book["single"] / baseline, 4),
        "target_level_updates_per_s": 100_000,
        "meets_target": book["single"] >= 100_000,
        "checksums_per_s": round(book["checksums"]),
        "venue_35X_to_book_p99_us": venue_md_to_book_p99_latency_us(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
