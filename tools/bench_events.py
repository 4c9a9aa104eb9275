#!/usr/bin/env python3
"""Benchmark the event stream; prints ONE JSON object.

    python tools/bench_events.py [--quick] [--only-fix-rtt]

What it measures, and why this way:
* Delivery throughput to 1 and 10 subscribers, batched (`EventBatch` of up to 500 events) and
  single-event (`max_batch_events=1`, i.e. one event per stream message: the baseline that
  batching must beat), both measured in the same run on the same events so the ratio is
  meaningful on any machine. Subscribers replay events already in the log's memory ring, which
  isolates the streaming path; they run in a separate process (as real clients do) so they do
  not share the server's GIL.
* Live delivery: the publisher thread publishes while 1 or 10 subscribers follow live; the rate
  is events / (last event received - first publish), i.e. end to end inside one gateway process.
* `publish()` cost on the caller's thread (p50/p99/p99.9 in µs, timer overhead included), with
  the journal on and the gRPC server running: paced (~5k/s, like FIX traffic) with no and with
  10 live subscribers, and back-to-back. With a journal (as here) the journal writer, not the
  publisher, wakes the server's loop once events are written (subscribers are sent only what
  the journal has); the second server on the same log, configured with `wake_interval_s`, shows
  the same figure, as the two only differ for a log without a journal.
* Machine load average is reported: other processes on a 2-core box move every figure.
* The FIX round trip (NewOrderSingle -> first ExecutionReport, µs) against one `fixgw run`
  process with 10 live EventService subscribers vs none, rounds alternating A/B; subscribers in
  a separate process. Target: p99 ratio <= 1.25. `--only-fix-rtt` runs just this part.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from gateway._proto.fixgw.v1 import events_pb2, events_pb2_grpc  # noqa: E402
from gateway.events import EventLog, EventLogConfig, EventServer, EventServerConfig  # noqa: E402
from gateway.events import builders as b  # noqa: E402

RAW = (
    b"8=FIX.4.4\x019=230\x0135=8\x0134=1042\x0149=KRAKEN\x0152=20240501-12:00:00.123\x01"
    b"56=FIXGW\x011=ACC1\x016=65000.10\x0111=GW-123456\x0114=0.5\x0117=E-778899\x0131=65000.10\x01"
    b"32=0.5\x0137=OABC-123\x0138=2\x0139=1\x0140=2\x0144=65000.10\x0154=1\x0155=XBT/USD\x01"
    b"59=1\x0160=20240501-12:00:00.120\x01150=F\x01151=1.5\x0110=123\x01"
)


def _template() -> bytes:
    return b.order_event(
        "execution_report",
        source=b.EventSource.fix("FIX.4.4:FIXGW->KRAKEN"),
        symbol="XBT/USD",
        account="ACC1",
        cl_ord_id="OMS-123456",
        venue_cl_ord_id="GW-123456",
        order_id="OABC-123",
        exec_id="E-778899",
        exec_type="F",
        ord_status="1",
        side="1",
        ord_type="2",
        time_in_force="1",
        price="65000.10",
        order_qty="2",
        cum_qty="0.5",
        leaves_qty="1.5",
        avg_px="65000.10",
        last_px="65000.10",
        last_qty="0.5",
        venue_time="20240501-12:00:00.120",
        raw_fix=RAW,
    ).SerializeToString()


# ------------------------------------------------------------------------ client process


def _subscriber(
    target: str, request: events_pb2.SubscribeRequest, count: int, out: list[Any], idx: int
) -> None:
    with grpc.insecure_channel(target) as ch:
        stub = events_pb2_grpc.EventServiceStub(ch)
        t0 = time.monotonic_ns()
        stream = stub.Subscribe(request, timeout=300)
        got = 0
        messages = 0
        last_seq = 0
        err = None
        try:
            for batch in stream:
                messages += 1
                got += len(batch.events)
                last_seq = batch.events[-1].sequence
                if got >= count:
                    break
        except grpc.RpcError as exc:
            err = f"{exc.code()}: {exc.details()}"
        t1 = time.monotonic_ns()
        stream.cancel()
    out[idx] = {
        "t0": t0,
        "t1": t1,
        "events": got,
        "messages": messages,
        "last": last_seq,
        "err": err,
    }


def _client_worker(conn: Connection) -> None:
    """Runs subscriber threads on command; one process for all scenarios (spawn cost once)."""
    while True:
        cmd = conn.recv()
        if cmd is None:
            return
        target, n_subs, req_bytes, count = cmd
        request = events_pb2.SubscribeRequest.FromString(req_bytes)
        out: list[Any] = [None] * n_subs
        threads = [
            threading.Thread(target=_subscriber, args=(target, request, count, out, i))
            for i in range(n_subs)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        conn.send(out)


# ------------------------------------------------------------------------ server side


class Bench:
    def __init__(self, tmp: Path, ring: int) -> None:
        self.log = EventLog(EventLogConfig(journal_dir=tmp / "journal", ring_capacity=ring))
        self.servers = {
            "immediate": EventServer(
                self.log, EventServerConfig(port=0, max_lag_events=ring - 1024)
            ),
            "poll": EventServer(
                self.log,
                EventServerConfig(port=0, max_lag_events=ring - 1024, wake_interval_s=0.0005),
            ),
        }
        self.targets = {k: f"127.0.0.1:{srv.start()}" for k, srv in self.servers.items()}
        self.server = self.servers["immediate"]
        self.target = self.targets["immediate"]
        self.template = _template()
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_client_worker, args=(child,), daemon=True)
        self.proc.start()

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join(10)
        for srv in self.servers.values():
            srv.stop(0)
        self.log.close()

    def events(self, n: int) -> list[events_pb2.Event]:
        parse = events_pb2.Event.FromString
        tpl = self.template
        return [parse(tpl) for _ in range(n)]

    def publish_all(self, n: int) -> int:
        first = self.log.next_sequence
        for ev in self.events(n):
            self.log.publish(ev)
        self.log.flush(60)
        return first

    def replay(self, n_subs: int, first: int, count: int, max_batch: int) -> dict[str, Any]:
        req = events_pb2.SubscribeRequest(from_sequence=first, max_batch_events=max_batch)
        self.conn.send((self.target, n_subs, req.SerializeToString(), count))
        res: list[dict[str, Any]] = self.conn.recv()
        return _summarize(res, count, min(r["t0"] for r in res))

    def live(self, n_subs: int, count: int, paced: bool, wake: str = "immediate") -> dict[str, Any]:
        """Subscribers follow live while this thread publishes; returns rates and publish cost."""
        server, target = self.servers[wake], self.targets[wake]
        first = self.log.next_sequence
        req = events_pb2.SubscribeRequest(from_sequence=first)
        deadline = time.monotonic() + 30
        while any(s.subscriber_count for s in self.servers.values()):  # previous streams closing
            if time.monotonic() > deadline:
                raise RuntimeError("previous subscribers did not go away")
            time.sleep(0.01)
        if n_subs:
            self.conn.send((target, n_subs, req.SerializeToString(), count))
            while server.subscriber_count < n_subs:
                if time.monotonic() > deadline:
                    raise RuntimeError("subscribers did not connect")
                time.sleep(0.01)
        events = self.events(count)
        costs = []
        publish = self.log.publish
        clock = time.perf_counter_ns
        t_start = time.monotonic_ns()
        for ev in events:
            t0 = clock()
            publish(ev)
            costs.append(clock() - t0)
            if paced:
                time.sleep(0.0001)  # ~5k/s after sleep granularity: FIX-like arrivals
        t_end = time.monotonic_ns()
        out: dict[str, Any] = {"publish_us": _percentiles(costs)}
        out["publish_rate_per_s"] = round(count / ((t_end - t_start) / 1e9))
        if n_subs:
            res: list[dict[str, Any]] = self.conn.recv()
            out["delivery"] = _summarize(res, count, t_start)
        return out


def _percentiles(ns: list[int]) -> dict[str, float]:
    s = sorted(ns)

    def q(p: float) -> float:
        return round(s[min(len(s) - 1, int(p * len(s)))] / 1000, 2)

    return {
        "p50": q(0.50),
        "p99": q(0.99),
        "p99_9": q(0.999),
        "mean": round(statistics.fmean(s) / 1000, 2),
    }


def _summarize(res: list[dict[str, Any]], count: int, t_start: int) -> dict[str, Any]:
    errors = [r["err"] for r in res if r["err"]]
    per_sub = [r["events"] / ((r["t1"] - t_start) / 1e9) for r in res]
    wall = (max(r["t1"] for r in res) - t_start) / 1e9
    total_events = sum(r["events"] for r in res)
    messages = sum(r["messages"] for r in res)
    return {
        "subscribers": len(res),
        "events_per_subscriber": count,
        "events_per_s_total": round(total_events / wall),
        "events_per_s_per_subscriber_min": round(min(per_sub)),
        "events_per_stream_message": round(total_events / max(1, messages), 1),
        "complete": all(r["events"] >= count for r in res) and not errors,
        "errors": errors[:3],
    }


def fix_round_trip_with_subscribers(
    quick: bool = False, subscribers: int = 10
) -> dict[str, Any] | None:
    """OMS -> gateway -> venue -> gateway -> OMS round trip (µs) with `subscribers` live
    EventService subscribers vs none, against ONE gateway process, rounds alternating A/B.

    See `tools/benchlib/events_rtt.py`: simulator, gateway and the subscribers (one process, a
    thread each) are separate processes; this process is the OMS. Reports p50/p99/p99.9 of both
    conditions, their ratios, `meets_target` (p99 ratio <= 1.25) and what the subscribers got
    (events delivered, gaps, lag at the end of each round, catch-up time, delivery latency).
    """
    from tools.benchlib.events_rtt import measure_fix_rtt

    if quick:
        return measure_fix_rtt(rounds=2, orders=600, warmup=50, subscribers=subscribers)
    return measure_fix_rtt(rounds=8, orders=8000, warmup=100, subscribers=subscribers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (smoke run)")
    parser.add_argument(
        "--only-fix-rtt",
        action="store_true",
        help="only the FIX round trip with/without subscribers (skips the in-process parts)",
    )
    args = parser.parse_args()
    k = 0.1 if args.quick else 1.0
    n_batched_1 = int(200_000 * k)
    n_batched_10 = int(50_000 * k)
    n_single_1 = int(30_000 * k)
    n_single_10 = int(5_000 * k)
    n_live = int(100_000 * k)
    n_pub = int(20_000 * k)

    result: dict[str, Any] = {
        "machine": {
            "cpus": mp.cpu_count(),
            "python": platform.python_version(),
            "grpcio": grpc.__version__,
            "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
        }
    }
    if args.only_fix_rtt:
        rtt = fix_round_trip_with_subscribers(quick=args.quick)
        assert rtt is not None
        result["fix_round_trip_us"] = rtt
        result["targets"] = {"fix_rtt_p99_ratio_le_1_25": rtt["meets_target"]}
        result["machine"]["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
        print(json.dumps(result, indent=2))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench_events_") as tmp:
        bench = Bench(Path(tmp), ring=1 << 18)
        try:
            first = bench.publish_all(n_batched_1)
            bench.replay(1, first, 1000, 0)  # warm-up (connections, code paths)
            batched_1 = bench.replay(1, first, n_batched_1, 0)
            batched_10 = bench.replay(10, first, n_batched_10, 0)
            single_1 = bench.replay(1, first, n_single_1, 1)
            single_10 = bench.replay(10, first, n_single_10, 1)
            result["replay"] = {
                "batched": {"1_subscriber": batched_1, "10_subscribers": batched_10},
                "single_event": {"1_subscriber": single_1, "10_subscribers": single_10},
                "ratios_batched_vs_single": {
                    "1_subscriber": round(
                        batched_1["events_per_s_total"] / single_1["events_per_s_total"], 2
                    ),
                    "10_subscribers": round(
                        batched_10["events_per_s_total"] / single_10["events_per_s_total"], 2
                    ),
                },
            }
            live_1 = bench.live(1, n_live, paced=False)
            live_10 = bench.live(10, n_live // 2, paced=False)
            result["live_burst"] = {"1_subscriber": live_1, "10_subscribers": live_10}
            result["publish_cost_us"] = {
                "paced_no_subscribers": bench.live(0, n_pub, paced=True)["publish_us"],
                "paced_10_live_subscribers": bench.live(10, n_pub, paced=True)["publish_us"],
                "paced_10_live_subscribers_poll_wake_0_5ms": bench.live(
                    10, n_pub, paced=True, wake="poll"
                )["publish_us"],
                "back_to_back_no_subscribers": bench.live(0, n_pub, paced=False)["publish_us"],
                "back_to_back_10_live_subscribers": live_10["publish_us"],
            }
        finally:
            bench.close()
    result["targets"] = {
        "batched_1_subscriber_ge_50000_per_s": result["replay"]["batched"]["1_subscriber"][
            "events_per_s_total"
        ]
        >= 50_000,
        "publish_p50_le_5us_back_to_back": result["publish_cost_us"][
            "back_to_back_10_live_subscribers"
        ]["p50"]
        <= 5.0,
        "publish_p50_le_5us_paced_no_subscribers": result["publish_cost_us"][
            "paced_no_subscribers"
        ]["p50"]
        <= 5.0,
    }
    rtt = fix_round_trip_with_subscribers(quick=args.quick)
    result["fix_round_trip_us"] = rtt
    if rtt is not None:
        result["targets"]["fix_rtt_p99_ratio_le_1_25"] = rtt["meets_target"]
    result["machine"]["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
