"""Publish (key, value) records to a topic and wait for every acknowledgement."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from service.config.settings import KafkaSettings
from service.kafka import clients


def read_jsonl(path: Path | None) -> list[tuple[bytes, bytes]]:
    """One JSON event per line; the key is its product_id (when it has one)."""
    lines = (path.read_text("utf-8") if path else sys.stdin.read()).splitlines()
    pairs = []
    for line in lines:
        if not line.strip():
            continue
        try:
            product_id = json.loads(line).get("product_id")
        except (ValueError, AttributeError):
            product_id = None
        key = str(product_id).encode() if product_id is not None else b""
        pairs.append((key, line.encode()))
    return pairs


async def publish_pairs(
    settings: KafkaSettings, topic: str, pairs: Sequence[tuple[bytes | None, bytes]]
) -> None:
    producer = clients.producer(settings, acks="all", enable_idempotence=True, linger_ms=10)
    try:
        await producer.start()  # inside: a failed start must stop the producer too
        futures = [await producer.send(topic, value=value, key=key or None) for key, value in pairs]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
