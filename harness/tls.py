"""A throw-away self-signed certificate for TLS tests (openssl CLI; skips when absent)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def self_signed(directory: Path, name: str = "localhost") -> tuple[Path, Path]:
    """(certificate, key) PEM files valid for ``name`` and 127.0.0.1, for one day."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not found: needed to make a test certificate")
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name},IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def certificate_authority(directory: Path, names: list[str]) -> dict[str, tuple[Path, Path]]:
    """A throw-away CA and, per name, a (certificate, key) it signed with that CN, valid for
    localhost and 127.0.0.1; ``result["ca"]`` is the CA's own pair."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not found: needed to make test certificates")
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    ca_cert, ca_key = directory / "ca.pem", directory / "ca.key"
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
        "-keyout", str(ca_key), "-out", str(ca_cert))  # fmt: skip
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    out: dict[str, tuple[Path, Path]] = {"ca": (ca_cert, ca_key)}
    for name in names:
        cert, key, csr = (directory / f"{name}{s}" for s in (".pem", ".key", ".csr"))
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", str(key), "-out", str(csr))  # fmt: skip
        run("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
        out[name] = (cert, key)
    return out
