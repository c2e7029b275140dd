"""Client TLS contexts from PEM files, with errors that name the setting to fix.

Kafka and PostgreSQL both use `client_context`; each passes the names of its own settings
so that a bad file is reported as, for example, `KAFKA_SSL_CA_FILE` or `POSTGRES_SSLROOTCERT`.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from service.config.settings import ConfigurationError


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where a client's trust anchors and (optional) certificate come from."""

    ca_file: Path | None
    cert_file: Path | None
    key_file: Path | None
    key_password: SecretStr | None
    # The names of the settings above, for error messages.
    ca_variable: str
    cert_variable: str
    key_variable: str
    password_variable: str


def client_context(files: TlsFiles, *, verify: bool, check_hostname: bool) -> ssl.SSLContext:
    """A TLS 1.2+ client context.

    verify: check the server's certificate against `ca_file` (or the system's CAs when it is
    None). check_hostname: also check that the certificate names the host connected to.
    A client certificate is presented when `cert_file` is set.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = verify and check_hostname
    context.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
    if verify:
        _load_trust(context, files)
    if files.cert_file is not None:
        _load_certificate(context, files)
    return context


def _load_trust(context: ssl.SSLContext, files: TlsFiles) -> None:
    if files.ca_file is None:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        return
    try:
        context.load_verify_locations(cafile=str(files.ca_file))
    except (OSError, ssl.SSLError) as error:
        raise ConfigurationError(
            f"{files.ca_variable}={str(files.ca_file)!r} could not be "
            f"loaded ({_reason(error)}); point it at the PEM file of the CA that signed the "
            "server's certificate"
        ) from None


def _load_certificate(context: ssl.SSLContext, files: TlsFiles) -> None:
    password = files.key_password.get_secret_value() if files.key_password else ""
    try:
        # A callable, so that an encrypted key without a password fails instead of prompting.
        context.load_cert_chain(
            str(files.cert_file),
            keyfile=str(files.key_file) if files.key_file else None,
            password=lambda: password,
        )
    except (OSError, ssl.SSLError) as error:
        raise ConfigurationError(
            f"the client certificate {files.cert_variable}="
            f"{str(files.cert_file)!r} with {files.key_variable}={str(files.key_file)!r} could "
            f"not be loaded ({_reason(error)}); check that both are PEM files, that the key "
            f"belongs to the certificate, and {files.password_variable} if the key is encrypted"
        ) from None


def _reason(error: OSError | ssl.SSLError) -> str:
    if isinstance(error, ssl.SSLError):
        return error.reason or str(error)
    return error.strerror or str(error)
