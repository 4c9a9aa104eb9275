"""The benchmark's OMS: sends NewOrderSingles on a `FixClient` session and times them to the
first ExecutionReport.

Both phases send from inside the QuickFIX callback that received the report (the client's
`on_message` runs in fromApp), the way the reference figures were measured: no thread
hand-off is counted, so the figure is the cost of the hops, not of our waiting.
"""

from __future__ import annotations

import itertools
import math
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import quickfix as fix

from gateway.fix import messages as m
from gateway.fix.client import FixClient
from gateway.fix.messages import Fields

_run_ids = itertools.count(1)


@dataclass(frozen=True)
class OrderSpec:
    """A limit buy far below any price the simulator will ever see, so it never crosses: a GTC
    rests and gets exactly one report (150=0); an IOC gets Accepted then Canceled."""

    symbol: str = "BTC/USD"
    side: str = "1"
    qty: str = "0.01"
    price: str = "1000.0"
    tif: str = "1"  # 1 GTC, 3 IOC


class BenchError(RuntimeError):
    pass


class OrderDriver:
    def __init__(self, client: FixClient, spec: OrderSpec, timeout_s: float = 10.0) -> None:
        self.client = client
        self.spec = spec
        self.timeout_s = timeout_s
        self.session = client.session
        # Unique per driver and process run: ClOrdIDs must never repeat on a session.
        self._prefix = f"{client.sender[:2]}{time.time_ns() // 1_000_000 % 10**9:x}"

    def _ids(self, phase: str) -> str:
        return f"{self._prefix}{phase}{next(_run_ids)}-"

    def _order(self, cl: str) -> fix.Message:
        """Built in one parse and read from the parsed fields (below): the OMS's own cost is
        common to every topology and only adds noise, on a machine all the processes share."""
        s = self.spec
        return m.message_from_body("D", (
            f"11={cl}\x0155={s.symbol}\x0154={s.side}\x0138={s.qty}\x0140=2\x01"
            f"44={s.price}\x0159={s.tif}\x0160={m.utc_timestamp()}\x01"))

    # ---- one order outstanding -------------------------------------------------------------
    def latency(self, warmup: int, count: int, settle: bool = False) -> list[int]:
        """Round trips in ns of `count` orders after `warmup` untimed ones, one at a time.

        Back to back (default): the next order goes out as soon as the previous one's first
        report is in, while an IOC's Canceled is still on its way through every hop. With
        `settle`, it goes out once that Canceled is in too, so each sample is one order on a
        path that has finished the previous one."""
        total = warmup + count
        settling = settle and self.spec.tif == "3"
        prefix = self._ids("L")
        samples: list[int] = []
        done = threading.Event()
        problem: list[str] = []
        state = {"i": 0, "t0": 0}
        current = [""]
        session = self.session

        def send_next() -> None:
            cl = f"{prefix}{state['i']}"
            msg = self._order(cl)
            current[0] = cl
            state["t0"] = time.perf_counter_ns()
            if not session.send(msg):
                problem.append(f"send of {cl} failed (session not logged on?)")
                done.set()

        def next_or_done() -> None:
            if state["i"] < total:
                send_next()
            else:
                # Nothing more is ours (back to back, the last IOC's Canceled is still to come).
                current[0] = ""
                done.set()

        def on_message(msg: fix.Message, f: Fields) -> None:
            t = time.perf_counter_ns()
            if f["35"] != "8" or f.get("11") != current[0]:
                return  # e.g. the Canceled of the previous IOC order
            exec_type = f["150"]
            if settling and exec_type == "4":
                next_or_done()  # the previous order's last report: now the next one
                return
            if exec_type != "0":
                problem.append(f"first report of {current[0]} has ExecType {exec_type}: "
                               f"{msg.toString().replace(chr(1), '|')}")
                done.set()
                return
            if state["i"] >= warmup:
                samples.append(t - state["t0"])
            state["i"] += 1
            if not settling:
                next_or_done()

        self.client.on_message = on_message
        try:
            send_next()
            deadline = time.monotonic() + self.timeout_s + total * 0.01
            while not done.wait(0.5):
                if time.monotonic() > deadline:
                    raise BenchError(f"latency phase stalled at order {state['i']} of {total}")
        finally:
            self.client.on_message = None
        if problem:
            raise BenchError(problem[0])
        return samples

    # ---- pipelined -------------------------------------------------------------------------
    def throughput(self, count: int, window: int) -> float:
        """Orders per second with `window` orders in flight, refilled from the callback; the
        clock runs from the first send to the first report of the last order."""
        prefix = self._ids("T")
        lock = threading.Lock()
        done = threading.Event()
        problem: list[str] = []
        state = {"sent": 0, "acked": 0, "t_end": 0}
        session = self.session

        def send_one() -> None:  # caller holds the lock
            cl = f"{prefix}{state['sent']}"
            state["sent"] += 1
            if not session.send(self._order(cl)):
                problem.append(f"send of {cl} failed (session not logged on?)")
                done.set()

        def on_message(msg: fix.Message, f: Fields) -> None:
            if f["35"] != "8":
                return
            exec_type = f["150"]
            if exec_type != "0":
                if exec_type == "4":
                    return  # the Canceled that follows an IOC's Accepted
                problem.append(f"report with ExecType {exec_type}: "
                               f"{msg.toString().replace(chr(1), '|')}")
                done.set()
                return
            with lock:
                state["acked"] += 1
                if state["acked"] >= count:
                    state["t_end"] = time.perf_counter_ns()
                    done.set()
                elif state["sent"] < count:
                    send_one()

        self.client.on_message = on_message
        try:
            with lock:
                t0 = time.perf_counter_ns()
                for _ in range(min(window, count)):
                    send_one()
            deadline = time.monotonic() + self.timeout_s + count * 0.002
            while not done.wait(0.5):
                if time.monotonic() > deadline:
                    raise BenchError(f"throughput phase stalled: {state['acked']} of {count} "
                                     "orders acknowledged")
        finally:
            self.client.on_message = None
        if problem:
            raise BenchError(problem[0])
        # Let trailing reports (IOC cancels) drain before the next phase starts timing.
        time.sleep(0.2)
        return count / ((state["t_end"] - t0) / 1e9)


def percentile(sorted_ns: Sequence[int], q: float) -> float:
    """Nearest-rank percentile, in µs (no interpolation: every figure is a measured sample)."""
    if not sorted_ns:
        raise ValueError("no samples")
    rank = max(1, math.ceil(q / 100.0 * len(sorted_ns)))
    return sorted_ns[rank - 1] / 1000.0


def median_of_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """The median of the per-round ratios of two conditions measured round by round: robust to
    one noisy phase (a load burst on a shared machine hits one round's tail, not all of them)."""
    return round(statistics.median(
        a / b for a, b in zip(numerators, denominators, strict=True)), 3)
