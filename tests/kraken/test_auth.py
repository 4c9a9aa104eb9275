"""Vectors from shared/kraken-api.md sections 1, 2 and 6, plus nonce and secrecy rules."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.kraken.auth import (
    NonceSource,
    decode_secret,
    fix_logon_message_input,
    fix_logon_password,
    futures_authent,
    futures_ws_sign_challenge,
    spot_api_sign,
)
from gateway.kraken.secrets import SecretError, SecretMaskingFilter, load_secret, mask

# kraken-api.md section 1, OFFICIAL vector (Kraken docs "Examples").
DOC_SECRET = (
    "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
)
# kraken-api.md sections 1 and 2, python-kraken-sdk unit-test secret.
SDK_SECRET = "cHl0aG9uLWtyYWtlbi1zZGsgdW5pdC10ZXN0IHNlY3JldCB2YWx1ZQ=="


# ---------------------------------------------------------------- section 1: spot API-Sign


def test_spot_official_vector() -> None:
    sign = spot_api_sign(
        DOC_SECRET,
        "/0/private/AddOrder",
        "1616492376594",
        "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25",
    )
    assert sign == (
        "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
    )


def test_spot_sdk_vector_and_int_nonce() -> None:
    expected = (
        "Fo+0Uhanvs3F1byZFCjVBMLsCcRE2xLQMDpoA3Q9hawoZ0ZL35AmbknAQBlOIs4baRx9UGhzQH+/CTl9qnyp1w=="
    )
    data = "nonce=1616492376594&ordertype=limit&pair=XBTUSD"
    assert spot_api_sign(SDK_SECRET, "/0/private/AddOrder", "1616492376594", data) == expected
    assert spot_api_sign(SDK_SECRET, "/0/private/AddOrder", 1616492376594, data) == expected


def test_spot_signature_depends_on_exact_body_bytes() -> None:
    a = spot_api_sign(SDK_SECRET, "/0/private/AddOrder", 1, "nonce=1&pair=XBTUSD&type=buy")
    b = spot_api_sign(SDK_SECRET, "/0/private/AddOrder", 1, "nonce=1&type=buy&pair=XBTUSD")
    assert a != b


# ---------------------------------------------------------------- section 2: futures Authent


SDK_AUTHENT = (
    "Txi+gJVXe3EN1brXYQ46FuV6UVtEVSKhc6dYMhPb7a/HXZLGvO6m9UUg+KVKqhLxrbllOPI7qRkHYmPfJZZSGA=="
)


@pytest.mark.parametrize("path", ["/derivatives/api/v3/sendorder", "/api/v3/sendorder"])
def test_futures_sdk_vector_with_and_without_derivatives_prefix(path: str) -> None:
    got = futures_authent(SDK_SECRET, path, "orderType=lmt&symbol=PI_XBTUSD", "1616492376594")
    assert got == SDK_AUTHENT


def test_futures_computed_vector() -> None:
    # COMPUTED (not official) regression vector, kraken-api.md section 2 vector 2.
    got = futures_authent(
        DOC_SECRET, "/api/v3/orderbook", "symbol=fi_xbtusd_180615", "1415957147987"
    )
    assert got == (
        "yJz//3g+Ds8NwQ6yaK3dDQ9Fxtoahlx6B/ehSYdenmiMJvvgbDnr0ZABCNFxPtP9WCR+OWSd/E5dcjaoMMdA7w=="
    )


def test_futures_without_nonce_omits_it() -> None:
    key = base64.b64decode(SDK_SECRET)
    msg = hashlib.sha256(b"symbol=PF_XBTUSD/api/v3/orderbook").digest()
    expected = base64.b64encode(hmac.new(key, msg, hashlib.sha512).digest()).decode()
    assert futures_authent(SDK_SECRET, "/api/v3/orderbook", "symbol=PF_XBTUSD", None) == expected
    assert futures_authent(SDK_SECRET, "/api/v3/orderbook", "symbol=PF_XBTUSD") == expected


def test_futures_ws_challenge_is_authent_of_the_challenge_alone() -> None:
    challenge = "c100b894-1729-464d-ae1c-907fb1ee1fab"
    signed = futures_ws_sign_challenge(DOC_SECRET, challenge)
    # Same construction: SHA256(challenge) HMAC'd; equals Authent with empty path and no nonce.
    assert signed == futures_authent(DOC_SECRET, "", challenge, None)
    key = base64.b64decode(DOC_SECRET)
    digest = hmac.new(key, hashlib.sha256(challenge.encode()).digest(), hashlib.sha512).digest()
    assert signed == base64.b64encode(digest).decode()


# ---------------------------------------------------------------- section 6: FIX 554 Password

EXAMPLE_API_KEY = "CJbfPw4tnbf/9en/ZmpewCTKEwmmzO18LXZcHQcu7HPLWre4l8+V9I3y"


def test_fix_message_input_layout() -> None:
    assert fix_logon_message_input(1, "MYCOMPID", "KRAKEN-TRD", "KEY") == (
        "35=A\x0134=1\x0149=MYCOMPID\x0156=KRAKEN-TRD\x01553=KEY\x01"
    )
    with pytest.raises(ValueError):
        fix_logon_message_input(0, "A", "B", "K")


def test_fix_password_computed_vector() -> None:
    # COMPUTED (not official) regression vector, kraken-api.md section 6.
    pw = fix_logon_password(
        DOC_SECRET, 1, "MYCOMPID", "KRAKEN-TRD", EXAMPLE_API_KEY, "1688736075072"
    )
    assert pw == (
        "w36oOGByljjwPE+Kw81a6/zlM2Jboow9Bmjn24kknTvqIZxqkZIptbqIslWhaeVdrdo5VxIjYWM26v7V7raTAw=="
    )


def test_fix_password_depends_on_seq_num() -> None:
    a = fix_logon_password(DOC_SECRET, 1, "MYCOMPID", "KRAKEN-TRD", EXAMPLE_API_KEY, "1")
    b = fix_logon_password(DOC_SECRET, 2, "MYCOMPID", "KRAKEN-TRD", EXAMPLE_API_KEY, "1")
    assert a != b


# ---------------------------------------------------------------- bad secrets never leak

BAD_SECRETS = [
    "s3cr3t!!value~~XYZ-qwerty",
    "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=",
    "rttp4AzwRfYEdQ7R7X8Z/04Y4TZPa97pqCypi3xXxAqftygftnI6H9yGV+OcUOOJeFtZkr8mVwbAndU3Kz4Q+eG",
    "abc$def",
]


@pytest.mark.parametrize("secret", BAD_SECRETS)
def test_bad_secret_error_never_contains_secret(secret: str) -> None:
    calls: list[Callable[[], object]] = [
        lambda: spot_api_sign(secret, "/0/private/Balance", 1, "nonce=1"),
        lambda: futures_authent(secret, "/api/v3/accounts", "", "1"),
        lambda: futures_ws_sign_challenge(secret, "challenge"),
        lambda: fix_logon_password(secret, 1, "S", "T", "K", "1"),
        lambda: decode_secret(secret),
    ]
    for call in calls:
        with pytest.raises(ValueError) as info:
            call()
        text = str(info.value) + repr(info.value)
        assert "base64" in text
        assert secret not in text
        # No fragment of the secret either (e.g. an "invalid character" excerpt).
        assert not any(secret[i : i + 6] in text for i in range(len(secret) - 5))
        assert info.value.__cause__ is None
        assert info.value.__suppress_context__


def test_empty_secret_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        decode_secret("   ")


# ---------------------------------------------------------------- NonceSource


def test_nonce_unit_is_microseconds_and_monotonic_even_if_clock_steps_back() -> None:
    clock = iter([2_000_000_000, 1_000_000_000, 1_000_000_000, 3_000_000_000])
    src = NonceSource(clock_ns=lambda: next(clock))
    assert src.unit == "us"
    values = [src.next() for _ in range(4)]
    assert values == [2_000_000, 2_000_001, 2_000_002, 3_000_000]


def test_nonce_monotonic_and_unique_across_threads() -> None:
    src = NonceSource()
    per_thread: list[list[int]] = [[] for _ in range(8)]
    barrier = threading.Barrier(8)

    def worker(out: list[int]) -> None:
        barrier.wait()
        for _ in range(2_000):
            out.append(src.next())

    threads = [threading.Thread(target=worker, args=(out,)) for out in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [v for out in per_thread for v in out]
    assert len(set(everything)) == len(everything) == 16_000
    for out in per_thread:
        assert out == sorted(out) and len(set(out)) == len(out)
    assert max(everything) == src.last
    assert all(0 < v < 2**64 for v in everything)


def test_nonce_survives_restart_with_clock_behind(tmp_path: Path) -> None:
    state = tmp_path / "nonce.state"
    t = [5_000_000_000_000]  # ns

    def clock() -> int:
        return t[0]

    first = NonceSource(state, clock_ns=clock)
    issued = [first.next() for _ in range(100)]
    assert state.exists()
    assert (state.stat().st_mode & 0o077) == 0  # private file
    # Simulated restart with the wall clock stepped back a whole hour.
    t[0] -= 3_600 * 1_000_000_000
    second = NonceSource(state, clock_ns=clock)
    nxt = second.next()
    assert nxt > max(issued)
    # And once the clock is ahead again, the clock wins.
    t[0] += 7_200 * 1_000_000_000
    assert second.next() == t[0] // 1_000


def test_nonce_state_written_only_when_reservation_exhausted(tmp_path: Path) -> None:
    state = tmp_path / "nonce.state"
    src = NonceSource(state, reserve=1_000, clock_ns=lambda: 0)
    src.next()  # 1, reserves up to 1001
    assert int(state.read_text()) == 1_001
    for _ in range(999):
        src.next()
    assert int(state.read_text()) == 1_001  # no write while inside the reservation
    assert src.next() == 1_001
    assert src.next() == 1_002
    assert int(state.read_text()) == 2_002


def test_nonce_corrupt_state_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "nonce.state"
    state.write_text("12ab\n")
    with pytest.raises(ValueError, match="corrupt"):
        NonceSource(state)


def test_nonce_millisecond_unit_option() -> None:
    src = NonceSource(units_per_second=1_000, clock_ns=lambda: 1_688_736_075_072_123_456)
    assert src.unit == "ms"
    assert src.next_str() == "1688736075072"


def test_nonce_overflow_guard() -> None:
    src = NonceSource(units_per_second=1_000_000_000, clock_ns=lambda: 2**64)
    with pytest.raises(OverflowError):
        src.next()


# ---------------------------------------------------------------- secrets.py


def test_load_secret_env_then_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "secret.txt"
    f.write_text("  from-file-value\n")
    monkeypatch.setenv("FIXGW_TEST_SECRET", " from-env-value \n")
    assert load_secret("FIXGW_TEST_SECRET", f) == "from-env-value"
    monkeypatch.delenv("FIXGW_TEST_SECRET")
    assert load_secret("FIXGW_TEST_SECRET", f) == "from-file-value"
    assert load_secret(None, str(f)) == "from-file-value"


def test_load_secret_errors_name_sources_not_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nope.txt"
    monkeypatch.delenv("FIXGW_TEST_SECRET", raising=False)
    with pytest.raises(SecretError) as info:
        load_secret("FIXGW_TEST_SECRET", missing)
    assert "FIXGW_TEST_SECRET" in str(info.value) and str(missing) in str(info.value)

    monkeypatch.setenv("FIXGW_TEST_SECRET", "   ")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(SecretError, match=r"blank.*empty"):
        load_secret("FIXGW_TEST_SECRET", empty)

    with pytest.raises(SecretError, match="directory"):
        load_secret(None, tmp_path)
    with pytest.raises(SecretError, match="no credential source"):
        load_secret(None, None)


def test_a_credential_with_whitespace_inside_is_refused_without_printing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key file of two lines (or a key wrapped when pasted) was read whole: its newline went
    into the trading logon's 553 and the venue refused every logon."""
    two = tmp_path / "key.txt"
    two.write_text("AAAAkeyline1\nBBBBkeyline2\n")
    with pytest.raises(SecretError, match=r"key\.txt holds whitespace inside the value \(2 lines\)"
                       ) as info:
        load_secret(None, two)
    assert "keyline" not in str(info.value)
    monkeypatch.setenv("FIXGW_TEST_SECRET", "abc def")
    with pytest.raises(SecretError, match="FIXGW_TEST_SECRET holds whitespace inside") as info:
        load_secret("FIXGW_TEST_SECRET", two)
    assert "abc" not in str(info.value)


