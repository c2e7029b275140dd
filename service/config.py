"""Configuration: every setting comes from the environment (or a `.env` file).

See `.env.example` for the full list with explanations.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    # Logs and limits (issue 8, item 7)
    log_format: Literal["text", "json"] = "text"
    max_record_bytes: int = Field(default=1024 * 1024, ge=1)
    # Health probes (issue 8, item 5: a stuck consumer must not look healthy)
    stall_timeout_s: float = Field(default=120.0, gt=0)
    schema_check_interval_s: float = Field(default=30.0, gt=0)
    # Stored positions vs Kafka's log (issue 8, item 1; see service/positions.py)
    on_position_ahead_of_log: Literal["stop", "restart-from-log-start"] = "stop"
    on_records_lost_to_retention: Literal["continue", "stop"] = "continue"
    position_check_interval_s: float = Field(default=30.0, gt=0)
    kafka_metadata_max_age_ms: int = Field(default=30_000, ge=1000)
    # Least privilege (issue 8, item 4): `migrate` logs in as the schema owner, the consumer as
    # POSTGRES_USER, which migrate then grants read/write on its tables (no DDL). Unset (or
    # empty): migrations use POSTGRES_USER/POSTGRES_PASSWORD, as before.
    postgres_migration_user: str | None = None
    postgres_migration_password: SecretStr | None = Field(default=None, validate_default=True)

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


class ConfigurationError(Exception):
    """A setting is missing or malformed; the message names the variable and the fix."""


def describe_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
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
