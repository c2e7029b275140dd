"""The AsyncAPI document of the sink: what it reads, what it writes, record by record.

FastStream builds the document from the broker: the subscriber's body type gives the
product-events payload (`EventBatch`), and a publisher that only documents (`declare_dead_letters`)
gives the dead-letter channel. Neither changes how a record is read: the body is the batch of
raw records the decoder hands on, passed through as it is, once per batch. What FastStream's
document has no place for, Kafka keys and headers, `ContractAsyncAPI` adds to each message,
and it splits the product-events message into one per event type. The app serves it at /docs;
contract/asyncapi.yaml is the same document for the default topics (tests check both).
"""

from __future__ import annotations

import json
from io import StringIO
from typing import Annotated, Any

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from pydantic import PlainValidator, WithJsonSchema

from service.core.contract import (
    CONTRACT_VERSION,
    NOT_IN_JSON_SCHEMA,
    ProductEvent,
    record_headers_schema,
    record_key_schema,
)
from service.core.domain import Reason
from service.core.letters import ERROR_HEADERS, REPLAYED_FROM

EVENTS_CHANNEL = "product-events"
LETTERS_CHANNEL = "dead-letters"
EVENT_MESSAGES = ("ProductUpserted", "ProductDeleted", "StockAdjusted")
KAFKA_BINDING_VERSION = "0.4.0"  # as FastStream binds the channels


def _as_is(value: Any) -> Any:
    return value


# The subscriber's body: the batch of raw records, untouched (the write path validates each
# record itself); documented as the product event each record carries.
EventBatch = Annotated[Any, PlainValidator(_as_is, json_schema_input_type=ProductEvent)]

LetterValue = Annotated[
    Any,
    PlainValidator(_as_is),
    WithJsonSchema(
        {
            "title": "DeadLetterValue",
            "description": "The original record's value, byte for byte (it may not be JSON, "
            "or be empty: a tombstone). A letter cut to fit the topic carries a prefix of it "
            "(letter.cut).",
        }
    ),
]


def declare_dead_letters(broker: KafkaBroker, topic: str) -> None:
    """Put the dead-letter topic in the document. The letters themselves are published by
    service/kafka/dead_letter_producer.py with its own producer: this publisher only documents."""
    broker.publisher(
        topic,
        title=LETTERS_CHANNEL,
        description="Records the sink cannot use, with why (error.reason, error.message) and "
        "where they came from (original.*); see docs/reference/contract.md, Dead letters.",
        schema=LetterValue,
    )


def letter_headers_schema() -> dict[str, Any]:
    text = {"type": "string"}
    number = {"type": "string", "pattern": "^(0|[1-9][0-9]*)$"}
    sink = {
        "error.reason": {
            **text,
            "enum": [reason.value for reason in Reason],
            "description": "Why the record was not used.",
        },
        "error.message": {
            **text,
            "description": "What is wrong, naming the field, and the fix (up to 2000 chars).",
        },
        "original.topic": {**text, "description": "The topic the record was read from."},
        "original.partition": {**number, "description": "Its partition there, in decimal."},
        "original.offset": {**number, "description": "Its offset there, in decimal."},
        "letter.cut": {
            **text,
            "description": "Only on a letter cut to fit the topic: what was cut (value, "
            "headers, key, message, comma-separated).",
        },
        "original.value.bytes": {
            **number,
            "description": "Only on a cut letter: the original value's size in bytes.",
        },
        "original.value.sha256": {
            **text,
            "pattern": "^[0-9a-f]{64}$",
            "description": "Only on a cut letter: the original value's SHA-256, in hex.",
        },
    }
    return {
        "title": "DeadLetterHeaders",
        "description": "The original record's headers first, exactly as they came (binary, "
        "null, duplicate names), then the sink's five error.* and original.* headers, last "
        "(read a header by its last occurrence), then, on a cut letter only, the three cut "
        f"headers. Values are UTF-8 text, numbers in decimal. A replay drops them and adds "
        f"{REPLAYED_FROM} (<dlq topic>/<partition>/<offset>).",
        "type": "object",
        "properties": sink,
        "required": list(ERROR_HEADERS),
    }


