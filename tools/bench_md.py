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
import socket
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
# Part 2: the real feed path, and venue 35=X -> book updated over a real FIX session.
# ---------------------------------------------------------------------------------------------
def feed_path_updates_per_s(messages: int = 20_000, entries_per_msg: int = 4) -> dict[str, Any]:
    """Level updates/s through MarketDataFeed's FIX handler (parse groups, apply, checksum
    check), fed pre-built 35=X messages: the gateway's whole per-message cost minus the socket."""
    import quickfix as fix

    from gateway.fix.messages import split_fields
    from gateway.marketdata.feed import MarketDataFeed
    from gateway.marketdata.fix_md import MdEntry, TopView, build_incremental, build_snapshot
    from gateway.marketdata.instruments import Instrument, InstrumentRegistry

    reg = InstrumentRegistry([Instrument.from_precision("BTC/USD", 1, 8, Decimal("0.0001"))])
    feed = MarketDataFeed(["BTC/USD"], 10, reg, stale_after_s=3600)
    feed.stop()
    sid = fix.SessionID("FIX.4.4", "FIXGW", "KRAKEN-MD")
    feed._subscribe("BTC/USD")  # registers the MDReqID (no session: nothing is sent)
    req = next(iter(feed._by_req))
    rng = random.Random(7)
    bids = {Decimal(45000) - Decimal(i) / 10: Decimal("1.00000000") for i in range(1, 11)}
    asks = {Decimal(45000) + Decimal(i) / 10: Decimal("1.00000000") for i in range(1, 11)}
    view = TopView(10, dict(bids), dict(asks))
    snap = build_snapshot(req, "BTC/USD", view, None)
    feed.on_app_message(snap, sid, split_fields(snap.toString()))
    msgs = []
    for n in range(1, messages + 1):
        entries = []
        for _ in range(entries_per_msg):
            side = rng.choice(("0", "1"))
            levels = bids if side == "0" else asks
            px = rng.choice(list(levels))
            qty = Decimal(rng.randint(1, 10**8)).scaleb(-8)
            levels[px] = qty
            entries.append(MdEntry("1", side, px, qty))
        x = build_incremental(req, "BTC/USD", entries, n, None)
        msgs.append((x, split_fields(x.toString())))
    t0 = time.perf_counter()
    for x, f in msgs:
        feed.on_app_message(x, sid, f)
    dt = time.perf_counter() - t0
    assert not feed.integrity_events, feed.integrity_events
    return {"messages": messages, "entries_per_message": entries_per_msg,
            "level_updates_per_s": round(messages * entries_per_msg / dt),
            "messages_per_s": round(messages / dt)}


def venue_md_to_book_latency_us(seconds: float = 5.0, flow_rate_hz: float = 200.0
                                ) -> dict[str, Any] | None:
    """p50/p99 from a 35=X's SendingTime at the simulator to the gateway's book being updated,
    over a real FIX MD session on loopback (same host clock; SendingTime has microseconds)."""
    import subprocess
    import tempfile
    from datetime import UTC, datetime

    import quickfix as fix

    from gateway.config.model import ScheduleConfig
    from gateway.fix.application import SessionApplication, StatusBoard
    from gateway.fix.engines import stop_engines
    from gateway.fix.messages import Fields
    from gateway.fix.settings import SessionBlock, SettingsFile, common_defaults
    from gateway.marketdata.feed import MarketDataFeed
    from gateway.marketdata.instruments import InstrumentRegistry

    tmp = Path(tempfile.mkdtemp(prefix="bench-md-"))
    sim = subprocess.Popen([sys.executable, "-m", "gateway.venue_sim", "--data-dir",
                            str(tmp / "sim"), "--flow-rate", "0", "--non-stop"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
    samples: list[float] = []

    class TimedFeed(MarketDataFeed):
        def on_app_message(self, msg: fix.Message, session_id: fix.SessionID,
                           fields: Fields) -> None:
            super().on_app_message(msg, session_id, fields)
            if fields.get("35") == "X":
                sent = datetime.strptime(fields["52"], "%Y%m%d-%H:%M:%S.%f").replace(tzinfo=UTC)
                samples.append(time.time() - sent.timestamp())

    try:
        assert sim.stdout is not None
        info = json.loads(sim.stdout.readline())
        feed = TimedFeed(["BTC/USD", "ETH/USD", "ARB/USD"], 10, InstrumentRegistry(), 3600)
        defaults = common_defaults(connection_type="initiator", store_dir=tmp / "store",
                                   log_dir=None, schedule=ScheduleConfig(mode="non-stop"))
        settings = SettingsFile(defaults, [SessionBlock("FIXGW", "KRAKEN-MD", {
            "SocketConnectHost": "127.0.0.1", "SocketConnectPort": str(info["md_port"]),
            "HeartBtInt": "30", "ReconnectInterval": "1", "ResetOnLogon": "Y"})]
        ).write(tmp / "md.cfg")
        app = SessionApplication(feed, "bench-md", StatusBoard())
        store = fix.FileStoreFactory(settings)
        initiator = fix.SocketInitiator(app, store, settings)
        initiator.start()
        time.sleep(1.0)
        with socket.create_connection(("127.0.0.1", info["control_port"])) as c:
            c.sendall(json.dumps({"cmd": "flow", "rate_hz": flow_rate_hz}).encode() + b"\n")
            c.makefile().readline()
            time.sleep(seconds)
            c.sendall(json.dumps({"cmd": "flow", "rate_hz": 0}).encode() + b"\n")
            c.makefile().readline()
        stop_engines([initiator])
        feed.stop()
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    if len(samples) < 100:
        return None
    samples.sort()
    return {"messages": len(samples),
            "p50_us": round(samples[len(samples) // 2] * 1e6, 1),
            "p99_us": round(samples[int(len(samples) * 0.99)] * 1e6, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--updates", type=int, default=300_000, help="level updates to time")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-fix", action="store_true",
                        help="skip the FIX-session latency part (no simulator process)")
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
    }
    feed = feed_path_updates_per_s()
    result["feed_path"] = feed
    result["feed_path_ratio_to_book"] = round(feed["level_updates_per_s"] / book["single"], 4)
    result["target_feed_level_updates_per_s"] = 50_000
    result["feed_meets_target"] = feed["level_updates_per_s"] >= 50_000
    if not args.no_fix:
        result["venue_35X_to_book"] = venue_md_to_book_latency_us()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
