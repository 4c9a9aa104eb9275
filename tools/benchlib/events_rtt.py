"""FIX round trip with and without live gRPC event subscribers, for `tools/bench_events.py`.

One simulator and one `fixgw run` (with its EventService on a free port), both separate
processes as in `tools/bench_fix.py`; this process is the OMS and times NewOrderSingle -> first
ExecutionReport with one order outstanding, the next order sent from inside the callback
(`OrderDriver.latency`). Rounds alternate between no subscriber attached and N subscribers
attached (A/B/A/B...), so a burst of load on a shared machine hits both conditions alike.

The subscribers run in ONE separate process (N threads, one channel each, as N independent
clients would): in this process they would compete with the OMS callback for the GIL and the
figure would measure our own client, not the gateway. Each attaches at the start of a B round
from the log's newest event (so its first batch confirms the stream is live), reads everything
the gateway publishes during the round (order, market-data and session events), checks that the
sequence has no gap, and samples delivery latency (gateway receive time of the last event in a
batch -> batch received). At the end of the round it reports how far behind the newest event
it was and how long it took to catch up, then cancels.

Every control step (GetLogInfo, attach, detach) happens between timed phases, in the subscriber
process: nothing gRPC runs in this process while orders are timed.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc

from gateway._proto.fixgw.v1 import events_pb2, events_pb2_grpc
from gateway.fix.client import FixClient
from tools.benchlib.driver import OrderDriver, OrderSpec, median_of_ratios, percentile
from tools.benchlib.procs import Credentials, Fleet, cpu_ns, event_process_pid, free_port

P99_RATIO_MAX = 1.25
_ATTACH_TIMEOUT_S = 20.0
_CATCH_UP_TIMEOUT_S = 30.0


# ------------------------------------------------------------------------ subscriber process


class _Stream(threading.Thread):
    """One subscriber: its own channel, reads every batch, checks contiguity, samples latency."""

    def __init__(self, target: str, from_sequence: int) -> None:
        super().__init__(daemon=True)
        self.channel = grpc.insecure_channel(target)
        stub = events_pb2_grpc.EventServiceStub(self.channel)
        self.call = stub.Subscribe(events_pb2.SubscribeRequest(from_sequence=from_sequence))
        self.first = from_sequence
        self.expected = from_sequence
        self.last = from_sequence - 1
        self.events = 0
        self.batches = 0
        self.gaps = 0
        self.latency_ns: list[int] = []
        self.error: str | None = None
        self.attached = threading.Event()

    def run(self) -> None:
        clock = time.time_ns
        try:
            for batch in self.call:
                now = clock()
                evs = batch.events
                n = len(evs)
                if not n:
                    continue
                head, tail = evs[0].sequence, evs[-1].sequence
                # Sequences strictly increase: contiguous iff the span matches the count.
                if head != self.expected or tail - head + 1 != n:
                    self.gaps += 1
                self.expected = tail + 1
                ts = evs[-1].gateway_receive_time
                self.latency_ns.append(now - (ts.seconds * 1_000_000_000 + ts.nanos))
                self.events += n
                self.batches += 1
                self.last = tail
                self.attached.set()
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                self.error = f"{exc.code()}: {exc.details()}"
        finally:
            self.attached.set()

    def close(self) -> None:
        self.call.cancel()
        self.join(10)
        self.channel.close()


def _next_sequence(stub: events_pb2_grpc.EventServiceStub) -> int:
    info = stub.GetLogInfo(events_pb2.GetLogInfoRequest(), timeout=10)
    return int(info.next_sequence)


def _attach(target: str, stub: events_pb2_grpc.EventServiceStub, n: int) -> list[_Stream]:
    nxt = _next_sequence(stub)
    if nxt <= 1:
        raise RuntimeError("the gateway's event log is empty: cannot confirm a live stream")
    # From the newest event already published: the first batch arrives at once and proves the
    # stream is live before the timed orders start.
    streams = [_Stream(target, nxt - 1) for _ in range(n)]
    for s in streams:
        s.start()
    deadline = time.monotonic() + _ATTACH_TIMEOUT_S
    for s in streams:
        if not s.attached.wait(max(0.0, deadline - time.monotonic())) or s.error:
            for t in streams:
                t.close()
            raise RuntimeError(f"subscriber did not attach: {s.error or 'timeout'}")
    return streams


def _quiesced_newest(stub: events_pb2_grpc.EventServiceStub) -> int:
    """The newest sequence once the log stops growing: events reach the event process a drain
    poll after the order that caused them, so the round's last ones may still be on their way."""
    newest = _next_sequence(stub) - 1
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        time.sleep(0.05)
        again = _next_sequence(stub) - 1
        if again == newest:
            break
        newest = again
    return newest


