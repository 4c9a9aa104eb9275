"""`fixgwctl`: the ops CLI over the authenticated admin service.

The name is reserved now; its commands arrive with the admin service (ops issue).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("fixgwctl: the admin commands are not available in this build yet "
          "(they come with the admin service)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
