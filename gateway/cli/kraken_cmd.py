"""`fixgw kraken sign`: compute a Kraken signature locally, so a user whose key is refused can
check their own signing against ours. The secret is read from a file or an environment
variable and is never printed, not even in an error.

    fixgw kraken sign --path /0/private/AddOrder --nonce 1616492376594 \\
        --data 'nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25' \\
        --secret-file ~/.kraken/secret
    fixgw kraken sign --futures --path /api/v3/sendorder --nonce 1 --data 'symbol=PF_XBTUSD' ...
    fixgw kraken sign --fix-logon --seq 1 --sender MYCOMPID --target KRAKEN-TRD \\
        --api-key KEY --nonce 1688736075072 --secret-env KRAKEN_SECRET
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gateway.kraken.auth import fix_logon_password, futures_authent, spot_api_sign
from gateway.kraken.secrets import ENV_NAME, SecretError, load_secret


def add_kraken_parser(sub: Any) -> None:
    p = sub.add_parser("kraken", help="Kraken tools (signature check)")
    ksub = p.add_subparsers(dest="kraken_command", required=True)
    s = ksub.add_parser("sign", help="print a Kraken signature computed locally",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kind = s.add_mutually_exclusive_group()
    kind.add_argument("--futures", action="store_true", help="Futures REST Authent")
    kind.add_argument("--fix-logon", action="store_true", help="FIX trading logon 554 Password")
    s.add_argument("--path", help="URI path, e.g. /0/private/AddOrder or /api/v3/sendorder")
    s.add_argument("--nonce", required=True)
    s.add_argument("--data", default="", help="the exact url-encoded body / post data")
    s.add_argument("--seq", type=int, help="FIX logon MsgSeqNum (34)")
    s.add_argument("--sender", help="FIX SenderCompID (49)")
    s.add_argument("--target", default="KRAKEN-TRD", help="FIX TargetCompID (56)")
    s.add_argument("--api-key", help="API key (553) for --fix-logon")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--secret-file", help="file holding the base64 API secret")
    src.add_argument("--secret-env", help="environment variable holding the base64 API secret")


def run_kraken(args: argparse.Namespace) -> int:
    if args.secret_env is not None and not ENV_NAME.fullmatch(args.secret_env):
        # Most likely the secret itself, pasted where its variable's name goes: not repeated.
        print("fixgw kraken sign: --secret-env takes the name of an environment variable "
              "(letters, digits and _, not starting with a digit), not the secret itself",
              file=sys.stderr)
        return 2
    try:
        secret = load_secret(args.secret_env, args.secret_file)
    except SecretError as exc:
        print(f"fixgw kraken sign: {exc}", file=sys.stderr)
        return 2
    try:
        if args.fix_logon:
            missing = [f"--{n}" for n in ("seq", "sender", "api_key")
                       if getattr(args, n) in (None, "")]
            if missing:
                print(f"fixgw kraken sign --fix-logon needs {', '.join(missing)}",
                      file=sys.stderr)
                return 2
            print(fix_logon_password(secret, args.seq, args.sender, args.target, args.api_key,
                                     args.nonce))
        elif args.futures:
            if not args.path:
                print("fixgw kraken sign --futures needs --path", file=sys.stderr)
                return 2
            print(futures_authent(secret, args.path, args.data, args.nonce))
        else:
            if not args.path:
                print("fixgw kraken sign needs --path (e.g. /0/private/AddOrder)",
                      file=sys.stderr)
                return 2
            print(spot_api_sign(secret, args.path, args.nonce, args.data))
    except ValueError as exc:  # bad base64 secret: the message never contains it
        print(f"fixgw kraken sign: {exc}", file=sys.stderr)
        return 2
    return 0
