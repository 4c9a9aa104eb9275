"""The gateway's data directory, created private.

It holds the order journal, the QuickFIX stores and message log (every order and fill of the
day, the OMS's accounts), the event journal and the admin token. QuickFIX and the event journal
create their files with the process umask (usually 0644), so the directory's own mode is what
keeps other users of the host out of them: a new one is created 0700.

An existing directory that others can enter is left as it is (an operator may share it on
purpose, e.g. with a log shipper's group) and named in a warning at every start.

May import: the standard library.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path

log = logging.getLogger(__name__)


def prepare_data_dir(path: Path) -> Path:
    """Create `path` (mode 0700) if it is missing; warn if other users can reach into it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("data directory %s has mode %03o: other users can read its order journal, "
                    "FIX stores and message log; `chmod 700 %s` unless that is meant",
                    path, mode, path)
    return path
