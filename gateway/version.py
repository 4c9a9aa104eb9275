"""The versions an ops ticket needs: fixgw's own and those of the engines it runs on.

QuickFIX compiles from source at install, so two hosts with the same fixgw can differ there.
`fixgw run` logs this line at start, `fixgw --version` and `fixgwctl --version` print it, the
admin Health answer carries the running gateway's, and `/metrics` has it as
`fixgw_build_info`.

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


def versions() -> dict[str, str]:
    """{"fixgw": "0.1.0", "quickfix": "1.16.0", "grpcio": "1.85.3", "python": "3.11.7"}."""
    return {"fixgw": _installed("fixgw"), "quickfix": _installed("quickfix"),
            "grpcio": _installed("grpcio"), "python": platform.python_version()}


def version_line(prog: str = "fixgw") -> str:
    """e.g. "fixgw 0.1.0 (quickfix 1.16.0, grpcio 1.85.3, Python 3.11.7)"."""
    v = versions()
    return (f"{prog} {v['fixgw']} (quickfix {v['quickfix']}, grpcio {v['grpcio']}, "
            f"Python {v['python']})")
