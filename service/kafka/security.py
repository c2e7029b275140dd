"""Kafka transport security from the settings, for every Kafka client of the service.

`client_kwargs(settings)` gives the keyword arguments of aiokafka's producer, consumer and
admin client, which service/kafka/clients.py applies to every client it makes (make clients
there, never by hand, so that none connects in plain text by accident);
`broker_security(settings)` the same for FastStream's KafkaBroker.
"""

from __future__ import annotations

import ssl
from typing import Any

from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from service.config.settings import KafkaSettings
from service.config.tls import TlsFiles, client_context
from service.config.transport_checks import SASL_PROTOCOLS, TLS_PROTOCOLS

_FASTSTREAM_SASL = {
    "PLAIN": SASLPlaintext,
    "SCRAM-SHA-256": SASLScram256,
    "SCRAM-SHA-512": SASLScram512,
}


def ssl_context(settings: KafkaSettings) -> ssl.SSLContext | None:
    """The client TLS context for SSL and SASL_SSL (None otherwise).

    The broker's certificate is always verified, against KAFKA_SSL_CA_FILE or the system's
    CAs; KAFKA_SSL_CHECK_HOSTNAME=false only skips the host name check.
    """
    if settings.kafka_security_protocol not in TLS_PROTOCOLS:
        return None
    files = TlsFiles(
        ca_file=settings.kafka_ssl_ca_file,
        cert_file=settings.kafka_ssl_cert_file,
        key_file=settings.kafka_ssl_key_file,
        key_password=settings.kafka_ssl_key_password,
        ca_variable="KAFKA_SSL_CA_FILE",
        cert_variable="KAFKA_SSL_CERT_FILE",
        key_variable="KAFKA_SSL_KEY_FILE",
        password_variable="KAFKA_SSL_KEY_PASSWORD",
    )
    return client_context(files, verify=True, check_hostname=settings.kafka_ssl_check_hostname)


def _sasl_credentials(settings: KafkaSettings) -> tuple[str, str, str] | None:
    """(mechanism, username, password) for SASL_PLAINTEXT and SASL_SSL, else None."""
    if settings.kafka_security_protocol not in SASL_PROTOCOLS:
        return None
    # transport_checks guarantees all three are set for a SASL protocol.
    assert settings.kafka_sasl_mechanism is not None
    assert settings.kafka_sasl_username is not None
    assert settings.kafka_sasl_password is not None
    return (
        settings.kafka_sasl_mechanism,
        settings.kafka_sasl_username,
        settings.kafka_sasl_password.get_secret_value(),
    )


def client_kwargs(settings: KafkaSettings) -> dict[str, Any]:
    """Security keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and
    AIOKafkaAdminClient (bootstrap_servers is not included)."""
    kwargs: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    credentials = _sasl_credentials(settings)
    if credentials is not None:
        mechanism, username, password = credentials
        kwargs.update(
            sasl_mechanism=mechanism, sasl_plain_username=username, sasl_plain_password=password
        )
    return kwargs


def broker_security(settings: KafkaSettings) -> BaseSecurity | None:
    """FastStream's security object for KafkaBroker(security=...); None for PLAINTEXT."""
    context = ssl_context(settings)
    credentials = _sasl_credentials(settings)
    if credentials is None:
        return None if context is None else BaseSecurity(ssl_context=context, use_ssl=True)
    mechanism, username, password = credentials
    return _FASTSTREAM_SASL[mechanism](
        username, password, ssl_context=context, use_ssl=context is not None
    )
