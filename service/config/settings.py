"""Configuration: every setting comes from the environment (or a `.env` file).

The settings come in groups, one per thing they configure (`LogSettings`, `PostgresSettings`,
`KafkaSettings`, `ConsumerSettings`). A command reads only the groups it uses (the classes
composed of them at the end of this module), so a Kafka-only command asks for no database
password and a database-only one for no broker. `load_settings` is the one place the
environment is read; docs/reference/settings.md lists every setting (generated from these
classes: `python -m service.cli.reference`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote

from pydantic import (
    BeforeValidator,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.config.transport_checks import kafka_problems, postgres_problems

ENV_FILE = ".env"


# Transport security: an empty variable (as in .env.example) means unset.
def _unset_if_empty(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


OptionalFile = Annotated[FilePath | None, BeforeValidator(_unset_if_empty)]
OptionalSecret = Annotated[SecretStr | None, BeforeValidator(_unset_if_empty)]

BROKER_LIST_EXAMPLE = "kafka-1:9092,kafka-2:9092,kafka-3:9092"


def parse_brokers(value: str) -> list[str]:
    """KAFKA_BOOTSTRAP_SERVERS as the list of host:port every Kafka client is given.

    Comma-separated, spaces around entries ignored. An empty entry, a missing host or a port
    that is not 1-65535 is refused: the clients would otherwise try a host nobody meant.
    """
    entries = [entry.strip() for entry in value.split(",")]
    for number, entry in enumerate(entries, 1):
        where = f"entry {number} of {len(entries)}"
        if not entry:
            problem = f"{where} is empty"
        else:
            host, colon, port = entry.rpartition(":")
            if not colon or not host.strip("[]"):
                problem = f"{where} ({entry!r}) is not host:port"
            elif not port.isdigit() or not 1 <= int(port) <= 65535:
                problem = f"{where} ({entry!r}) has no port between 1 and 65535"
            else:
                continue
        raise PydanticCustomError(
            "broker_list",
            "{problem}; give a comma-separated list of host:port, e.g. {example}",
            {"problem": problem, "example": BROKER_LIST_EXAMPLE},
        )
    return entries


class SettingsGroup(BaseSettings):
    """What every group shares: where values come from, and the transport-security checks of
    the groups a command reads (a contradiction is refused at start, not met at connect)."""

    model_config = SettingsConfigDict(
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    @model_validator(mode="after")
    def _check_transport_security(self) -> SettingsGroup:
        problems = []
        if isinstance(self, KafkaSettings):
            problems.extend(kafka_problems(self))
        if isinstance(self, PostgresSettings):
            problems.extend(postgres_problems(self))
        if problems:
            raise PydanticCustomError(
                "transport_security", "{problems}", {"problems": "\n".join(problems)}
            )
        return self


class LogSettings(SettingsGroup):
    """How every command logs."""

    log_level: str = Field(
        default="INFO",
        pattern=r"^(?i:debug|info|warning|error|critical)$",
        description="DEBUG, INFO, WARNING, ERROR or CRITICAL.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text (for people) or json (one JSON object per line, with topic, partition "
        "and offset on lines about a record; for log pipelines). Start-up failures follow it.",
    )


class PostgresSettings(SettingsGroup):
    """The database: where it is, who logs in, and over which transport."""

    postgres_user: str = Field(
        min_length=1,
        description="Role the consumer (and every command but `migrate`) logs in as.",
    )
    postgres_password: SecretStr = Field(description="Password of POSTGRES_USER.")
    postgres_host: str = Field(default="127.0.0.1", description="Host of the PostgreSQL server.")
    postgres_port: int = Field(
        default=5432, ge=1, le=65535, description="Port of the PostgreSQL server."
    )
    postgres_db: str = Field(min_length=1, description="Database holding the products table.")
    postgres_pool_size: int = Field(
        default=5, ge=1, description="Connections the consumer keeps open (a batch uses one)."
    )
    postgres_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest wait for PostgreSQL to accept a connection or answer one statement "
        "(s); a connection silent longer (a network partition, a half-open connection) is "
        "dropped and the batch retried on a new one, and a batch whose statements run out of "
        "it is retried in parts of half as many records (down to one) until they fit. The "
        "server ends a session left idle in a "
        "transaction (its client gone or frozen), releasing its locks: the consumer's after "
        "KAFKA_SESSION_TIMEOUT_MS, when the group has given its partitions away; the other "
        "commands' after twice POSTGRES_TIMEOUT_S.",
    )
    # Least privilege: `migrate` logs in as the schema owner, the consumer as
    # POSTGRES_USER, which migrate then grants exactly what its statements need (no DDL). Unset (or
    # empty): migrations use POSTGRES_USER/POSTGRES_PASSWORD, as before.
    postgres_migration_user: str | None = Field(
        default=None,
        description="Role `migrate` (and `alembic`) logs in as: the owner of the tables; it "
        "grants POSTGRES_USER exactly the privileges the consumer's statements need. Empty: "
        "migrate as POSTGRES_USER, with no grants.",
    )
    postgres_migration_password: SecretStr | None = Field(
        default=None,
        validate_default=True,
        description="Password of POSTGRES_MIGRATION_USER (needed when that role is set).",
    )
    postgres_sslmode: Annotated[
        Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"],
        BeforeValidator(_lower),
    ] = Field(
        default="prefer",
        description="TLS to PostgreSQL, as libpq's sslmode: disable, allow, prefer, require, "
        "verify-ca or verify-full (use verify-full in production).",
    )
    postgres_sslrootcert: OptionalFile = Field(
        default=None,
        description="For verify-ca and verify-full: PEM file of the CA that signed the "
        "server's certificate (empty: the system's CAs).",
    )
    postgres_sslcert: OptionalFile = Field(
        default=None,
        description="Client certificate (PEM) for `cert` logins; its common name is "
        "POSTGRES_USER. Needs POSTGRES_SSLMODE require, verify-ca or verify-full.",
    )
    postgres_sslkey: OptionalFile = Field(
        default=None, description="Key (PEM) of POSTGRES_SSLCERT."
    )
    postgres_sslpassword: OptionalSecret = Field(
        default=None, description="Password of an encrypted POSTGRES_SSLKEY."
    )

    @field_validator("postgres_migration_password")
    @classmethod
    def _migration_password_given(
        cls, password: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        user = info.data.get("postgres_migration_user")
        if user and user != info.data.get("postgres_user") and not (password and len(password)):
            raise ValueError(f"it must be set when POSTGRES_MIGRATION_USER={user!r} is")
        return password

    @property
    def migration_user(self) -> str:
        """The role migrations run as: POSTGRES_MIGRATION_USER, else POSTGRES_USER."""
        return self.postgres_migration_user or self.postgres_user

    @property
    def migration_password_value(self) -> str:
        password = self.postgres_migration_password
        return password.get_secret_value() if password is not None else ""

    @property
    def migration_database_url(self) -> str:
        """database_url (with whatever it carries) logged in as the migration role."""
        from sqlalchemy.engine import make_url

        if self.migration_user == self.postgres_user:
            return self.database_url
        url = make_url(self.database_url).set(
            username=self.migration_user, password=self.migration_password_value
        )
        return url.render_as_string(hide_password=False)

    @property
    def database_url(self) -> str:
        user = quote(self.postgres_user, safe="")
        password = quote(self.postgres_password.get_secret_value(), safe="")
        return (
            f"postgresql+asyncpg://{user}:{password}@{self.postgres_host}:{self.postgres_port}/"
            f"{quote(self.postgres_db, safe='')}"
        )


class KafkaSettings(SettingsGroup):
    """The brokers, the topics and the group, and the transport every Kafka client uses."""

    # Read it through `kafka_brokers`: FastStream takes a string as one host.
    kafka_bootstrap_servers: str = Field(
        min_length=1,
        description="The brokers: host:port, or several separated by commas, e.g. "
        f"{BROKER_LIST_EXAMPLE}. Every Kafka client is given the whole list.",
    )
    kafka_topic: str = Field(
        default="inventory.product-events",
        min_length=1,
        description="Topic upstream systems publish product events to.",
    )
    kafka_dlq_topic: str = Field(
        default="inventory.product-events.dlq",
        min_length=1,
        description="Topic unusable records are copied to, bytes unchanged, with error.* headers.",
    )
    kafka_group_id: str = Field(
        default="inventory-sink",
        min_length=1,
        description="Consumer group; every replica uses the same one. Stored positions are "
        "kept per group.",
    )
    kafka_topic_partitions: int = Field(
        default=6, ge=1, description="Partitions of a topic the service creates."
    )
    kafka_replication_factor: int = Field(
        default=1, ge=1, description="Replication factor of a topic the service creates."
    )
    kafka_security_protocol: Annotated[
        Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"], BeforeValidator(_upper)
    ] = Field(
        default="PLAINTEXT",
        description="PLAINTEXT, SSL (TLS), SASL_SSL (TLS plus user and password) or "
        "SASL_PLAINTEXT (user and password in clear text: trusted networks only).",
    )
    kafka_sasl_mechanism: Annotated[
        Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None,
        BeforeValidator(_unset_if_empty),
        BeforeValidator(_upper),
    ] = Field(
        default=None,
        description="For SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, as the listener enables.",
    )
    kafka_sasl_username: Annotated[str | None, BeforeValidator(_unset_if_empty)] = Field(
        default=None, description="For SASL_*: the Kafka user the service logs in as."
    )
    kafka_sasl_password: OptionalSecret = Field(
        default=None, description="For SASL_*: that user's password."
    )
    kafka_ssl_ca_file: OptionalFile = Field(
        default=None,
        description="For SSL and SASL_SSL: PEM file of the CA that signed the brokers' "
        "certificates (empty: the system's CAs).",
    )
    kafka_ssl_cert_file: OptionalFile = Field(
        default=None,
        description="Client certificate (PEM), for listeners with ssl.client.auth=required.",
    )
    kafka_ssl_key_file: OptionalFile = Field(
        default=None, description="Key (PEM) of KAFKA_SSL_CERT_FILE (may be in that file)."
    )
    kafka_ssl_key_password: OptionalSecret = Field(
        default=None, description="Password of an encrypted KAFKA_SSL_KEY_FILE."
    )
    kafka_ssl_check_hostname: bool = Field(
        default=True,
        description="false skips only the check that the brokers' certificate names the host "
        "in KAFKA_BOOTSTRAP_SERVERS; the certificate is always verified.",
    )

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _broker_list(cls, value: str) -> str:
        return ",".join(parse_brokers(value))

    @property
    def kafka_brokers(self) -> list[str]:
        """KAFKA_BOOTSTRAP_SERVERS as a list of host:port: what every Kafka client is given."""
        return parse_brokers(self.kafka_bootstrap_servers)


class ConsumerSettings(SettingsGroup):
    """The consumer's own: its Kafka client, batches, retries, HTTP, probes and positions."""

    kafka_group_instance_id: str | None = Field(
        default=None,
        description="Static group membership (optional): a stable, unique name per replica "
        "(e.g. a StatefulSet's pod name), so a restart gets its partitions back without a "
        "rebalance.",
    )
    kafka_session_timeout_ms: int = Field(
        default=10_000,
        ge=1000,
        description="How long the group waits for a silent consumer before giving its "
        "partitions to others (ms).",
    )
    kafka_max_partition_fetch_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Bytes fetched ahead per partition."
    )
    kafka_metadata_max_age_ms: int = Field(
        default=30_000,
        ge=1000,
        description="How often the Kafka client refreshes topic metadata (ms): how soon a "
        "topic created again, or new partitions, are noticed.",
    )
    batch_max_records: int = Field(
        default=5000,
        ge=1,
        description="Most records one database transaction handles (fewer for a while after "
        "a transaction ran out of POSTGRES_TIMEOUT_S).",
    )
    batch_timeout_ms: int = Field(
        default=50, ge=1, description="How long a fetch waits for records (ms)."
    )
    retry_initial_backoff_s: float = Field(
        default=0.2,
        gt=0,
        description="First backoff after a transient failure (database or broker down), "
        "doubled each time (s).",
    )
    retry_max_backoff_s: float = Field(
        default=10.0, gt=0, description="Longest backoff after transient failures (s)."
    )
    processed_event_retention_hours: float = Field(
        default=168.0,
        gt=0,
        description="How long processed stock.adjusted event ids are kept to recognise "
        "upstream duplicates (hours).",
    )
    processed_event_cleanup_interval_s: float = Field(
        default=600.0, gt=0, description="How often expired event ids are deleted (s)."
    )
    http_host: str = Field(
        default="0.0.0.0", description="Address /health and /metrics are served on."
    )
    http_port: int = Field(
        default=8080, ge=0, le=65535, description="Port of /health and /metrics (0: a free one)."
    )
    max_record_bytes: int = Field(
        default=1024 * 1024,
        ge=1,
        description="Records whose key + value + headers exceed this many bytes are "
        "dead-lettered as record_too_large without being parsed.",
    )
    stall_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="/health/ready fails when a partition has had lag this long without its "
        "stored position advancing (s).",
    )
    progress_check_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="How often stored positions and the log's offsets are read: the lag "
        "metric and stall detection (s).",
    )
    schema_check_interval_s: float = Field(
        default=30.0, gt=0, description="How often /health/ready re-reads the schema (s)."
    )
    start_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="/health/live fails when the consumer has not started this long after the "
        "process did (s).",
    )
    # Stored positions vs Kafka's log (see service/core/position_verdict.py)
    on_position_ahead_of_log: Literal["stop", "restart-from-log-start"] = Field(
        default="stop",
        description="A stored position ahead of the log's end or in another topic id: stop "
        "the partition for an operator (`positions reset`), or restart-from-log-start.",
    )
    on_records_lost_to_retention: Literal["continue", "stop"] = Field(
        default="continue",
        description="A stored position below the log start (retention deleted records before "
        "they were applied): continue from the log start, or stop the partition.",
    )
    position_check_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="How often topic ids are compared with the stored ones and stopped "
        "partitions checked again, so a `positions reset` is picked up (s).",
    )


