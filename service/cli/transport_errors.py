"""Explain failures of transport security (TLS, SASL, pg_hba) as one line naming the fix.

`service.cli.explain.explain` asks here first, because these failures also look like "cannot
connect" further up the chain.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence

from service.config.settings import ConfigurationError
from service.kafka.refusal import KafkaAccessDenied

CHECK_VERIFY = (
    "for PostgreSQL check POSTGRES_SSLROOTCERT (the CA that signed the server's certificate) "
    "and, with POSTGRES_SSLMODE=verify-full, that POSTGRES_HOST is a name the certificate "
    "carries; for Kafka check KAFKA_SSL_CA_FILE and KAFKA_BOOTSTRAP_SERVERS"
)


def explain_transport(chain: Sequence[BaseException]) -> str | None:
    for item in chain:
        if isinstance(item, ConfigurationError | KafkaAccessDenied):
            return str(item)
        if isinstance(item, ssl.SSLCertVerificationError):
            reason = item.verify_message or item.reason or str(item)
            return f"the server's TLS certificate was not accepted ({reason}); {CHECK_VERIFY}"
        if isinstance(item, ssl.SSLError):
            return (
                f"the TLS handshake failed ({item.reason or item}); check POSTGRES_SSLMODE, "
                "POSTGRES_SSLCERT/POSTGRES_SSLKEY and the server's TLS settings"
            )
        text = str(item)
        if "rejected SSL upgrade" in text:
            return (
                f"PostgreSQL does not offer TLS ({text}); enable ssl on the server, or lower "
                "POSTGRES_SSLMODE (prefer, or disable) if the network is trusted"
            )
        if type(item).__name__ == "InvalidAuthorizationSpecificationError":
            return _refused_by_pg_hba(text)
    return None


def _refused_by_pg_hba(text: str) -> str:
    if "no encryption" in text:
        return (
            f"PostgreSQL requires TLS for this login ({text}); set POSTGRES_SSLMODE=verify-full "
            "with POSTGRES_SSLROOTCERT (or at least require)"
        )
    if "certificate" in text:
        return (
            f"PostgreSQL wants a valid client certificate for this login ({text}); set "
            "POSTGRES_SSLCERT and POSTGRES_SSLKEY to a certificate whose common name is "
            "POSTGRES_USER, signed by a CA the server trusts"
        )
    return (
        f"PostgreSQL refused the connection ({text}); its pg_hba.conf must allow POSTGRES_USER "
        "from this host (check POSTGRES_SSLMODE too: some rules accept only TLS)"
    )
