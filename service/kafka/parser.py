"""The batch subscriber's parser: FastStream's batch message, built without reading a record.

FastStream's own batch parser (`faststream/kafka/parser.py`) decodes every header value with
`.decode()` to fill `StreamMessage.batch_headers`. A header value that is not UTF-8 (tracing
systems send binary ones) raises UnicodeDecodeError, a null header value raises
AttributeError, and either happens before the handler runs: the record never reaches the
dead-letter path and its partition stalls. The sink reads only the raw records, so this parser
builds the same acknowledgeable message from the batch as it came from aiokafka and looks at
nothing inside it: no per-record work, nothing a producer can put in a record can make it
throw. Headers stay `(str, bytes | None)` pairs, in order, duplicates kept, for the write path
and the dead letters.

What it cannot cover: aiokafka itself decodes header *keys* as UTF-8 while it unpacks a fetch
(both its C extension and its pure-Python reader), inside `consumer.getmany()`, before
FastStream or this parser is called. See README, "Records the consumer cannot read".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from faststream.kafka.message import FAKE_CONSUMER, ConsumerProtocol, KafkaAckableMessage


class RawBatchParser:
    """`parser=` for a `batch=True`, `AckPolicy.MANUAL` subscriber.

    `consumer` returns the subscriber's consumer once it has started (None before), so the
    message's `nack()` can seek it back, as FastStream's own message does.
    """

    __slots__ = ("_consumer",)

    def __init__(self, consumer: Callable[[], ConsumerProtocol | None]) -> None:
        self._consumer = consumer

    async def __call__(self, records: Sequence[Any]) -> KafkaAckableMessage:
        batch_id = _batch_id(records)
        return KafkaAckableMessage(
            raw_message=records,
            body=records,  # the decoder hands the raw records on; nothing reads `body`
            message_id=batch_id,
            correlation_id=batch_id,  # no uuid4 per batch: the batch's offsets name it
            consumer=self._consumer() or FAKE_CONSUMER,
        )


def _batch_id(records: Sequence[Any]) -> str:
    """`first-last-timestamp` offsets, as FastStream names a batch (tolerates anything)."""
    if not records:
        return "empty"
    first, last = records[0], records[-1]
    return (
        f"{getattr(first, 'offset', '?')}-{getattr(last, 'offset', '?')}-"
        f"{getattr(first, 'timestamp', '?')}"
    )
