"""The product event contract, version 1: what upstream systems publish to `KAFKA_TOPIC`.

Each Kafka record carries one JSON (UTF-8) object; its key is the product id in decimal.
Unknown extra fields are ignored (tolerant reader); missing or invalid required fields
are errors. `python -m service contract` prints the JSON Schema.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StrictInt,
    TypeAdapter,
    ValidationError,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

CONTRACT_VERSION = 1
MAX_PRODUCT_ID = 2**63 - 1
MAX_QUANTITY = 2**31 - 1
MAX_VERSION = 2**63 - 1
MAX_PRICE = Decimal("9999999999.99")  # NUMERIC(12, 2)

# PostgreSQL text cannot hold NUL (U+0000): such a string is rejected here, not by the database.
NO_NUL = r"^[^\x00]*$"

EventType = Literal["product.upserted", "product.deleted", "stock.adjusted"]


# RFC 3339 date-time with an offset. pydantic's own datetime parsing is more lenient (Unix
# timestamps, offsets without a colon), so JSON text must first match this pattern.
RFC3339 = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
RFC3339_MESSAGE = (
    "must be an RFC 3339 timestamp with a timezone offset, e.g. 2026-01-01T09:00:00+00:00"
)


class _Rfc3339Text:
    """Only RFC 3339 text with an offset in JSON; in Python (tests, tools) an aware datetime.

    Built from pydantic-core schemas (a pattern, then datetime parsing), not a Python
    validator: validation stays in Rust, which halves its cost for a whole event.
    """

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        aware = handler(AwareDatetime)
        return core_schema.json_or_python_schema(
            json_schema=core_schema.chain_schema([core_schema.str_schema(pattern=RFC3339), aware]),
            python_schema=aware,
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "format": "date-time"}


Rfc3339 = Annotated[datetime, _Rfc3339Text]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class UpsertData(_Model):
    name: Annotated[str, Field(min_length=1, max_length=255, pattern=NO_NUL)]
    description: Annotated[str | None, Field(max_length=10_000, pattern=NO_NUL)] = None
    price: Annotated[Decimal, Field(ge=0, le=MAX_PRICE, max_digits=12, decimal_places=2)]
    quantity: Annotated[StrictInt | None, Field(ge=0, le=MAX_QUANTITY)] = None


class DeleteData(_Model):
    pass


class StockData(_Model):
    delta: Annotated[StrictInt, Field(ge=-MAX_QUANTITY, le=MAX_QUANTITY)]
    reason: Annotated[str | None, Field(max_length=1_000, pattern=NO_NUL)] = None

    def model_post_init(self, context: Any, /) -> None:
        if self.delta == 0:
            raise ValueError("delta must not be zero")


class _Envelope(_Model):
    event_id: UUID
    occurred_at: Rfc3339
    product_id: Annotated[StrictInt, Field(gt=0, le=MAX_PRODUCT_ID)]


class ProductUpserted(_Envelope):
    event_type: Literal["product.upserted"]
    version: Annotated[StrictInt, Field(ge=1, le=MAX_VERSION)]
    data: UpsertData


class ProductDeleted(_Envelope):
    event_type: Literal["product.deleted"]
    version: Annotated[StrictInt, Field(ge=1, le=MAX_VERSION)]
    data: DeleteData = DeleteData()


class StockAdjusted(_Envelope):
    event_type: Literal["stock.adjusted"]
    version: Annotated[StrictInt | None, Field(ge=1, le=MAX_VERSION)] = None
    data: StockData


ProductEvent = Annotated[
    ProductUpserted | ProductDeleted | StockAdjusted,
    Field(discriminator="event_type"),
]

EVENT_ADAPTER: TypeAdapter[ProductEvent] = TypeAdapter(ProductEvent)
# The adapter's core validator, called directly on the hot path (skips a Python wrapper).
_VALIDATE_JSON: Callable[[bytes], ProductEvent] = EVENT_ADAPTER.validator.validate_json


class InvalidJson(ValueError):
    """The record's value is not a UTF-8 JSON object."""


class InvalidEvent(ValueError):
    """The record is JSON but breaks the contract."""


def parse_event(value: bytes | None) -> ProductUpserted | ProductDeleted | StockAdjusted:
    """Validate one record value against the contract, or raise InvalidJson / InvalidEvent."""
    if value is None:
        raise InvalidJson("record has no value (tombstone); expected a JSON event object")
    try:
        return _VALIDATE_JSON(value)
    except ValidationError as error:
        if any(item["type"] == "json_invalid" for item in error.errors()):
            raise InvalidJson(_describe(error)) from None
        raise InvalidEvent(_describe(error)) from None
    except UnicodeDecodeError as error:  # pragma: no cover - pydantic reports json_invalid
        raise InvalidJson(f"value is not UTF-8: {error}") from None


def _describe(error: ValidationError, limit: int = 5) -> str:
    parts = []
    for item in error.errors(include_url=False)[:limit]:
        where = ".".join(str(p) for p in item["loc"]) or "value"
        message = item["msg"]
        pattern = item.get("ctx", {}).get("pattern")
        if item["type"] == "string_pattern_mismatch" and pattern == NO_NUL:
            message = "must not contain NUL (\\u0000) characters; PostgreSQL text cannot store them"
        elif item["type"] == "string_pattern_mismatch" and pattern == RFC3339:
            message = RFC3339_MESSAGE
        parts.append(f"{where}: {message}")
    extra = error.error_count() - limit
    if extra > 0:
        parts.append(f"(+{extra} more)")
    return "; ".join(parts)


def json_schema() -> dict[str, Any]:
    schema = EVENT_ADAPTER.json_schema()
    schema["title"] = f"inventory-sink product event v{CONTRACT_VERSION}"
    return schema


def event_json(
    *,
    event_id: UUID,
    event_type: EventType,
    product_id: int,
    occurred_at: datetime,
    data: dict[str, Any],
    version: int | None = None,
) -> dict[str, Any]:
    """Build a contract-shaped dict (used by the sample publisher, tests and benchmarks)."""
    event: dict[str, Any] = {
        "event_id": str(event_id),
        "event_type": event_type,
        "occurred_at": occurred_at.isoformat(),
        "product_id": product_id,
        "data": data,
    }
    if version is not None:
        event["version"] = version
    return event
