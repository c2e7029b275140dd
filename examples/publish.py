"""Publish one product event the way inventory-sink expects it: an example for upstream teams.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 KAFKA_TOPIC=inventory.product-events \
        python examples/publish.py 42

It needs only aiokafka (`pip install aiokafka`), not the service. The three things that matter:
- the value: one JSON event, UTF-8 (contract/product-event.v1.schema.json says every field);
- the key: the product id in decimal, so a product's events stay in order on one partition;
- the header `contract-version: 1`, the contract version of the value (optional for v1).
Add TLS/SASL options to the producer as your cluster requires (aiokafka's security_protocol,
ssl_context, sasl_mechanism, ...).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer


def product_upserted(product_id: int) -> dict[str, object]:
    return {
        "event_id": str(uuid.uuid4()),  # a retry of this event must send this same id
        "event_type": "product.upserted",
        "occurred_at": datetime.now(UTC).isoformat(),  # RFC 3339 with an offset
        "product_id": product_id,  # a JSON integer
        "version": 1,  # applied only if greater than the stored version
        "data": {"name": "Espresso beans 1kg", "price": "24.90", "quantity": 40},  # price: a string
    }


async def publish(bootstrap_servers: str, topic: str, event: dict[str, object]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",  # the event is on every in-sync replica before this returns
        enable_idempotence=True,  # a retry inside the producer never writes it twice
    )
    await producer.start()
    try:
        sent = await producer.send_and_wait(
            topic,
            value=json.dumps(event).encode("utf-8"),
            key=str(event["product_id"]).encode("ascii"),
            headers=[("contract-version", b"1")],
        )
    finally:
        await producer.stop()
    print(f"published {event['event_id']} to {sent.topic}[{sent.partition}]@{sent.offset}")


def main() -> int:
    bootstrap_servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    topic = os.environ.get("KAFKA_TOPIC", "inventory.product-events")
    product_id = int(sys.argv[1]) if len(sys.argv) > 1 else 42
    asyncio.run(publish(bootstrap_servers, topic, product_upserted(product_id)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
