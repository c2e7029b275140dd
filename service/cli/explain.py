"""Turn the failures a person meets into one line naming the problem and the fix, and the
exit code that says which kind of failure it was (service/cli/exit_codes.py)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)

from service.cli.exit_codes import ExitCode
from service.cli.serving import StartFailed
from service.cli.transport_errors import explain_transport
from service.config.local_stack import local_stack_hint
from service.config.settings import ConfigurationError, KafkaSettings
from service.postgres.schema_gate import SchemaNotReady

log = logging.getLogger("service.errors")
# PostgreSQL's SQLSTATEs of a server that takes no writes now (asyncpg's error class names):
# a read-only transaction (default_transaction_read_only, a hot standby), a server starting
# up or recovering.
READ_ONLY_ERRORS = ("ReadOnlySQLTransactionError", "CannotConnectNowError")


@dataclass(frozen=True, slots=True)
class Failure:
    """One line for a person, and the exit code for a script."""

    message: str
    code: ExitCode


def explain(error: BaseException, settings: KafkaSettings | None = None) -> str | None:
    """One line for `error`, or None if it is not one a person can fix by a setting."""
    failure = explain_failure(error, settings)
    return None if failure is None else failure.message


def explain_failure(error: BaseException, settings: KafkaSettings | None = None) -> Failure | None:
    """The line and exit code for `error`, or None if it is not one a person can fix by a
    setting.

    With `settings`, a Kafka client that could not bootstrap is explained by asking the broker
    again (service/kafka/refusal.py): aiokafka keeps the reason only in its log."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    if any(isinstance(item, ConfigurationError) for item in chain):
        configuration = next(item for item in chain if isinstance(item, ConfigurationError))
        return Failure(str(configuration), ExitCode.USAGE)
    # TLS/SASL/pg_hba first: further up the chain they look like "cannot connect".
    transport = explain_transport(chain)
    if transport is not None:
        return Failure(transport, ExitCode.UNAVAILABLE)
    schema = next((item for item in chain if isinstance(item, SchemaNotReady)), None)
    if schema is not None and any(isinstance(item, OSError) for item in chain):
        # The schema check could not reach PostgreSQL: its line names the database's
        # settings alone, where a bare connection error would name Kafka's too.
        return Failure(str(schema), ExitCode.UNAVAILABLE)
    for item in chain:
        if message := _unreachable(item, settings):
            return Failure(message, ExitCode.UNAVAILABLE)
    for item in chain:
        if isinstance(item, SchemaNotReady):
            return Failure(str(item), ExitCode.REFUSED)
        if message := _kafka_denied(item):
            return Failure(message, ExitCode.UNAVAILABLE)
        if message := _postgres_refused(item):
            return Failure(message, ExitCode.UNAVAILABLE)
    if isinstance(error, StartFailed):
        # nothing more specific: name the cause and where to read more
        return Failure(str(error), ExitCode.FAILED)
    return None


def _unreachable(item: BaseException, settings: KafkaSettings | None) -> str | None:
    if isinstance(item, KafkaConnectionError):
        refusal = _kafka_refusal(settings) if settings is not None else None
        if refusal is not None:
            return refusal
        return (
            f"cannot reach Kafka ({item}); check KAFKA_BOOTSTRAP_SERVERS and that the brokers "
            f"run{local_stack_hint()}; if the log above shows an authentication or certificate "
            "error, check KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, "
            "KAFKA_SASL_PASSWORD and KAFKA_SSL_*"
        )
    if isinstance(item, OSError) and "connect" in str(item).lower():
        return (
            f"cannot connect ({item}); check POSTGRES_HOST/POSTGRES_PORT and "
            f"KAFKA_BOOTSTRAP_SERVERS, and that the services run{local_stack_hint()}"
        )
    return None


def _postgres_refused(item: BaseException) -> str | None:
    name = type(item).__name__
    if name == "InvalidPasswordError":
        return f"PostgreSQL refused the login ({item}); check POSTGRES_USER and POSTGRES_PASSWORD"
    if name == "InvalidCatalogNameError":
        return f"PostgreSQL has no such database ({item}); check POSTGRES_DB or create it"
    if name == "InsufficientPrivilegeError":
        return (
            f"PostgreSQL refused the role a privilege ({item}); `migrate` must log in as "
            "the owner of the database's tables (POSTGRES_MIGRATION_USER), the consumer as "
            "the role migrate grants read/write (POSTGRES_USER); see MIGRATIONS.md, roles"
        )
    if name in READ_ONLY_ERRORS:
        return (
            f"PostgreSQL at POSTGRES_HOST takes no writes now ({str(item).strip()}): it is "
            "read-only (default_transaction_read_only, a hot standby) or recovering; point "
            "POSTGRES_HOST at the primary, or wait until it has recovered"
        )
    return None


def _kafka_refusal(settings: KafkaSettings) -> str | None:
    from service.kafka.refusal import kafka_refusal

    try:
        return asyncio.run(kafka_refusal(settings))
    except Exception as error:  # the diagnosis must not hide the error it explains
        log.debug("could not ask Kafka why it refused", exc_info=error)
        return None


# Kafka's authorizer refused a request the command's own code does not name (the consumer's
# group, a fetch, a produce): one line naming the ACL (README: Kafka ACLs).
_WHO = "its user (KAFKA_SASL_USERNAME, or the client certificate's name)"


def _kafka_denied(item: BaseException) -> str | None:
    if isinstance(item, GroupAuthorizationFailedError):
        return (
            f"Kafka denied this client its consumer group ({item}); allow {_WHO} Read on "
            "group KAFKA_GROUP_ID (README: Kafka ACLs)"
        )
    if isinstance(item, TopicAuthorizationFailedError):
        return (
            f"Kafka denied this client a topic ({item}); allow {_WHO} Read on the topics it "
            "consumes and Write on those it publishes to (README: Kafka ACLs)"
        )
    if isinstance(item, ClusterAuthorizationFailedError):
        return (
            f"Kafka refused this client a producer id ({item}); allow {_WHO} Write on the "
            "topic it publishes to (README: Kafka ACLs)"
        )
    return None
