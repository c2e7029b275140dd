"""Turn raw records into contract events, or into the reason they cannot be used."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.core.contract import (
    READ_VERSIONS,
    VERSION_HEADER,
    InvalidEvent,
    InvalidJson,
    parse_event,
)
from service.core.domain import Event, Reason
from service.core.records import Record


@dataclass(frozen=True, slots=True)
class Unusable:
    reason: Reason
    message: str


# Key + value + headers. The default sits just under the broker's default message.max.bytes
# (1 MiB + 12): lower it to protect the parser from records far larger than any event.
DEFAULT_MAX_RECORD_BYTES = 1024 * 1024


def record_size(record: Record) -> int:
    """Bytes of the record's key, value and headers (names in UTF-8, values as sent)."""
    key, value, headers = record.key, record.value, record.headers
    size = (len(key) if key else 0) + (len(value) if value else 0)
    for name, data in headers:  # a plain loop: most records have no headers, few have many
        size += len(name.encode("utf-8", "surrogateescape")) + (len(data) if data else 0)
    return size


def decode(record: Record, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Event | Unusable:
    key, value, headers = record.key, record.value, record.headers
    if headers:  # most records have none: no loop, no lookup
        size = record_size(record)
    else:  # record_size's sum, inline: this runs once per record of every batch
        size = (len(key) if key else 0) + (len(value) if value else 0)
    if size > max_record_bytes:
        return Unusable(
            Reason.RECORD_TOO_LARGE,
            f"record is {size} bytes (key + value + headers), over MAX_RECORD_BYTES="
            f"{max_record_bytes}; it was not parsed. Publish smaller events, or raise "
            "MAX_RECORD_BYTES if events this large are intended",
        )
    if headers:
        unknown = _unknown_version(headers)
        if unknown is not None:
            return unknown
    try:
        event = parse_event(value)
    except InvalidJson as error:
        return Unusable(Reason.INVALID_JSON, str(error))
    except InvalidEvent as error:
        return Unusable(Reason.INVALID_EVENT, str(error))
    if key and key != b"%d" % event.product_id:
        return Unusable(
            Reason.INVALID_EVENT,
            f"record key {key[:40]!r} does not match product_id {event.product_id}; publish "
            "each event with its product id (decimal) as the key so a product's events stay "
            "in order",
        )
    return event


def _unknown_version(headers: Sequence[tuple[str, bytes | None]]) -> Unusable | None:
    """The letter for a `contract-version` header this service does not read (the last
    header of that name counts, as Kafka's `lastHeader`), or None: no header, or v1."""
    found = False
    version: bytes | None = None
    for name, value in headers:
        if name == VERSION_HEADER:
            found, version = True, value
    if not found or version in READ_VERSIONS:
        return None
    shown = "null" if version is None else repr(version.decode("utf-8", "replace")[:40])
    known = ", ".join(sorted(v.decode() for v in READ_VERSIONS))
    return Unusable(
        Reason.UNKNOWN_CONTRACT_VERSION,
        f"header {VERSION_HEADER}={shown} names a contract version this service does not "
        f"read (it reads: {known}); it was not parsed. Publish it as a version the service "
        "reads, or replay it once the service is upgraded to one that reads this version",
    )