def _detach(stub: events_pb2_grpc.EventServiceStub, streams: list[_Stream]) -> dict[str, Any]:
    newest = _quiesced_newest(stub)
    t0 = time.monotonic()
    lag_at_end = max(newest - s.last for s in streams)
    deadline = t0 + _CATCH_UP_TIMEOUT_S
    while (any(s.last < newest and s.is_alive() for s in streams)
           and time.monotonic() < deadline):
        time.sleep(0.0005)
    catch_up_s = time.monotonic() - t0
    caught_up = all(s.last >= newest for s in streams)
    for s in streams:
        s.close()
    return {
        "newest": newest,
        "first": min(s.first for s in streams),
        # Minus the one event each stream re-read to confirm it was live.
        "events": [s.events - 1 for s in streams],
        "batches": sum(s.batches for s in streams),
        "gaps": sum(s.gaps for s in streams),
        "lag_events_at_end": lag_at_end,
        "catch_up_s": catch_up_s,
        "caught_up": caught_up,
        "latency_ns": [x for s in streams for x in s.latency_ns],
        "errors": [s.error for s in streams if s.error],
    }


def _subscriber_main(conn: Connection, target: str, nice: int) -> None:
    """Commands from the bench: ("next",), ("attach", n), ("detach",); None ends the process.
    Replies ("ok", value) or ("error", text)."""
    if nice:
        os.nice(nice)
    channel = grpc.insecure_channel(target)
    stub = events_pb2_grpc.EventServiceStub(channel)
    streams: list[_Stream] = []
    try:
        while True:
            cmd = conn.recv()
            if cmd is None:
                return
            try:
                if cmd[0] == "next":
                    conn.send(("ok", _next_sequence(stub)))
                elif cmd[0] == "attach":
                    streams = _attach(target, stub, int(cmd[1]))
                    conn.send(("ok", streams[0].first))
                elif cmd[0] == "detach":
                    res = _detach(stub, streams)
                    streams = []
                    conn.send(("ok", res))
                else:
                    conn.send(("error", f"unknown command {cmd!r}"))
            except Exception as exc:  # report to the bench instead of dying silently
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        for s in streams:
            s.close()
        channel.close()


class _Subscribers:
    """The bench's handle on the subscriber process."""

    def __init__(self, target: str, nice: int) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_subscriber_main, args=(child, target, nice), daemon=True,
                                name="bench-events-subscribers")
        self.proc.start()
        child.close()

    @property
    def pid(self) -> int:
        assert self.proc.pid is not None
        return self.proc.pid

    def call(self, *cmd: object, timeout: float = 60.0) -> Any:
        self.conn.send(cmd)
        if not self.conn.poll(timeout):
            raise RuntimeError(f"subscriber process did not answer {cmd[0]!r} in {timeout} s")
        status, value = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"subscriber process: {value}")
        return value

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.proc.join(15)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


# ------------------------------------------------------------------------ bench side


