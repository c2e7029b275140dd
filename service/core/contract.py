"""The product event contract, version 1: what upstream systems publish to `KAFKA_TOPIC`.

Each Kafka record carries one JSON (UTF-8) object; its key is the product id in decimal, and
its `contract-version` header, when present, says `1` (service/core/decoding.py reads both).
Unknown extra fields are ignored (tolerant reader); missing or invalid required fields are
errors. `python -m service contract` prints the JSON Schema, committed as
contract/product-event.v1.schema.json: it says exactly what this module accepts, except the
rules listed in `NOT_IN_JSON_SCHEMA` (tests/unit/core/test_schema_agreement.py holds both to it).
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
from pydantic_core import ErrorDetails, core_schema

CONTRACT_VERSION = 1
MAX_PRODUCT_ID = 2**63 - 1
MAX_QUANTITY = 2**31 - 1
MAX_VERSION = 2**63 - 1
MAX_PRICE = Decimal("9999999999.99")  # NUMERIC(12, 2)

# PostgreSQL text cannot hold NUL (U+0000): such a string is rejected here, not by the database.
NO_NUL = r"^[^\x00]*$"

# A price on the wire, in one of two forms. The recommended one: a JSON string of plain
# decimal digits, at most 10 before the point and 2 after it (NUMERIC(12, 2)), no sign,
# exponent, blanks or `_`, so that what the publisher wrote is exactly what is stored.
PRICE = r"^(0|[1-9][0-9]{0,9})(\.[0-9]{1,2})?$"
PRICE_MESSAGE = (
    'must be a decimal string of up to 10 digits and at most 2 decimals, e.g. "24.90" '
    "(no sign, exponent, spaces or _)"
)
# The other: a JSON number, as contract v1 always allowed and upstreams publish. The service
# reads it as a binary64 float (what most publishers' JSON libraries write), shortest
# round-trip digits: 24.9 is 24.9, 1e2 is 100, -0.0 is zero; it must then have at most 2
# decimals (24.999 and 0.30000000000000004 are refused) and lie within 0..MAX_PRICE.
NUMBER_PLACES_MESSAGE = (
    'must have at most 2 decimal places; send it as a decimal string, e.g. "24.90"'
)
PRICE_TYPE_MESSAGE = (
    'must be a decimal string, e.g. "24.90" (recommended), or a JSON number with at most '
    "2 decimal places"
)

# The one spelling of a UUID (RFC 9562, any case): what `format: uuid` means to JSON Schema
# validators. pydantic alone would also take 32 bare hex digits, braces and `urn:uuid:`.
UUID_TEXT = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
UUID_MESSAGE = (
    "must be a UUID written as 8-4-4-4-12 hex digits, e.g. 0b7e7f1e-3f0c-4d35-9a55-3c1f0f2b6a01"
)

EventType = Literal["product.upserted", "product.deleted", "stock.adjusted"]


# RFC 3339 date-time with an offset. pydantic's own datetime parsing is more lenient (Unix
# timestamps, offsets without a colon, a blank for the `T`), so JSON text must first match
# this pattern. The ranges make the pattern alone refuse what RFC 3339 refuses (hour 24,
# second 60, offset +24:00); a day past its month's end is refused by the date-time parsing
# (and by `format: date-time`).
RFC3339 = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:"
    r"[0-5][0-9](\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
RFC3339_MESSAGE = (
    "must be an RFC 3339 timestamp with a timezone offset, e.g. 2026-01-01T09:00:00+00:00"
)


def _text_then(pattern: str, schema: core_schema.CoreSchema) -> core_schema.CoreSchema:
    """In JSON, a string matching `pattern`, then parsed by `schema`; in Python, `schema`.

    Built from pydantic-core schemas, not a Python validator: validation stays in Rust,
    which halves its cost for a whole event.
    """
    return core_schema.json_or_python_schema(
        json_schema=core_schema.chain_schema([core_schema.str_schema(pattern=pattern), schema]),
        python_schema=schema,
    )


class _Rfc3339Text:
    """Only RFC 3339 text with an offset in JSON; in Python (tests, tools) an aware datetime."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return _text_then(RFC3339, handler(AwareDatetime))

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "format": "date-time", "pattern": RFC3339}


