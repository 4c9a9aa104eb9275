#!/usr/bin/env python3
"""TLS bridge latency: a 200-byte ping-pong over loopback, plain TCP vs through both bridges,
measured in the same run. Prints ONE JSON object on stdout.

    python tools/bench_tls.py            # 5 interleaved rounds x 4,000 round trips per mode
    python tools/bench_tls.py --quick    # smoke run, a few seconds

Topologies (loopback; a child process plays both ends — pinger and echo server — so that this
process holds only the bridges, as the gateway process would):

    plain   pinger -> echo
    tls     pinger -> TlsClientBridge ==TLS==> TlsServerBridge -> echo

Rounds alternate plain, tls, plain, tls, ... so drift of a shared machine hits both alike;
samples are pooled across rounds. One message outstanding at a time (pure latency, no
batching), TCP_NODELAY everywhere.

What it means for the FIX path: an order's round trip through fixgw with TLS on both legs
(OMS ==TLS==> server bridge -> QuickFIX acceptor ... QuickFIX initiator -> client bridge
==TLS==> venue, and the ExecutionReport back) crosses a bridge four times — twice each
bridge, one encryption or decryption each time, plus one extra loopback hop per bridge
crossing. The tls round trip here is exactly that: four crossings, four crypto operations,
four extra loopback hops. So ``added_us`` (tls minus plain, at p50 and p99) is the latency
TLS bridging adds to an order round trip compared with the same gateway on plain TCP; the
ratio only says how that compares with a bare loopback ping-pong, which is far faster than the
gateway's own order path (see tools/bench_fix.py), so the ratio overstates the relative cost.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

from gateway.transports.tls_bridge import (  # noqa: E402
    TlsClientBridge,
    TlsServerBridge,
    client_context,
    server_context,
)
from tests.tls.certs import make_pki  # noqa: E402

PAYLOAD = 200


# --------------------------------------------------------------------------------------------
# Child: echo server + pinger, driven over stdin/stdout one JSON line at a time
# --------------------------------------------------------------------------------------------

def _echo_conn(conn: socket.socket) -> None:
    buf = memoryview(bytearray(1 << 16))
    with conn:
        while n := conn.recv_into(buf):
            conn.sendall(buf[:n])


def _echo_server() -> int:
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            conn, _ = listener.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=_echo_conn, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return int(listener.getsockname()[1])


def _ping(port: int, count: int, warmup: int, size: int) -> list[int]:
    """Round-trip times in ns of `count` ping-pongs of `size` bytes, after `warmup` more."""
    msg = bytes(range(256)) * (size // 256 + 1)
    msg = msg[:size]
    buf = memoryview(bytearray(size))
    out: list[int] = []
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        clock, sendall, recv_into = time.perf_counter_ns, s.sendall, s.recv_into
        gc.disable()
        try:
            for i in range(warmup + count):
                t0 = clock()
                sendall(msg)
                got = 0
                while got < size:
                    n = recv_into(buf[got:])
                    if not n:
                        raise ConnectionError("closed mid-ping")
                    got += n
                if i >= warmup:
                    out.append(clock() - t0)
        finally:
            gc.enable()
    return out


def child_main() -> None:
    print(json.dumps({"echo_port": _echo_server()}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        samples = _ping(req["port"], req["count"], req["warmup"], req["size"])
        print(json.dumps({"samples": samples}), flush=True)


# --------------------------------------------------------------------------------------------
# Parent: the bridges, the rounds, the report
# --------------------------------------------------------------------------------------------

def _pct(sorted_ns: list[int], q: float) -> float:
    idx = min(len(sorted_ns) - 1, max(0, round(q * (len(sorted_ns) - 1))))
    return round(sorted_ns[idx] / 1000.0, 1)


def _summary(samples: list[int]) -> dict[str, float]:
    s = sorted(samples)
    return {"p50_us": _pct(s, 0.50), "p99_us": _pct(s, 0.99), "p999_us": _pct(s, 0.999),
            "mean_us": round(statistics.fmean(s) / 1000.0, 1), "n": len(s)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=4000, help="round trips per mode per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--size", type=int, default=PAYLOAD, help="payload bytes (default 200)")
    ap.add_argument("--quick", action="store_true", help="2 rounds x 1,000: a smoke run")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_main()
        return
    if args.quick:
        args.count, args.rounds, args.warmup = 1000, 2, 200

    child = subprocess.Popen([sys.executable, __file__, "--child"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    tmp = tempfile.TemporaryDirectory(prefix="bench_tls_")
    sb: TlsServerBridge | None = None
    cb: TlsClientBridge | None = None
    try:
        echo_port = int(json.loads(child.stdout.readline())["echo_port"])
        pki = make_pki(Path(tmp.name))
        sb = TlsServerBridge("127.0.0.1", 0, server_context(pki.server_cert, pki.server_key),
                             downstream_port=echo_port, allow_addresses=["127.0.0.1"])
        cb = TlsClientBridge("127.0.0.1", sb.port, client_context(ca_file=pki.ca))
        sb.start()
        cb.start()
        ports = {"plain": echo_port, "tls": cb.local_port}
        pooled: dict[str, list[int]] = {"plain": [], "tls": []}
        for _ in range(args.rounds):
            for mode, port in ports.items():
                child.stdin.write(json.dumps({"port": port, "count": args.count,
                                              "warmup": args.warmup, "size": args.size}) + "\n")
                child.stdin.flush()
                pooled[mode] += json.loads(child.stdout.readline())["samples"]
        tls_info = _probe_tls(sb.port, pki.ca)
    finally:
        if cb is not None:
            cb.stop()
        if sb is not None:
            sb.stop()
        child.stdin.close()
        child.wait(10)
        tmp.cleanup()

    plain, tls = _summary(pooled["plain"]), _summary(pooled["tls"])
    report: dict[str, Any] = {
        "bench": "tls_bridge_ping_pong",
        "payload_bytes": args.size,
        "rounds": args.rounds,
        "round_trips_per_mode": args.rounds * args.count,
        "plain": plain,
        "tls": tls,
        "ratio": {"p50": round(tls["p50_us"] / plain["p50_us"], 2),
                  "p99": round(tls["p99_us"] / plain["p99_us"], 2)},
        "added_us": {"p50": round(tls["p50_us"] - plain["p50_us"], 1),
                     "p99": round(tls["p99_us"] - plain["p99_us"], 1)},
        "bridge_crossings_per_round_trip": 4,
        **tls_info,
        "env": {"python": platform.python_version(), "openssl": ssl.OPENSSL_VERSION,
                "machine": platform.machine(), "cpus": _cpus()},
    }
    print(json.dumps(report))


def _probe_tls(port: int, ca: Path) -> dict[str, str]:
    """Which protocol/cipher the bridges negotiated (what the numbers were measured with)."""
    ctx = client_context(ca_file=ca)
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as s:
        cipher = s.cipher()
        return {"tls_version": s.version() or "?", "cipher": cipher[0] if cipher else "?"}


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


if __name__ == "__main__":
    main()
