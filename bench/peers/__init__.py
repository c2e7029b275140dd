"""The benchmark's peers: what a team would pick instead of inventory-sink.

- `quix`: Quix Streams' `PostgreSQLSink` with upsert on the primary key (`quix_app.py`, run by
  the Python of its own venv);
- `connect`: a Kafka Connect standalone worker with the Debezium JDBC sink, upsert mode
  (`connect.py` renders its configuration; the jars come from `connect/*/pom.xml`).

Both are installed by `scripts/bench-peers` into ~/.cache/inventory-sink/peers (`install.py`
finds them). Each consumes its own copy of the stream's upserts (`upserts.py`) into its own
database (`schema.sql`), and `run.py` times it and checks its table.
"""
