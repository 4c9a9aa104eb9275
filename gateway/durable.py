"""Making a directory entry durable: after a file is created, renamed or unlinked, the
directory itself must be synced, or a power cut can lose the entry although the file's own
data was synced. Low-level: imports nothing of ours; the order and event journals, the
operator's state files and the admin token file use it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_dir"]


def fsync_dir(directory: Path) -> None:
    """Sync `directory`, so the entries just created, renamed or unlinked in it survive."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
