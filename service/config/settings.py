"""Configuration: every setting comes from the environment (or a `.env` file).

See `.env.example` for the full list with explanations.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal
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

from service.config.transport_checks import transport_problems


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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    # PostgreSQL
    postgres_user: str = Field(min_length=1)
    postgres_password: SecretStr
    postgres_host: str = "127.0.0.1"
    postgres_port: int = Field(default=5432, ge=1, le=65535)
    postgres_db: str = Field(min_length=1)
    postgres_pool_size: int = Field(default=5, ge=1)

    # Kafka
    # Read it through `kafka_brokers`: FastStream takes a string as one host.
    kafka_bootstrap_servers: str = Field(min_length=1)
    kafka_topic: str = Field(default="inventory.product-events", min_length=1)
    kafka_dlq_topic: str = Field(default="inventory.product-events.dlq", min_length=1)
    kafka_group_id: str = Field(default="inventory-sink", min_length=1)
    kafka_group_instance_id: str | None = None
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000)
    kafka_topic_partitions: int = Field(default=6, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)

    # Consumer tuning
    batch_max_records: int = Field(default=5000, ge=1)
    batch_timeout_ms: int = Field(default=50, ge=1)
    kafka_max_partition_fetch_bytes: int = Field(default=1024 * 1024, ge=1024)
    retry_initial_backoff_s: float = Field(default=0.2, gt=0)
    retry_max_backoff_s: float = Field(default=10.0, gt=0)
    processed_event_retention_hours: float = Field(default=168.0, gt=0)
    processed_event_cleanup_interval_s: float = Field(default=600.0, gt=0)

    # Operations
    http_host: str = "0.0.0.0"
    http_port: int = Field(default=8080, ge=0, le=65535)
    log_level: str = Field(default="INFO", pattern=r"^(?i:debug|info|warning|error|critical)$")

    # Logs and limits
    log_format: Literal["text", "json"] = "text"
    max_record_bytes: int = Field(default=1024 * 1024, ge=1)
    # Health probes (a stuck consumer must not look healthy)
    stall_timeout_s: float = Field(default=120.0, gt=0)
    progress_check_interval_s: float = Field(default=5.0, gt=0)
    schema_check_interval_s: float = Field(default=30.0, gt=0)
    start_timeout_s: float = Field(default=300.0, gt=0)
    # Stored positions vs Kafka's log (see service/core/position_verdict.py)
    on_position_ahead_of_log: Literal["stop", "restart-from-log-start"] = "stop"
    on_records_lost_to_retention: Literal["continue", "stop"] = "continue"
    position_check_interval_s: float = Field(default=30.0, gt=0)
    kafka_metadata_max_age_ms: int = Field(default=30_000, ge=1000)
    # Least privilege: `migrate` logs in as the schema owner, the consumer as
    # POSTGRES_USER, which migrate then grants exactly what its statements need (no DDL). Unset (or
    # empty): migrations use POSTGRES_USER/POSTGRES_PASSWORD, as before.
    postgres_migration_user: str | None = None
    postgres_migration_password: SecretStr | None = Field(default=None, validate_default=True)

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _broker_list(cls, value: str) -> str:
        return ",".join(parse_brokers(value))

    @property
    def kafka_brokers(self) -> list[str]:
        """KAFKA_BOOTSTRAP_SERVERS as a list of host:port: what every Kafka client is given."""
        return parse_brokers(self.kafka_bootstrap_servers)

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

    # Transport security: TLS and SASL for Kafka, TLS for PostgreSQL.
    # Combinations are checked by service.transport_checks; see README "Security".
    kafka_security_protocol: Annotated[
        Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"], BeforeValidator(_upper)
    ] = "PLAINTEXT"
    kafka_sasl_mechanism: Annotated[
        Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None,
        BeforeValidator(_unset_if_empty),
        BeforeValidator(_upper),
    ] = None
    kafka_sasl_username: Annotated[str | None, BeforeValidator(_unset_if_empty)] = None
    kafka_sasl_password: OptionalSecret = None
    kafka_ssl_ca_file: OptionalFile = None
    kafka_ssl_cert_file: OptionalFile = None
    kafka_ssl_key_file: OptionalFile = None
    kafka_ssl_key_password: OptionalSecret = None
    kafka_ssl_check_hostname: bool = True
    postgres_sslmode: Annotated[
        Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"],
        BeforeValidator(_lower),
    ] = "prefer"
    postgres_sslrootcert: OptionalFile = None
    postgres_sslcert: OptionalFile = None
    postgres_sslkey: OptionalFile = None
    postgres_sslpassword: OptionalSecret = None

    @model_validator(mode="after")
    def _check_transport_security(self) -> Settings:
        problems = transport_problems(self)
        if problems:
            raise PydanticCustomError(
                "transport_security", "{problems}", {"problems": "\n".join(problems)}
            )
        return self

    @property
    def database_url(self) -> str:
        user = quote(self.postgres_user, safe="")
        password = quote(self.postgres_password.get_secret_value(), safe="")
        return (
            f"postgresql+asyncpg://{user}:{password}@{self.postgres_host}:{self.postgres_port}/"
            f"{quote(self.postgres_db, safe='')}"
        )


class ConfigurationError(Exception):
    """A setting is missing or malformed; the message names the variable and the fix."""


def describe_validation_error(error: ValidationError) -> str:
    lines: list[str] = []
    for item in error.errors():
        if not item["loc"]:
            # A check across settings (transport security): its input holds every value,
            # secrets included, so only the message is shown.
            lines.extend(f"configuration error: {line}" for line in item["msg"].splitlines())
            continue
        variable = "_".join(str(part) for part in item["loc"]).upper() or "<settings>"
        if item["type"] == "missing":
            lines.append(
                f"configuration error: {variable} is not set; set it in the environment "
                "or in .env (see .env.example)"
            )
        else:
            given = item.get("input")
            lines.append(
                f"configuration error: {variable}={given!r} is invalid: {item['msg']}; "
                "fix it in the environment or in .env (see .env.example)"
            )
    return "\n".join(lines)


def load_settings() -> Settings:
    """Read the settings, turning pydantic's report into one line per bad variable."""
    try:
        return Settings()  # values come from the environment
    except ValidationError as error:
        raise ConfigurationError(describe_validation_error(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
