"""Certificates made at test time with openssl (and keytool for a Java truststore).

A throwaway CA signs server certificates for 127.0.0.1/localhost and client certificates;
EC keys keep it fast. Everything lives in the directory given and expires in two days.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

DAYS = "2"


def _run(*args: str, cwd: Path) -> None:
    result = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} failed:\n{result.stderr}")


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA of its own; `cert` is what clients and servers trust."""

    directory: Path
    cert: Path
    key: Path

    def issue(
        self,
        name: str,
        common_name: str,
        *,
        server: bool,
        hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
        key_password: str | None = None,
    ) -> Issued:
        """A certificate signed by this CA: for a server (with `hosts` as subject alternative
        names) or for a client (`common_name` is the user name). With `key_password` the
        key is written as encrypted PKCS#8."""
        d = self.directory
        _run(
            "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.plain.key", "-out", f"{name}.csr",
            "-subj", f"/CN={common_name}",
            cwd=d,
        )  # fmt: skip
        san = ",".join(f"IP:{h}" if h[0].isdigit() else f"DNS:{h}" for h in hosts)
        extensions = (
            f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n"
            if server
            else "extendedKeyUsage=clientAuth\n"
        )
        (d / f"{name}.ext").write_text(extensions)
        _run(
            "openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", self.cert.name,
            "-CAkey", self.key.name, "-CAcreateserial", "-days", DAYS, "-sha256",
            "-extfile", f"{name}.ext", "-out", f"{name}.crt",
            cwd=d,
        )  # fmt: skip
        if key_password is None:
            (d / f"{name}.plain.key").rename(d / f"{name}.key")
        else:
            _run(
                "openssl", "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", f"{name}.plain.key",
                "-out", f"{name}.key", "-passout", f"pass:{key_password}",
                cwd=d,
            )  # fmt: skip
            (d / f"{name}.plain.key").unlink()
        return Issued(d / f"{name}.crt", d / f"{name}.key")

    def pkcs12(self, issued: Issued, password: str) -> Path:
        """A PKCS#12 keystore (key, certificate and this CA) for a Java server."""
        out = issued.cert.with_suffix(".p12")
        _run(
            "openssl", "pkcs12", "-export", "-in", issued.cert.name, "-inkey", issued.key.name,
            "-certfile", self.cert.name, "-name", issued.cert.stem, "-out", out.name,
            "-passout", f"pass:{password}",
            cwd=self.directory,
        )  # fmt: skip
        return out

    def truststore(self, password: str) -> Path:
        """A PKCS#12 truststore holding this CA, made with the JDK's keytool."""
        out = self.directory / "truststore.p12"
        _run(
            "keytool", "-importcert", "-noprompt", "-alias", "test-ca", "-file", self.cert.name,
            "-keystore", out.name, "-storetype", "PKCS12", "-storepass", password,
            cwd=self.directory,
        )  # fmt: skip
        return out


def make_ca(directory: Path, name: str = "inventory-sink test CA") -> CertificateAuthority:
    directory.mkdir(parents=True, exist_ok=True)
    _run(
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", DAYS, "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return CertificateAuthority(directory, directory / "ca.crt", directory / "ca.key")
