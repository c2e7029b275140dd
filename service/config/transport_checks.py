"""Which transport-security settings contradict each other (pure: no files are opened).

Each problem is one sentence naming the variables and the fix. A setting that would be
silently ignored is a problem too: an operator who set KAFKA_SSL_CA_FILE believes the
connection is encrypted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class KafkaTransport(Protocol):
    """The Kafka settings these checks read (service/config/settings.py checks its own with
    them, so they see the fields rather than import the class)."""

    @property
    def kafka_security_protocol(self) -> str: ...


class PostgresTransport(Protocol):
    """The PostgreSQL settings these checks read."""

    @property
    def postgres_sslmode(self) -> str: ...
    @property
    def postgres_sslrootcert(self) -> Path | None: ...
    @property
    def postgres_sslcert(self) -> Path | None: ...


SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
TLS_PROTOCOLS = ("SSL", "SASL_SSL")
VERIFYING_SSLMODES = ("verify-ca", "verify-full")
# asyncpg's own handling of these modes (fall back to plain text) cannot take a client
# certificate from us; require and stronger can.
CLIENT_CERT_SSLMODES = ("require", "verify-ca", "verify-full")


def _set(settings: object, *names: str) -> list[str]:
    return [name.upper() for name in names if getattr(settings, name) is not None]


def kafka_problems(settings: KafkaTransport) -> list[str]:
    protocol = settings.kafka_security_protocol
    current = f"KAFKA_SECURITY_PROTOCOL={protocol}"
    problems = []
    if protocol in SASL_PROTOCOLS:
        needs = {
            "kafka_sasl_mechanism": "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, as the broker's "
            "listener enables",
            "kafka_sasl_username": "the Kafka user the service logs in as",
            "kafka_sasl_password": "that user's password",
        }
        for name, what in needs.items():
            if getattr(settings, name) is None:
                problems.append(
                    f"{name.upper()} is not set, but {current} needs it; set it to {what}"
                )
    else:
        for variable in _set(
            settings, "kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password"
        ):
            problems.append(
                f"{variable} is set, but {current} does not use SASL and would ignore it; set "
                "KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT), or remove it"
            )
    tls_files = ("kafka_ssl_ca_file", "kafka_ssl_cert_file", "kafka_ssl_key_file")
    if protocol not in TLS_PROTOCOLS:
        for variable in _set(settings, *tls_files, "kafka_ssl_key_password"):
            problems.append(
                f"{variable} is set, but {current} does not use TLS and would ignore it; set "
                "KAFKA_SECURITY_PROTOCOL=SSL (or SASL_SSL), or remove it"
            )
        return problems
    problems.extend(
        _client_certificate_problems(
            settings,
            "kafka_ssl_cert_file",
            "kafka_ssl_key_file",
            "kafka_ssl_key_password",
        )
    )
    return problems


def postgres_problems(settings: PostgresTransport) -> list[str]:
    mode = settings.postgres_sslmode
    current = f"POSTGRES_SSLMODE={mode}"
    files = ("postgres_sslrootcert", "postgres_sslcert", "postgres_sslkey", "postgres_sslpassword")
    if mode == "disable":
        return [
            f"{variable} is set, but {current} turns TLS off and would ignore it; set "
            "POSTGRES_SSLMODE=verify-full (or another mode), or remove it"
            for variable in _set(settings, *files)
        ]
    problems = []
    if settings.postgres_sslrootcert is not None and mode not in VERIFYING_SSLMODES:
        problems.append(
            f"POSTGRES_SSLROOTCERT is set, but {current} does not verify the server's "
            "certificate; set POSTGRES_SSLMODE=verify-full (or verify-ca), or remove it"
        )
    if settings.postgres_sslcert is not None and mode not in CLIENT_CERT_SSLMODES:
        problems.append(
            f"POSTGRES_SSLCERT is set, but a client certificate needs POSTGRES_SSLMODE=require, "
            f"verify-ca or verify-full, not {mode}; set one of those"
        )
    problems.extend(
        _client_certificate_problems(
            settings, "postgres_sslcert", "postgres_sslkey", "postgres_sslpassword"
        )
    )
    return problems


def _client_certificate_problems(settings: object, cert: str, key: str, password: str) -> list[str]:
    """A key or its password without the certificate they belong to."""
    if getattr(settings, cert) is not None:
        return []
    return [
        f"{variable} is set without {cert.upper()}; set {cert.upper()} to the client "
        "certificate (PEM) too, or remove it"
        for variable in _set(settings, key, password)
    ]