@dataclass
class _Condition:
    name: str
    latency_ns: list[int] = field(default_factory=list)
    round_p99_us: list[float] = field(default_factory=list)
    orders: int = 0
    events_published: int = 0
    cpu_ns: dict[str, int] = field(default_factory=dict)

    def latency(self) -> dict[str, Any]:
        s = sorted(self.latency_ns)
        return {
            "p50": round(percentile(s, 50), 1),
            "p99": round(percentile(s, 99), 1),
            "p999": round(percentile(s, 99.9), 1),
            "mean": round(statistics.fmean(s) / 1000.0, 1),
            "max": round(s[-1] / 1000.0, 1),
            "samples": len(s),
            "p99_per_round": self.round_p99_us,
        }

    def cpu_us_per_order(self) -> dict[str, float] | None:
        if not self.cpu_ns or not self.orders:
            return None
        out = {role: round(ns / self.orders / 1000.0, 1) for role, ns in self.cpu_ns.items()}
        out["total"] = round(sum(self.cpu_ns.values()) / self.orders / 1000.0, 1)
        return out


def _grpc_port_launcher(port: int) -> list[str]:
    """`Fleet.start_gateway`'s launcher slot: `fixgw run ... --grpc-port PORT`, so the gateway
    runs with exactly bench_fix's configuration plus its EventService on a free port."""
    code = ("import sys; from gateway.cli.main import main; "
            f"sys.exit(main(sys.argv[1:] + ['--grpc-port', '{port}']))")
    return ["-c", code]


def _oms_client(workdir: Path, port: int) -> FixClient:
    return FixClient(host="127.0.0.1", port=port, sender="OMS", target="FIXGW",
                     store_dir=workdir / "oms")


def _measure_cpu(pids: dict[str, int], into: dict[str, int], run: Callable[[], None]) -> None:
    before = {role: cpu_ns(pid) for role, pid in pids.items()}
    run()
    for role, pid in pids.items():
        a, b = before[role], cpu_ns(pid)
        if a is not None and b is not None:
            into[role] = into.get(role, 0) + (b - a)


def _ms(ns: list[int]) -> dict[str, float] | None:
    if not ns:
        return None
    s = sorted(ns)
    return {
        "p50": round(percentile(s, 50) / 1000.0, 2),
        "p99": round(percentile(s, 99) / 1000.0, 2),
        "max": round(s[-1] / 1e6, 2),
    }