def test_a_secret_pasted_as_a_file_name_is_not_printed() -> None:
    """`api_secret = { file = "kQH5…==" }`: the file does not exist, and the error (printed by
    `fixgw run` and `--check`, and logged) must not carry the secret it was given."""
    with pytest.raises(SecretError) as info:
        load_secret(None, DOC_SECRET)
    assert DOC_SECRET not in str(info.value) and "kQH5HW" not in str(info.value)
    assert "looks like a key or secret itself" in str(info.value)
    with pytest.raises(SecretError, match=r"/etc/fixgw/kraken\.secret does not exist"):
        load_secret(None, "/etc/fixgw/kraken.secret")  # a path is shown


def test_mask_secrets_and_fix_credentials() -> None:
    raw = (
        "8=FIX.4.4\x019=250\x0135=A\x0149=MYCOMPID\x0156=KRAKEN-TRD\x0134=1\x01"
        "553=APIKEY123\x01554=w36oOGByljjwPE+Kw81a6/zlM2==\x015025=1688736075072\x0110=215\x01"
    )
    out = mask(raw, [])
    assert "APIKEY123" not in out and "w36oOG" not in out
    assert "\x01553=***\x01554=***\x015025=1688736075072\x01" in out

    piped = "35=A|553=KEY|554=PASS|1553=keep|x554=keep"
    assert mask(piped, []) == "35=A|553=***|554=***|1553=keep|x554=keep"
    assert mask("554=PASS at start", []) == "554=***"

    text = f"signing with {DOC_SECRET} and key abc"
    assert mask(text, [DOC_SECRET, "", DOC_SECRET[:10]]) == "signing with *** and key abc"


