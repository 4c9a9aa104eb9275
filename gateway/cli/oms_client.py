"""`fixgw oms`: a tiny OMS to try the gateway by hand.

    fixgw oms buy BTC/USD 0.01 limit 45000
    fixgw oms sell ETH/USD 0.5 market --wait 5

It logs on as the OMS, sends one NewOrderSingle, and prints each ExecutionReport in words
until the order is done (or --wait seconds pass).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway.fix import messages as m
from gateway.fix.client import FixClient, Received

_STATUS = {"0": "new", "1": "partially filled", "2": "filled", "4": "canceled",
           "8": "rejected", "A": "pending new", "C": "expired"}
_EXEC = {"0": "new", "F": "trade", "4": "canceled", "5": "replaced", "8": "rejected",
         "I": "status", "C": "expired"}


def add_oms_parser(sub: Any) -> None:
    p = sub.add_parser("oms", help="send one order as an OMS and print the execution reports",
                       description="Send one order to a running gateway and print its reports.",
                       epilog="example: fixgw oms buy BTC/USD 0.01 limit 45000")
    p.add_argument("side", choices=["buy", "sell"])
    p.add_argument("symbol")
    p.add_argument("qty")
    p.add_argument("ord_type", choices=["limit", "market"])
    p.add_argument("price", nargs="?")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9878)
    p.add_argument("--sender", default="OMS", help="our CompID (default OMS)")
    p.add_argument("--target", default="FIXGW", help="the gateway's CompID (default FIXGW)")
    p.add_argument("--tif", choices=["gtc", "ioc", "fok"], default="gtc")
    p.add_argument("--wait", type=float, default=10.0, help="seconds to wait for reports")
    p.add_argument("--store-dir", type=Path, help="keep the OMS session store here (default: "
                   "a fresh temp dir, with sequence numbers reset at logon)")


def describe(r: Received) -> str:
    f = r.fields
    if r.msg_type == "9":
        return f"cancel rejected: {f.get(58, '')}"
    parts = [f"{_EXEC.get(f.get(150, ''), f.get(150, '?'))}",
             f"status={_STATUS.get(f.get(39, ''), f.get(39, '?'))}",
             f"ClOrdID={f.get(11)}", f"OrderID={f.get(37)}",
             f"cum={f.get(14)}", f"leaves={f.get(151)}", f"avg={f.get(6)}"]
    if f.get(150) == "F":
        parts.append(f"last={f.get(32)}@{f.get(31)}")
    if 58 in f:
        parts.append(f"text={f[58]!r}")
    return "  ".join(parts)


def run_oms(args: argparse.Namespace) -> int:
    if args.ord_type == "limit" and args.price is None:
        print("fixgw oms: a limit order needs a price, e.g. `buy BTC/USD 0.01 limit 45000`")
        return 2
    store = args.store_dir or Path(tempfile.mkdtemp(prefix="fixgw-oms-"))
    client = FixClient(host=args.host, port=args.port, sender=args.sender, target=args.target,
                       store_dir=store, reset_on_logon=args.store_dir is None)
    try:
        client.start(wait_logon_s=10)
    except TimeoutError:
        print(f"fixgw oms: no logon from {args.target} at {args.host}:{args.port} "
              "(is `fixgw run` up, and do the CompIDs match?)")
        client.stop()
        return 1
    cl = f"OMS-{time.time_ns() // 1000}"
    fields = [(m.CL_ORD_ID, cl), (m.SYMBOL, args.symbol),
              (m.SIDE, "1" if args.side == "buy" else "2"), (m.ORDER_QTY, args.qty),
              (m.ORD_TYPE, "2" if args.ord_type == "limit" else "1"),
              (m.TIME_IN_FORCE, {"gtc": "1", "ioc": "3", "fok": "4"}[args.tif]),
              (m.TRANSACT_TIME, m.utc_timestamp())]
    if args.price is not None:
        fields.append((m.PRICE, args.price))
    client.send_fields("D", fields)
    print(f"sent {args.side} {args.qty} {args.symbol} {args.ord_type}"
          f"{' @ ' + args.price if args.price else ''} as ClOrdID {cl}")
    deadline = time.monotonic() + args.wait
    code = 1
    try:
        while time.monotonic() < deadline:
            try:
                r = client.next_app(timeout=deadline - time.monotonic())
            except TimeoutError:
                break
            print(describe(r), flush=True)
            if r.fields.get(39) in ("2", "4", "8", "C"):
                code = 0 if r.fields.get(39) != "8" else 3
                break
            code = 0
    finally:
        client.stop()
    return code
