"""Why Kafka refused this client, as one sentence naming the setting or the ACL to fix.

aiokafka gives up with `KafkaConnectionError: Unable to bootstrap from [...]` and keeps the
reason only in its log line. `kafka_refusal` opens the first connection again exactly as
aiokafka's bootstrap does (same address, TLS context and SASL login) and names what failed:
the login, the SASL mechanism, the broker's certificate, or a KAFKA_SECURITY_PROTOCOL that does
not match the listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    KafkaConnectionError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from service.config.local_stack import local_stack_hint
from service.config.settings import KafkaSettings
from service.config.transport_checks import TLS_PROTOCOLS
from service.kafka.security import client_kwargs
from service.observability.logs import brief


class KafkaAccessDenied(RuntimeError):
    """Kafka's authorizer refused an operation the command needs: an ACL is missing."""

    def __init__(self, operation: str, resource: str, name: str) -> None:
        super().__init__(
            f"Kafka denied this client {operation} on {resource} {name!r}; allow its user "
            f"(KAFKA_SASL_USERNAME, or the client certificate's name) {operation} on {resource} "
            f"{name} (README: Kafka ACLs)"
        )
        self.operation, self.resource, self.name = operation, resource, name


# Each bootstrap server is asked once, each within this time.
CONNECT_TIMEOUT_S = 10.0


async def kafka_refusal(settings: KafkaSettings) -> str | None:
    """The first bootstrap server's refusal, explained; None if every one accepts."""
    security = client_kwargs(settings)
    for host, port, _ in collect_hosts(settings.kafka_brokers, randomize=False):
        try:
            connection = await asyncio.wait_for(
                create_conn(host, port, request_timeout_ms=CONNECT_TIMEOUT_S * 1000, **security),
                CONNECT_TIMEOUT_S,
            )
        except Exception as error:  # what aiokafka's bootstrap logs and gives up on
            return await _explain(error, settings, host, port)
        connection.close()
    return None


async def _explain(error: BaseException, settings: KafkaSettings, host: str, port: int) -> str:
    where = f"Kafka at {host}:{port}"
    protocol = f"KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol}"
    uses_tls = settings.kafka_security_protocol in TLS_PROTOCOLS
    if isinstance(error, SaslAuthenticationFailed):
        return (
            f"{where} refused the login of KAFKA_SASL_USERNAME={settings.kafka_sasl_username} "
            f"({brief(error)}); check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD, and that the "
            f"user exists for KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism}"
        )
    if isinstance(error, UnsupportedSaslMechanismError):
        return (
            f"{where} does not enable KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism} "
            f"({brief(error)}); set KAFKA_SASL_MECHANISM to one the listener enables"
        )
    if isinstance(error, ssl.SSLCertVerificationError):
        reason = error.verify_message or error.reason or str(error)
        return (
            f"{where}: the broker's TLS certificate was not accepted ({reason}); check "
            "KAFKA_SSL_CA_FILE (the CA that signed the brokers' certificates) and that "
            "KAFKA_BOOTSTRAP_SERVERS names a host the certificate carries"
        )
    if uses_tls and isinstance(error, ssl.SSLError | ConnectionResetError | TimeoutError):
        return (
            f"{where}: the TLS handshake failed ({brief(error)}): the listener does not seem to "
            f"speak TLS; check {protocol} (PLAINTEXT or SASL_PLAINTEXT for a listener without "
            "TLS) and KAFKA_BOOTSTRAP_SERVERS"
        )
    if isinstance(error, KafkaConnectionError) and "closed" in str(error):
        if not uses_tls and await _speaks_tls(host, port):
            return (
                f"{where} is a TLS listener, but {protocol} connects without TLS (the broker "
                "closed the connection); set KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL, as the "
                "listener expects, with KAFKA_SSL_CA_FILE"
            )
        return (
            f"{where} closed the connection ({brief(error)}); check {protocol} against the "
            "listener's protocol (SASL_* where it requires a login, SSL where it requires a "
            "client certificate: KAFKA_SSL_CERT_FILE, KAFKA_SSL_KEY_FILE)"
        )
    if isinstance(error, TimeoutError):
        return (
            f"{where} did not answer within {CONNECT_TIMEOUT_S:g}s; check "
            f"KAFKA_BOOTSTRAP_SERVERS and {protocol}"
        )
    if isinstance(error, OSError):
        return (
            f"cannot connect to {where} ({brief(error)}); check KAFKA_BOOTSTRAP_SERVERS and "
            f"that the broker runs{local_stack_hint()}"
        )
    return (
        f"{where} refused the connection ({brief(error)}); check {protocol}, "
        "KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SSL_*"
    )


async def _speaks_tls(host: str, port: int) -> bool:
    """Whether a TLS handshake with host:port completes (nothing is verified: this only
    tells a TLS listener from a plain one)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context), CONNECT_TIMEOUT_S
        )
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    return True
