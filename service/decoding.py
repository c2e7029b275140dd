"""Turn raw records into contract events, or into the reason they cannot be used."""

from __future__ import annotations

from dataclasses import dataclass

from service.contract import InvalidEvent, InvalidJson, parse_event
from service.domain import Event, Reason
from service.records import Record


@dataclass(frozen=True, slots=True)
class Unusable:
    reason: Reason
    message: str


def decode(record: Record) -> Event | Unusable:
    try:
        event = parse_event(record.value)
    except InvalidJson as error:
        return Unusable(Reason.INVALID_JSON, str(error))
    except InvalidEvent as error:
        return Unusable(Reason.INVALID_EVENT, str(error))
    key = record.key
    if key and key != b"%d" % event.product_id:
        return Unusable(
            Reason.INVALID_EVENT,
            f"record key {key[:40]!r} does not match product_id {event.product_id}; publish "
            "each event with its product id (decimal) as the key so a product's events stay "
            "in order",
        )
    return event