def letter_key_schema() -> dict[str, Any]:
    return {
        "title": "DeadLetterKey",
        "description": "The original record's key, byte for byte (none if it had none).",
        "type": "string",
    }


class ContractAsyncAPI(AsyncAPI):
    """FastStream's AsyncAPI 3 document, with each message's key and headers, and one
    product-events message per event type."""

    def to_specification(self) -> Document:
        return Document(complete(super().to_specification().to_jsonable()))


def contract_asyncapi(broker: KafkaBroker) -> ContractAsyncAPI:
    return ContractAsyncAPI(
        broker,
        title="inventory-sink",
        version=f"{CONTRACT_VERSION}.0.0",
        description="Reads product events (contract v1) from the product-events topic into "
        "PostgreSQL; records it cannot use go to the dead-letter topic. The payload schemas "
        "say exactly what the service accepts, but for the rules JSON Schema cannot say: "
        + " ".join(f"({name}) {text}" for name, text in NOT_IN_JSON_SCHEMA.items())
        + " Check events offline with `python -m service validate FILE`.",
    )


def _kafka_key(schema: dict[str, Any]) -> dict[str, Any]:
    return {"kafka": {"key": schema, "bindingVersion": KAFKA_BINDING_VERSION}}


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """Add keys and headers, and the per-event-type messages, to FastStream's document."""
    channels, operations = document["channels"], document["operations"]
    components = document["components"]
    messages, schemas = components["messages"], components["schemas"]

    events = channels[EVENTS_CHANNEL]
    for name in events["messages"]:  # FastStream's one message with the union payload
        union = messages.pop(f"{EVENTS_CHANNEL}:{name}")
        schemas.pop(union["payload"]["$ref"].rsplit("/", 1)[-1], None)
    events["messages"] = {}
    for name in EVENT_MESSAGES:
        schema = schemas[name]
        messages[name] = {
            "name": name,
            "title": schema["properties"]["event_type"]["const"],
            "summary": schema.get("description"),
            "contentType": "application/json",
            "headers": record_headers_schema(),
            "payload": {"$ref": f"#/components/schemas/{name}"},
            "bindings": _kafka_key(record_key_schema()),
        }
        events["messages"][name] = {"$ref": f"#/components/messages/{name}"}
    operations[EVENTS_CHANNEL]["messages"] = [
        {"$ref": f"#/channels/{EVENTS_CHANNEL}/messages/{name}"} for name in EVENT_MESSAGES
    ]

    for name, ref in channels[LETTERS_CHANNEL]["messages"].items():
        letter = messages[ref["$ref"].rsplit("/", 1)[-1]]
        letter.pop("correlationId", None)  # FastStream's default: the sink sets none
        letter.update(
            name=f"{LETTERS_CHANNEL}:{name}",
            title="dead letter",
            summary="A record the sink could not use: its key and value unchanged, its "
            "headers followed by the sink's.",
            headers=letter_headers_schema(),
            bindings=_kafka_key(letter_key_schema()),
        )
    return document


class Document:
    """The completed document, as FastStream's `Specification` serves and writes it."""

    __slots__ = ("_document",)

    def __init__(self, document: dict[str, Any]) -> None:
        self._document = document

    @property
    def title(self) -> str:
        return str(self._document["info"]["title"])

    def to_jsonable(self) -> Any:
        return self._document

    def to_json(self) -> str:
        return json.dumps(self._document)

    def to_yaml(self) -> str:
        import yaml  # type: ignore[import-untyped]

        out = StringIO(initial_value="", newline="\n")
        yaml.dump(self._document, out, sort_keys=False)  # as FastStream writes it
        return out.getvalue()
