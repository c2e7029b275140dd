"""Peer `quix`: a Quix Streams app, product events -> PostgreSQL `products` (upsert on id).

    <quix venv>/bin/python bench/peers/quix_app.py --topic T --group G [--commit-interval 5]

The smallest app that does the job: filter `product.upserted`, map each event to one flat
row, and hand it to Quix's community `PostgreSQLSink` with `upsert_on_primary_key`. The table
exists beforehand (bench/peers/schema.sql), so `schema_auto_update` is off and the sink adds no
metadata columns. PostgreSQL and Kafka come from the service's variables (POSTGRES_HOST,
POSTGRES_PORT, POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, KAFKA_BOOTSTRAP_SERVERS).

It runs in its own venv (scripts/bench-peers), without this project's packages: keep it to the
standard library and quixstreams.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from quixstreams import Application
from quixstreams.sinks.community.postgresql import PostgreSQLSink


def to_row(event: dict[str, Any]) -> dict[str, Any]:
    """One row per event. A missing quantity is written as 0 (a whole-row upsert cannot keep
    the stored stock); None values would be dropped from the row by the sink."""
    data = event["data"]
    return {
        "id": event["product_id"],
        "name": data["name"],
        "description": data.get("description"),
        "price": data["price"],  # "24.90": sent as a literal, PostgreSQL casts it to numeric
        "quantity": data.get("quantity") or 0,
        "version": event["version"],
        "occurred_at": event["occurred_at"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--commit-interval", type=float, default=5.0)
    parser.add_argument("--state-dir", default="state")
    args = parser.parse_args()
    env = os.environ
    app = Application(
        broker_address=env["KAFKA_BOOTSTRAP_SERVERS"],
        consumer_group=args.group,
        auto_offset_reset="earliest",
        commit_interval=args.commit_interval,  # writes, then commits offsets, per checkpoint
        loglevel="WARNING",
        use_changelog_topics=False,
        state_dir=args.state_dir,
    )
    topic = app.topic(args.topic, value_deserializer="json", key_deserializer="str")
    sink = PostgreSQLSink(
        host=env["POSTGRES_HOST"],
        port=int(env["POSTGRES_PORT"]),
        dbname=env["POSTGRES_DB"],
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"],
        table_name="products",
        primary_key_columns="id",
        upsert_on_primary_key=True,
        schema_auto_update=False,
        include_metadata=False,
    )
    frame = app.dataframe(topic)
    # The sink can only insert or upsert: other event types never reach it.
    frame = frame.filter(lambda event: event["event_type"] == "product.upserted")
    frame = frame.apply(to_row)
    frame.sink(sink)
    app.run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main()
