"""`--version` for `fixgw` and `fixgwctl` (the line itself is `gateway.version`'s)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from gateway.version import version_line


class _VersionAction(argparse.Action):
    """argparse's own version action takes the string when the parser is built; this one
    looks the versions up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 **_kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the versions of fixgw, QuickFIX, grpcio and Python, and "
                              "exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        print(version_line(parser.prog))
        parser.exit()


def add_version_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action=_VersionAction)
