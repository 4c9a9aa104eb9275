"""`fixgw kraken sign` against the vectors of shared/kraken-api.md, and it never echoes the
secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.procs import REPO

SPOT_SECRET = ("kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6"
               "F1huXg==")
SDK_SECRET = "cHl0aG9uLWtyYWtlbi1zZGsgdW5pdC10ZXN0IHNlY3JldCB2YWx1ZQ=="


def _sign(tmp: Path, secret: str, *args: str) -> subprocess.CompletedProcess[str]:
    f = tmp / "secret"
    f.write_text(secret + "\n")
    return subprocess.run([sys.executable, "-m", "gateway.cli.main", "kraken", "sign", *args,
                           "--secret-file", str(f)], capture_output=True, text=True, cwd=REPO,
                          timeout=60)


def test_spot_api_sign_official_vector(tmp_path: Path) -> None:
    r = _sign(tmp_path, SPOT_SECRET, "--path", "/0/private/AddOrder", "--nonce",
              "1616492376594", "--data",
              "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRf"
                                "p32bAb0nmbRn6H8ndwLUQ==")
    assert SPOT_SECRET not in r.stdout + r.stderr


def test_futures_authent_vector(tmp_path: Path) -> None:
    r = _sign(tmp_path, SDK_SECRET, "--futures", "--path", "/derivatives/api/v3/sendorder",
              "--nonce", "1616492376594", "--data", "orderType=lmt&symbol=PI_XBTUSD")
    assert r.stdout.strip() == ("Txi+gJVXe3EN1brXYQ46FuV6UVtEVSKhc6dYMhPb7a/HXZLGvO6m9UUg+KVKqhLx"
                                "rbllOPI7qRkHYmPfJZZSGA==")


def test_fix_logon_password_vector(tmp_path: Path) -> None:
    r = _sign(tmp_path, SPOT_SECRET, "--fix-logon", "--seq", "1", "--sender", "MYCOMPID",
              "--target", "KRAKEN-TRD", "--api-key",
              "CJbfPw4tnbf/9en/ZmpewCTKEwmmzO18LXZcHQcu7HPLWre4l8+V9I3y", "--nonce",
              "1688736075072")
    assert r.stdout.strip() == ("w36oOGByljjwPE+Kw81a6/zlM2Jboow9Bmjn24kknTvqIZxqkZIptbqIslWhaeVd"
                                "rdo5VxIjYWM26v7V7raTAw==")


def test_bad_secret_is_refused_without_echoing_it(tmp_path: Path) -> None:
    bad = "not-base64-@@@secret-value"
    r = _sign(tmp_path, bad, "--path", "/0/private/AddOrder", "--nonce", "1")
    assert r.returncode == 2
    assert bad not in r.stdout + r.stderr
    assert r.stderr.strip()


def test_a_secret_given_as_secret_env_is_refused_without_echoing_it() -> None:
    """`--secret-env` takes a variable's name; the secret pasted there is never printed,
    whether it could not be a name (+, /, =) or could (letters and digits only)."""
    for pasted in (SPOT_SECRET, "CJbfPw4tnbf9enZmpewCTKEwmmzO18LXZcHQcu7HPLWre4l8V9I3y"):
        env = {k: v for k, v in os.environ.items() if k != pasted}
        r = subprocess.run([sys.executable, "-m", "gateway.cli.main", "kraken", "sign", "--path",
                            "/0/private/AddOrder", "--nonce", "1", "--secret-env", pasted],
                           capture_output=True, text=True, cwd=REPO, timeout=60, env=env)
        assert r.returncode == 2, r.stderr
        assert pasted not in r.stdout + r.stderr and r.stderr.strip()
