"""The versions an ops ticket needs: fixgw's own and those of the engines it runs on.

QuickFIX compiles from source at install, so two hosts with the same fixgw can differ there.
`fixgw run` logs this line at start, `fixgw --version` and `fixgwctl --version` print it, and
the admin Health answer carries the running gateway's.

May import: nothing of ours.
"""

from __future__ import annotations

import platform
from importlib import metadata


def _installed(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def version_line(prog: str = "fixgw") -> str:
    """e.g. "fixgw 0.1.0 (quickfix 1.16.0, grpcio 1.85.3, Python 3.11.7)"."""
    return (f"{prog} {_installed('fixgw')} (quickfix {_installed('quickfix')}, "
            f"grpcio {_installed('grpcio')}, Python {platform.python_version()})")