def test_masking_filter_covers_args(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("fixgw.test.masking")
    filt = SecretMaskingFilter(["topsecret"])
    logger.addFilter(filt)
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            logger.info("sent %s and %s", "35=A|554=pw|", "topsecret")
    finally:
        logger.removeFilter(filt)
    assert caplog.records[0].getMessage() == "sent 35=A|554=***| and ***"


def test_a_secret_pasted_as_a_variable_name_is_not_printed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A key of letters and digits is a valid variable name: not set, and not printed. Hex
    keys are masked too; a variable's name as people write them is shown."""
    for pasted in ("CJbfPw4tnbf9enZmpewCTKEwmmzO18LXZcHQcu7HPLWre4l8V9I3y",
                   "3f9a0c2b7d41e8a95b6c0d1e2f3a4b5c6d7e8f90"):
        monkeypatch.delenv(pasted, raising=False)
        with pytest.raises(SecretError) as info:
            load_secret(pasted)
        assert pasted not in str(info.value)
        assert "looks like a key or secret itself" in str(info.value)
    for name in ("KRAKEN_FIX_API_SECRET_PROD", "kraken_fix_api_secret_prod"):
        monkeypatch.delenv(name, raising=False)
        with pytest.raises(SecretError, match=f"environment variable {name} is not set"):
            load_secret(name)
