"""`python -m gateway.venue_sim`: the simulator on its own (also what `fixgw venue-sim` and the
embedded mode of `fixgw run` start). Prints one JSON line with its endpoints once it listens
(ports; the futures WebSocket's port is ``futures_ws``, its path ``/ws/v1``)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from gateway.config import ConfigError
from gateway.fix.kraken_logon import KrakenCredentials
from gateway.owned_child import leave_stopping_to_owner
from gateway.venue_sim.accounts import ApiAccount, load_accounts_file
from gateway.venue_sim.schedule_flags import add_schedule_flags, schedule_from_flags
from gateway.venue_sim.server import ENV_KEY, ENV_SECRET, SimOptions, VenueSimulator


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fixgw venue-sim",
                                description="Kraken-dialect UAT venue simulator (FIX 4.4).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--trading-port", type=int, default=0, help="0 = a free port")
    p.add_argument("--md-port", type=int, default=0, help="0 = a free port")
    p.add_argument("--seed", type=int, default=7,
                   help="seed of the synthetic flow (OrderIDs/ExecIDs are fresh at every start)")
    p.add_argument("--flow-rate", type=float, default=20.0,
                   help="synthetic flow steps per second (0 = static books)")
    p.add_argument("--no-seed-books", action="store_true",
                   help="start with empty books (no synthetic resting liquidity)")
    p.add_argument("--scenario", default="default",
                   help="perp market scenario for the futures REST face (name or TOML/JSON file)")
    p.add_argument("--futures-port", type=int, default=0, help="futures REST port (0 = free)")
    p.add_argument("--futures-ws-port", type=int, default=0,
                   help="futures WebSocket v1 port, path /ws/v1 (0 = free)")
    p.add_argument("--tls-cert", type=Path, help="serve FIX over TLS with this certificate")
    p.add_argument("--tls-key", type=Path, help="... and this private key")
    p.add_argument("--client", action="append", default=None,
                   help="client SenderCompID to accept (repeatable; default FIXGW)")
    p.add_argument("--data-dir", type=Path, default=Path("./var/venue-sim"))
    p.add_argument("--accounts", type=Path, metavar="FILE",
                   help="more API accounts (TOML [[accounts]]: api_key, api_secret = "
                        "{env|file = ...}, owner); each has its own wallet, orders and nonces, "
                        "and logs on over FIX as its owner's CompID")
    add_schedule_flags(p)
    p.add_argument("--exit-on-stdin-eof", action="store_true", help=argparse.SUPPRESS)
    return p


def credentials_from_env() -> KrakenCredentials | None:
    key, secret = os.environ.get(ENV_KEY), os.environ.get(ENV_SECRET)
    if key and secret:
        return KrakenCredentials(key, secret)
    return None


def extra_accounts(path: Path | None, creds: KrakenCredentials | None) -> list[ApiAccount]:
    """The `--accounts` file's accounts; none of them may reuse the simulator's own key."""
    if path is None:
        return []
    accounts = load_accounts_file(path)
    for i, account in enumerate(accounts):
        if creds is not None and account.api_key == creds.api_key:
            raise ConfigError(f"{path}: accounts[{i}].api_key: is the simulator's own key "
                              f"({ENV_KEY}); give each bot a key of its own")
    return accounts


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    schedule = schedule_from_flags(parser, args)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    creds = credentials_from_env()
    try:
        extra = extra_accounts(args.accounts, creds)
    except ConfigError as exc:
        print(f"fixgw venue-sim: {exc}", file=sys.stderr)
        return 2
    if creds is None:
        logging.getLogger("fixgw.venue_sim").warning(
            "no %s/%s in the environment: trading logons are accepted without a signature check",
            ENV_KEY, ENV_SECRET)
    sim = VenueSimulator(SimOptions(
        host=args.host, trading_port=args.trading_port, md_port=args.md_port, seed=args.seed,
        flow_rate_hz=args.flow_rate, clients=tuple(args.client or ["FIXGW"]),
        data_dir=args.data_dir, credentials=creds,
        seed_books=not args.no_seed_books, tls_cert=args.tls_cert, tls_key=args.tls_key,
        scenario=args.scenario, futures_port=args.futures_port,
        futures_ws_port=args.futures_ws_port, extra_accounts=extra, schedule=schedule))
    sim.start()
    print(json.dumps({"host": args.host, "trading_port": sim.trading_port,
                      "md_port": sim.md_port, "control_port": sim.control.port,
                      "futures_rest_port": sim.futures.port,
                      "futures_ws": sim.futures_ws.port,  # Kraken Futures WS v1 at /ws/v1
                      "spot_rest_port": sim.spot_rest.port,
                      "spot_ws_port": sim.spot_ws.port}), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    if args.exit_on_stdin_eof:
        # Run by an owner (`fixgw run`, the benchmarks) that stops us by closing our stdin: it
        # must log its sessions out while we are still up.
        leave_stopping_to_owner()

        def _watch() -> None:
            # Raw os.read, not sys.stdin: a daemon thread parked in a buffered read aborts
            # interpreter shutdown.
            while os.read(0, 4096):
                pass
            done.set()
        threading.Thread(target=_watch, daemon=True).start()
    else:
        signal.signal(signal.SIGINT, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
