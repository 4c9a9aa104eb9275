"""A throw-away PKI for the TLS bridge tests, made with the ``openssl`` command line.

Why the CLI: the ``cryptography`` package is not a dependency of fixgw (not in the venv), and
every host that runs the gateway has OpenSSL. A private config file is passed to every command
so the result does not depend on the system's ``openssl.cnf``. EC P-256 keys keep generation
well under a second.

What is made (see `Pki`): a CA; a server certificate for ``localhost``/``127.0.0.1`` signed by
it; a client certificate signed by it (mutual TLS); a second, unrelated CA (the "wrong trust
anchor"); and a self-signed server certificate (for ``verify=False``).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_CONFIG = """\
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ v3_server ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ v3_client ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    self_signed_cert: Path
    self_signed_key: Path


def openssl_available() -> bool:
    return shutil.which("openssl") is not None


def make_pki(directory: Path, days: int = 2) -> Pki:
    """Create the whole PKI under ``directory`` (must be writable); returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    cnf = directory / "openssl.cnf"
    cnf.write_text(_CONFIG, encoding="utf-8")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    def self_signed(name: str, cn: str, ext: str) -> tuple[Path, Path]:
        cert, key = directory / f"{name}.pem", directory / f"{name}.key"
        run("req", "-x509", "-config", str(cnf), "-extensions", ext, "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
            "-out", str(cert), "-days", str(days), "-subj", f"/CN={cn}")
        return cert, key

    def signed(name: str, cn: str, ext: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
        cert, key, csr = (directory / f"{name}.pem", directory / f"{name}.key",
                          directory / f"{name}.csr")
        run("req", "-new", "-config", str(cnf), "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
            "-out", str(csr), "-subj", f"/CN={cn}")
        run("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
            "-set_serial", str(secrets.randbits(62) + 1), "-days", str(days),
            "-extfile", str(cnf), "-extensions", ext, "-out", str(cert))
        return cert, key

    ca = self_signed("ca", "fixgw test CA", "v3_ca")
    server = signed("server", "localhost", "v3_server", ca)
    client = signed("client", "fixgw-test-oms", "v3_client", ca)
    other_ca = self_signed("other-ca", "unrelated test CA", "v3_ca")
    lone = self_signed("self-signed", "localhost", "v3_server")
    return Pki(ca=ca[0], server_cert=server[0], server_key=server[1], client_cert=client[0],
               client_key=client[1], other_ca=other_ca[0], self_signed_cert=lone[0],
               self_signed_key=lone[1])