# What each kind of command reads (service/cli/main.py declares which one a command uses).
class DatabaseSettings(LogSettings, PostgresSettings):
    """Commands that use only PostgreSQL: migrate, show (and the alembic CLI)."""


class BrokerSettings(LogSettings, KafkaSettings):
    """Commands that use only Kafka: publish, create-topics, dead-letters."""


class StoreAndBrokerSettings(LogSettings, PostgresSettings, KafkaSettings):
    """Commands that compare the log with the stored positions: lag."""


class Settings(LogSettings, PostgresSettings, KafkaSettings, ConsumerSettings):
    """Everything: the consumer (`run`), and `positions`."""


class ConfigurationError(Exception):
    """A setting is missing or malformed; the message names the variable and the fix."""


def describe_validation_error(error: ValidationError, kind: type[SettingsGroup]) -> str:
    lines: list[str] = []
    for item in error.errors():
        if not item["loc"]:
            # A check across settings (transport security): its input holds every value,
            # secrets included, so only the message is shown.
            lines.extend(f"configuration error: {line}" for line in item["msg"].splitlines())
            continue
        name = "_".join(str(part) for part in item["loc"])
        variable = name.upper() or "<settings>"
        if item["type"] == "missing":
            field = kind.model_fields.get(name)
            what = f" ({field.description.rstrip('.')})" if field and field.description else ""
            lines.append(
                f"configuration error: {variable} is not set; set it in the environment "
                f"or in {ENV_FILE}{what}"
            )
        else:
            given = item.get("input")
            lines.append(
                f"configuration error: {variable}={given!r} is invalid: {item['msg']}; "
                f"fix it in the environment or in {ENV_FILE}"
            )
    return "\n".join(lines)


Group = TypeVar("Group", bound=SettingsGroup)


def load_settings(kind: type[Group] = Settings) -> Group:  # type: ignore[assignment]
    """Read the settings of `kind` from the environment (and .env), turning pydantic's report
    into one line per bad variable."""
    try:
        return kind()  # values come from the environment
    except ValidationError as error:
        raise ConfigurationError(describe_validation_error(error, kind)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings(Settings)