def measure_fix_rtt(*, rounds: int, orders: int, warmup: int, subscribers: int = 10,
                    tif: str = "1", subscriber_nice: int = 0) -> dict[str, Any]:
    """`rounds` A/B pairs; `orders` timed orders per condition over all rounds; `warmup`
    untimed orders at the start of every phase (after the subscribers attached in B phases).

    `tif` "1" (GTC, default): every order rests and moves the book, so besides its order
    events the gateway publishes market data for it — the busiest stream per order.
    `subscriber_nice` > 0 lowers the subscriber process's priority: a diagnostic that separates
    the gateway's own cost from its clients competing for the same cores (default 0)."""
    if rounds < 1 or orders < rounds:
        raise ValueError("need at least one order per round")
    if subscribers < 1:
        raise ValueError("need at least one subscriber")
    sub_name = f"{subscribers}_subscribers"
    cond = {"none": _Condition("none"), sub_name: _Condition(sub_name)}
    sub_stats: list[dict[str, Any]] = []
    creds = Credentials()
    workdir = Path(tempfile.mkdtemp(prefix="bench_events_rtt-"))
    fleet = Fleet(workdir, creds)
    grpc_port = free_port()
    t_start = time.monotonic()
    client: FixClient | None = None
    subs: _Subscribers | None = None
    try:
        sim = fleet.start_sim("sim", ("FIXGW",))
        gw = fleet.start_gateway("gateway", sim, oms_comp="OMS",
                                 wrapper=_grpc_port_launcher(grpc_port))
        subs = _Subscribers(f"127.0.0.1:{grpc_port}", subscriber_nice)
        subs.call("next")  # the subscriber process is up and the EventService answers
        client = _oms_client(workdir, gw.port)
        client.start(wait_logon_s=20.0)
        driver = OrderDriver(client, OrderSpec(tif=tif))
        driver.latency(0, max(warmup, 200))  # first orders: connections, caches, code paths
        pids = {"oms": os.getpid(), "gateway": gw.pid, "sim": sim.pid,
                "subscribers": subs.pid}
        events_pid = event_process_pid(gw.pid)
        if events_pid is not None:
            pids["gateway_events"] = events_pid
        setup_s = time.monotonic() - t_start
        for rnd in range(rounds):
            n = orders // rounds + (1 if rnd < orders % rounds else 0)
            for name in ("none", sub_name):
                c = cond[name]
                fleet.check_alive()
                if name == sub_name:
                    subs.call("attach", subscribers)
                if warmup:
                    driver.latency(0, warmup)
                seq0 = subs.call("next")
                samples: list[int] = []

                def timed(out: list[int] = samples, k: int = n) -> None:
                    out.extend(driver.latency(0, k))

                _measure_cpu(pids, c.cpu_ns, timed)
                c.events_published += subs.call("next") - seq0
                c.latency_ns.extend(samples)
                c.round_p99_us.append(round(percentile(sorted(samples), 99), 1))
                c.orders += n
                if name == sub_name:
                    sub_stats.append(subs.call("detach", timeout=_CATCH_UP_TIMEOUT_S + 30))
        fleet.check_alive()
    except Exception:
        print(fleet.describe(), file=sys.stderr)
        raise
    finally:
        if client is not None:
            client.stop()
        if subs is not None:
            subs.close()
        fleet.close()
        shutil.rmtree(workdir, ignore_errors=True)

    none, with_subs = cond["none"].latency(), cond[sub_name].latency()
    p99_ratio = round(with_subs["p99"] / none["p99"], 3)
    published_b = cond[sub_name].events_published
    delivered = [sum(r["events"][i] for r in sub_stats) for i in range(subscribers)]
    # Events published while subscribers were attached, warm-up orders included.
    expected = sum(r["newest"] - r["first"] for r in sub_stats)
    return {
        "none": none,
        sub_name: with_subs,
        "p50_ratio": round(with_subs["p50"] / none["p50"], 3),
        "p99_ratio": p99_ratio,
        "p999_ratio": round(with_subs["p999"] / none["p999"], 3),
        # Robust to one noisy phase (a load burst on a shared machine hits one round's p99).
        "p99_ratio_median_of_rounds": median_of_ratios(with_subs["p99_per_round"],
                                                       none["p99_per_round"]),
        "target": {"p99_ratio_max": P99_RATIO_MAX},
        "meets_target": p99_ratio <= P99_RATIO_MAX,
        "subscribers": {
            "count": subscribers,
            "events_per_order": round(published_b / max(1, cond[sub_name].orders), 2),
            "events_published_while_attached": expected,
            "events_delivered_total": sum(delivered),
            "events_delivered_min_per_subscriber": min(delivered),
            "complete": all(d == expected for d in delivered),
            "gap_free": all(r["gaps"] == 0 for r in sub_stats),
            "lag_events_at_round_end_max": max(r["lag_events_at_end"] for r in sub_stats),
            "catch_up_ms_max": round(max(r["catch_up_s"] for r in sub_stats) * 1000, 2),
            "caught_up": all(r["caught_up"] for r in sub_stats),
            "events_per_stream_message": round(
                sum(delivered) / max(1, sum(r["batches"] for r in sub_stats)), 2),
            "delivery_latency_ms": _ms([x for r in sub_stats for x in r["latency_ns"]]),
            "errors": [e for r in sub_stats for e in r["errors"]][:3],
        },
        "cpu_us_per_order": {k: c.cpu_us_per_order() for k, c in cond.items()},
        "config": {
            "rounds": rounds, "pattern": "A/B alternating (none, subscribers) per round",
            "orders_per_condition": orders, "warmup_per_phase": warmup,
            "tif": {"1": "gtc", "3": "ioc"}.get(tif, tif),
            "measured_to": "first ExecutionReport (ExecType 0)",
            "subscribers_in": "one separate process, one thread and channel each",
            "subscriber_nice": subscriber_nice,
        },
        "setup_s": round(setup_s, 1),
        "elapsed_s": round(time.monotonic() - t_start, 1),
    }