class _UuidText:
    """Only the hyphenated UUID text in JSON; in Python a UUID (or what pydantic takes)."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return _text_then(UUID_TEXT, core_schema.uuid_schema())

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "format": "uuid", "pattern": UUID_TEXT}


class _Price:
    """In JSON a price string (`PRICE`) or a JSON number; in Python a Decimal. Either way
    within NUMERIC(12, 2): 0 to MAX_PRICE, at most 2 decimals."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        numeric = core_schema.decimal_schema(
            ge=Decimal(0), le=MAX_PRICE, max_digits=12, decimal_places=2
        )
        # PRICE alone keeps a string within NUMERIC(12, 2), so its Decimal needs no checks
        # (they cost more than the parsing: a digits tuple per price).
        text = core_schema.chain_schema(
            [core_schema.str_schema(pattern=PRICE), core_schema.decimal_schema()]
        )
        # A strict float takes a JSON number (integer or not) and nothing else: a string that
        # misses PRICE must not reach the Decimal parser, which reads "1_0" and " 1e2".
        number = core_schema.chain_schema([core_schema.float_schema(strict=True), numeric])
        return core_schema.json_or_python_schema(
            json_schema=core_schema.union_schema(
                [(text, "string"), (number, "number")], mode="left_to_right"
            ),
            python_schema=numeric,
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # No `multipleOf: 0.01` for the number: validators compute it in binary floating
        # point and refuse 0.29. The decimals rule is named in NOT_IN_JSON_SCHEMA instead.
        return {
            "anyOf": [
                {"type": "string", "pattern": PRICE},
                {"type": "number", "minimum": 0, "maximum": float(MAX_PRICE)},
            ],
            "examples": ["24.90", "0", "1999.5", 24.9],
        }


Rfc3339 = Annotated[datetime, _Rfc3339Text]
UuidText = Annotated[UUID, _UuidText]
Price = Annotated[Decimal, _Price]

# What JSON Schema cannot say, so the committed schema states it in its description and the
# agreement test (tests/unit/core/test_schema_agreement.py) lists it by these names.
NOT_IN_JSON_SCHEMA = {
    "integer-literal": "An integer field must be written as a JSON integer: 1.0 or 1e2 are "
    "refused. JSON Schema's `integer` judges the value, not how it is written, so it takes them.",
    "key-matches-product-id": "A record's key, when present and not empty, must be the event's "
    "product_id in decimal: a rule across the key and the value.",
    "record-size": "Key, value and headers together must not exceed the consumer's "
    "MAX_RECORD_BYTES (default 1048576 bytes).",
    "json-text": "The value must be UTF-8 JSON (RFC 8259) without a lone UTF-16 surrogate "
    "escape and nested at most 200 containers deep; duplicate names: the last one counts.",
    "number-decimal-places": "A price sent as a JSON number must have at most 2 decimal "
    "places, read as a binary64 float in its shortest form: 24.9, 0.29 and 1e2 (100) are "
    "accepted, 24.999 and 0.30000000000000004 are refused. The schema checks only its range: "
    "validators compute `multipleOf: 0.01` in binary floating point and would refuse 0.29.",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


def _text(low: int, high: int, description: str) -> Any:
    return Field(min_length=low, max_length=high, pattern=NO_NUL, description=description)


class UpsertData(_Model):
    """The product's catalog fields (`product.upserted`)."""

    name: Annotated[str, _text(1, 255, "Display name: 1-255 characters, no NUL (\\u0000).")]
    description: Annotated[
        str | None, _text(0, 10_000, "Free text up to 10000 characters (no NUL), or null.")
    ] = None
    price: Annotated[
        Price,
        Field(
            description="Unit price, 0 to 9999999999.99. Send a decimal string (recommended): "
            "plain digits with at most 2 decimals, no sign, exponent, spaces or _. A JSON "
            "number is accepted when it has at most 2 decimals (see number-decimal-places)."
        ),
    ]
    quantity: Annotated[
        StrictInt | None,
        Field(
            ge=0,
            le=MAX_QUANTITY,
            description="Stock on hand, set absolutely (0 to 2^31-1). Omitted or null: a new "
            "product starts at 0, an existing one keeps its quantity.",
        ),
    ] = None


class DeleteData(_Model):
    """Nothing: a `product.deleted` event carries no data (any fields are ignored)."""


class StockData(_Model):
    """The change of stock (`stock.adjusted`)."""

    delta: Annotated[
        StrictInt,
        Field(
            ge=-MAX_QUANTITY,
            le=MAX_QUANTITY,
            description="Change of quantity: a non-zero integer, -(2^31-1) to 2^31-1.",
            json_schema_extra={"not": {"const": 0}},
        ),
    ]
    reason: Annotated[
        str | None, _text(0, 1_000, "Why the stock changed, up to 1000 characters, or null.")
    ] = None

    def model_post_init(self, context: Any, /) -> None:
        if self.delta == 0:
            raise ValueError("delta must not be zero")


_PRODUCT_ID = Field(
    gt=0,
    le=MAX_PRODUCT_ID,
    description="The product, 1 to 2^63-1, a JSON integer. The record's key must be this "
    "number in decimal.",
)
_VERSION = "The product's version, 1 to 2^63-1: applied only if greater than the stored one."


class _Envelope(_Model):
    event_id: Annotated[
        UuidText,
        Field(
            description="Unique id of this event (a UUID, 8-4-4-4-12 hex digits); a retry "
            "sends the same id."
        ),
    ]
    occurred_at: Annotated[
        Rfc3339,
        Field(
            description="When it happened upstream: RFC 3339 with a UTC offset (Z or +hh:mm), "
            "e.g. 2026-01-01T09:00:00+00:00."
        ),
    ]
    product_id: Annotated[StrictInt, _PRODUCT_ID]


class ProductUpserted(_Envelope):
    """Create the product or replace its catalog fields."""

    event_type: Annotated[Literal["product.upserted"], Field(description="Which event this is.")]
    version: Annotated[StrictInt, Field(ge=1, le=MAX_VERSION, description=_VERSION)]
    data: Annotated[UpsertData, Field(description="The catalog fields.")]


class ProductDeleted(_Envelope):
    """Soft-delete the product (it keeps its row; a later version undeletes it)."""

    event_type: Annotated[Literal["product.deleted"], Field(description="Which event this is.")]
    version: Annotated[StrictInt, Field(ge=1, le=MAX_VERSION, description=_VERSION)]
    data: Annotated[
        DeleteData, Field(description="An object; optional, its fields are ignored.")
    ] = DeleteData()


class StockAdjusted(_Envelope):
    """Change the product's stock by `delta`, exactly once per event_id."""

    event_type: Annotated[Literal["stock.adjusted"], Field(description="Which event this is.")]
    version: Annotated[
        StrictInt | None,
        Field(
            ge=1,
            le=MAX_VERSION,
            description="Optional and ignored (an adjustment keeps the product's version); "
            "if given, 1 to 2^63-1.",
        ),
    ] = None
    data: Annotated[StockData, Field(description="The change of stock.")]


ProductEvent = Annotated[
    ProductUpserted | ProductDeleted | StockAdjusted,
    Field(discriminator="event_type"),
]

# No string cache: an event's values (ids, timestamps, names) seldom repeat, so caching them
# costs a hash and a lookup each and saves nothing (about a tenth of validating an event).
EVENT_ADAPTER: TypeAdapter[ProductEvent] = TypeAdapter(
    ProductEvent, config=ConfigDict(cache_strings="none")
)
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
        items = error.errors(include_url=False)  # once: a dead letter's cost is mostly here
        if any(item["type"] == "json_invalid" for item in items):
            raise InvalidJson(_describe(items)) from None
        raise InvalidEvent(_describe(items)) from None
    except UnicodeDecodeError as error:  # pragma: no cover - pydantic reports json_invalid
        raise InvalidJson(f"value is not UTF-8: {error}") from None


_PATTERN_MESSAGES = {RFC3339: RFC3339_MESSAGE, PRICE: PRICE_MESSAGE, UUID_TEXT: UUID_MESSAGE}
_PRICE_FORMS = ("string", "number")  # the tags of the price's two forms in an error's loc


def _describe(items: list[ErrorDetails], limit: int = 5) -> str:
    parts = [f"{'.'.join(map(str, loc)) or 'value'}: {text}" for loc, text in _errors(items)]
    if len(parts) > limit:
        parts[limit:] = [f"(+{len(parts) - limit} more)"]
    return "; ".join(parts)


def _errors(items: list[ErrorDetails]) -> list[tuple[tuple[int | str, ...], str]]:
    found = []
    for item in items:
        loc = item["loc"]
        if len(loc) > 1 and loc[-2] == "price" and loc[-1] in _PRICE_FORMS:
            text = _price_message(item)
            if text is not None:
                found.append((loc[:-1], text))
        else:
            found.append((loc, _message(item)))
    return found


def _price_message(item: ErrorDetails) -> str | None:
    """A price that fails fails both of its forms: only the form it was sent in says why
    (None for the other one); sent in neither form, one message says what to send."""
    value, form = item["input"], item["loc"][-1]
    if isinstance(value, str):
        return _message(item) if form == "string" else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return PRICE_TYPE_MESSAGE if form == "string" else None
    if form == "string":
        return None
    if item["type"] in ("decimal_max_places", "decimal_max_digits", "decimal_whole_digits"):
        # Too many digits: before the point (1e11), or after it (24.999, 0.30000000000000004).
        return f"must be at most {MAX_PRICE}" if abs(value) >= 10**10 else NUMBER_PLACES_MESSAGE
    return _message(item)


def _message(item: ErrorDetails) -> str:
    pattern = item.get("ctx", {}).get("pattern")
    if item["type"] == "string_pattern_mismatch" and pattern == NO_NUL:
        return "must not contain NUL (\\u0000) characters; PostgreSQL text cannot store them"
    if item["type"] == "string_pattern_mismatch" and pattern in _PATTERN_MESSAGES:
        return _PATTERN_MESSAGES[pattern]
    return item["msg"]


# The record around the event: the key and the one header the service reads.
VERSION_HEADER = "contract-version"
KEY_PATTERN = r"^[1-9][0-9]{0,18}$"
# The values of VERSION_HEADER this service reads (a v2 would be added here, with its parser).
READ_VERSIONS = frozenset({str(CONTRACT_VERSION).encode()})


def record_key_schema() -> dict[str, Any]:
    return {
        "title": "Record key",
        "description": "The Kafka record's key: the event's product_id in decimal ASCII (e.g. "
        "`42`), so that a product's events stay in order on one partition. A record with no "
        "key or an empty key is accepted; any other key that is not the product_id is "
        "refused (invalid_event).",
        "type": "string",
        "pattern": KEY_PATTERN,
    }


def record_headers_schema() -> dict[str, Any]:
    return {
        "title": "Record headers",
        "description": "Kafka record headers the service reads (values as UTF-8 text). Any "
        "other header is kept as it is (and copied into a dead letter) but not read.",
        "type": "object",
        "properties": {
            VERSION_HEADER: {
                "description": f"The contract version of the value. Optional: without it the "
                f"value is read as v{CONTRACT_VERSION}. A version this service does not read "
                "is dead-lettered as unknown_contract_version (replay it once the service "
                "reads that version). The last header of this name counts.",
                "type": "string",
                "enum": [str(CONTRACT_VERSION)],
            }
        },
    }


def json_schema() -> dict[str, Any]:
    """The contract as a JSON Schema (Draft 2020-12): the root validates a record's value;
    `$defs/RecordKey` and `$defs/RecordHeaders` describe the key and headers around it."""
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"inventory-sink product event v{CONTRACT_VERSION}",
    }
    generated = EVENT_ADAPTER.json_schema()
    schema["$defs"] = generated["$defs"]
    # pydantic says `oneOf` the three types (with OpenAPI's `discriminator`, which JSON Schema
    # validators ignore): a wrong event then fails as "not valid under any of the given
    # schemas". Choosing the type's schema by `event_type` with if/then says the same, and a
    # validator names the field that is wrong.
    mapping: dict[str, str] = generated["discriminator"]["mapping"]
    schema["type"] = "object"
    schema["required"] = ["event_type"]
    schema["properties"] = {
        "event_type": {"enum": list(mapping), "description": "Which event this is."}
    }
    schema["allOf"] = [
        {
            "if": {
                "type": "object",
                "properties": {"event_type": {"const": name}},
                "required": ["event_type"],
            },
            "then": {"$ref": ref},
        }
        for name, ref in mapping.items()
    ]
    rules = "\n".join(f"- {name}: {text}" for name, text in NOT_IN_JSON_SCHEMA.items())
    schema["description"] = (
        f"One product event, the value of a Kafka record on the product-events topic (UTF-8 "
        f"JSON). The record's key is the product_id in decimal ($defs/RecordKey); its "
        f"`{VERSION_HEADER}` header, if any, is `{CONTRACT_VERSION}` ($defs/RecordHeaders). "
        f"Unknown fields are ignored at every level. This schema says exactly what the service "
        f"accepts, except these rules, which JSON Schema cannot express:\n{rules}"
    )
    schema["$defs"]["RecordKey"] = record_key_schema()
    schema["$defs"]["RecordHeaders"] = record_headers_schema()
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
