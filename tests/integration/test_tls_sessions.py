"""TLS on every FIX session, end to end: the simulator serves its FIX ports over TLS with a
certificate the test generates, the gateway connects out through its TLS bridge verifying it,
and the OMS connects to the gateway over TLS too. A gateway that trusts another CA is refused."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

from tests.conftest import new_id, order_fields
from tests.procs import Credentials, GatewayProcess, SimProcess
from tests.tls.certs import make_pki, openssl_available

pytestmark = pytest.mark.skipif(not openssl_available(), reason="needs the openssl CLI")


def _tls_venue_toml(ca: Path) -> str:
    return f'tls = {{ ca_file = "{ca}", server_hostname = "localhost" }}'


def test_tls_venue_and_tls_oms_end_to_end(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds, tls=(pki.server_cert, pki.server_key))
    gw = None
    try:
        oms_tls = (f'tls = {{ cert_file = "{pki.server_cert}", key_file = "{pki.server_key}", '
                   f'allow_addresses = ["127.0.0.1"] }}')
        gw = GatewayProcess(tmp_path / "gw", sim, creds, oms_toml=oms_tls,
                            trading_toml=_tls_venue_toml(pki.ca), md_toml=_tls_venue_toml(pki.ca))
        gw.err.wait_for(r"instrument list: 5 instruments", 10)  # MD session over TLS works too
        # The OMS side: a TLS client verifying the gateway's certificate, speaking raw FIX.
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        raw = socket.create_connection(("127.0.0.1", gw.oms_port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.version() in ("TLSv1.2", "TLSv1.3")
            s.sendall(_fix("A", 1, [(98, "0"), (108, "30")]))
            assert b"35=A" in _read(s)
            cl = new_id("TLS")
            s.sendall(_fix("D", 2, order_fields(cl, "1", "0.01", "30000.0")))
            er = _read(s)
            assert b"35=8" in er and f"11={cl}".encode() in er and b"150=0" in er
        # Plain TCP to the TLS port is not a FIX session.
        with socket.create_connection(("127.0.0.1", gw.oms_port), timeout=5) as plain:
            plain.sendall(_fix("A", 1, [(98, "0"), (108, "30")]))
            plain.settimeout(5)
            try:
                data = plain.recv(4096)
            except (ConnectionResetError, TimeoutError):
                data = b""
            assert b"35=A" not in data
    finally:
        if gw is not None:
            gw.stop()
        sim.stop()


def test_venue_certificate_from_another_ca_is_refused(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds, tls=(pki.server_cert, pki.server_key))
    gw = None
    try:
        gw = GatewayProcess(tmp_path / "gw", sim, creds, wait_venue=False,
                            trading_toml=_tls_venue_toml(pki.other_ca),
                            md_toml=_tls_venue_toml(pki.other_ca))
        gw.err.wait_for(r"certificate verify failed", 15)
        assert "FIXGW->KRAKEN-TRD (venue): created -> logged_on" not in gw.err.text()
    finally:
        if gw is not None:
            gw.stop()
        sim.stop()


def _fix(msg_type: str, seq: int, fields: list[tuple[int, str]]) -> bytes:
    from datetime import UTC, datetime

    now = datetime.now(UTC).strftime("%Y%m%d-%H:%M:%S.%f")[:-3]
    body = f"35={msg_type}\x0149=OMS\x0156=FIXGW\x0134={seq}\x0152={now}\x01"
    body += "".join(f"{t}={v}\x01" for t, v in fields)
    head = f"8=FIX.4.4\x019={len(body)}\x01"
    total = sum((head + body).encode()) % 256
    return (head + body + f"10={total:03d}\x01").encode()


def _read(s: ssl.SSLSocket) -> bytes:
    data = b""
    while b"\x0110=" not in data or not data.endswith(b"\x01"):
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data
