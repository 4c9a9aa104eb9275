"""`fixgw`: the server and user commands."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from gateway.cli.version import add_version_flag
from gateway.config.loader import ConfigError, load_config
from gateway.config.model import Config
from gateway.fix.settings import fix_specs_dir
from gateway.log_format import setup_logging
from gateway.version import version_line

EPILOG = """examples:
  fixgw run                                  gateway + embedded UAT venue, OMS on 127.0.0.1:9878
  fixgw run --oms-port 9900 --grpc-port 50061 --admin-port 50062 --metrics-port 9465 \\
            --data-dir ./var2
  fixgw run --config sessions/kraken-uat.toml  against Kraken's UAT (credentials from env/files)
  fixgw run --config sessions/kraken-uat.toml --check   check it and what it names; start nothing
  fixgw venue-sim --trading-port 4001 --md-port 4000   the simulator alone
  fixgw oms buy BTC/USD 0.01 limit 45000     send one order to a running gateway
  fixgw signals PF_ARBUSD                    the latest signal readout, in words
  fixgw kraken sign --path /0/private/AddOrder --nonce N --data '...' --secret-file F
"""


def default_config_path() -> Path | None:
    p = fix_specs_dir().parent / "sessions" / "uat-sim.toml"
    return p if p.exists() else None


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.server.runner import run_forever

    overrides: dict[str, Any] = {}
    flags: dict[str, str] = {}
    for flag, dotted, value in (("--oms-port", "oms.port", args.oms_port),
                                ("--data-dir", "gateway.data_dir",
                                 None if args.data_dir is None else str(args.data_dir)),
                                ("--grpc-port", "grpc.port", args.grpc_port),
                                ("--admin-port", "admin.port", args.admin_port),
                                ("--metrics-port", "metrics.port", args.metrics_port)):
        if value is not None:
            overrides[dotted], flags[dotted] = value, flag
    path = args.config or default_config_path()
    try:
        config = load_config(path, overrides, flags)
    except ConfigError as exc:
        print(f"fixgw: {exc}", file=sys.stderr)
        return 2
    if args.check:
        return check_config(config, path, flags)
    setup_logging(config.gateway.log_level, config.gateway.log_format)
    name = path or "(built-in defaults)"
    logging.getLogger("fixgw").info("%s; config: %s", version_line("fixgw"), name)
    from gateway.server.preflight import exposure_warnings, ignored_settings, preflight

    for warning in exposure_warnings(config) + ignored_settings(config):
        logging.getLogger("fixgw").warning("%s: %s", name, warning)
    # What --check finds (a credential not set, a file not there) stops the start here, naming
    # the file and the field, before any session logs on.
    problems = preflight(config)
    for problem in problems:
        print(f"fixgw: {_sourced(problem, name, flags)}", file=sys.stderr)
    if problems:
        return 2
    from gateway.admin.auth import TokenError
    from gateway.admin.service import AdminTlsError
    from gateway.listen import ListenError

    try:
        return run_forever(config)
    except (TokenError, AdminTlsError, ListenError, ConfigError) as exc:
        print(f"fixgw: {exc}", file=sys.stderr)
        return 2


def _sourced(problem: str, name: str | Path, flags: dict[str, str]) -> str:
    """A preflight problem ("<field>: ...") named by where its value came from: the flag that
    set the field, else the file."""
    field, _, rest = problem.partition(": ")
    flag = flags.get(field)
    return f"{flag} ({field}): {rest}" if flag else f"{name}: {problem}"


def check_config(config: Config, path: Path | None,
                 flags: dict[str, str] | None = None) -> int:
    """`fixgw run --check`: 0 and what the gateway would do, or 2 and every problem found."""
    from gateway.server.preflight import (
        credential_file_warnings,
        exposure_warnings,
        ignored_settings,
        port_warnings,
        preflight,
        summary,
    )

    name = path or "(built-in defaults)"
    problems = preflight(config)
    for problem in problems:
        print(f"fixgw: {_sourced(problem, name, flags or {})}", file=sys.stderr)
    warnings = (credential_file_warnings(config) + port_warnings(config)
                + exposure_warnings(config) + ignored_settings(config))
    for warning in warnings:
        print(f"fixgw: {name}: warning: {warning}", file=sys.stderr)
    if problems:
        print(f"fixgw: {name}: {len(problems)} problem(s); the gateway would not start",
              file=sys.stderr)
        return 2
    print(f"fixgw: {name}: ok")
    for line in summary(config):
        print(f"  {line}")
    return 0


def cmd_venue_sim(args: argparse.Namespace, rest: list[str]) -> int:
    from gateway.venue_sim.__main__ import main as sim_main

    return sim_main(rest)


def cmd_oms(args: argparse.Namespace) -> int:
    from gateway.cli.oms_client import run_oms

    return run_oms(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fixgw", description="FIX 4.4 trading gateway.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version_flag(p)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the gateway (with its embedded UAT venue by default)")
    run.add_argument("--config", type=Path, help="deployment TOML (default sessions/uat-sim.toml)")
    run.add_argument("--oms-port", type=int, help="OMS acceptor port (default 9878)")
    run.add_argument("--data-dir", type=Path, help="stores, journal and logs (default ./var)")
    run.add_argument("--grpc-port", type=int, help="gRPC event service port (default 50051)")
    run.add_argument("--admin-port", type=int, help="admin service port (default 50052)")
    run.add_argument("--metrics-port", type=int,
                     help="Prometheus /metrics port (default 9464; 0 = any free port)")
    run.add_argument("--check", action="store_true",
                     help="check the config and every credential, certificate and file it "
                          "names, print where the gateway would listen and connect, and exit "
                          "(0 = ok, 2 = problems); starts nothing")
    sub.add_parser("venue-sim", help="run the UAT venue simulator alone (see --help)",
                   add_help=False)
    from gateway.cli.kraken_cmd import add_kraken_parser
    from gateway.cli.oms_client import add_oms_parser
    from gateway.cli.signals_cmd import add_signals_parser

    add_oms_parser(sub)
    add_kraken_parser(sub)
    add_signals_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["venue-sim"]:
        return cmd_venue_sim(argparse.Namespace(), argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return cmd_run(args)
    if args.command == "oms":
        return cmd_oms(args)
    if args.command == "signals":
        from gateway.cli.signals_cmd import run_signals

        return run_signals(args)
    if args.command == "kraken":
        from gateway.cli.kraken_cmd import run_kraken

        return run_kraken(args)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
