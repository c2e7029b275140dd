"""inventory-sink: keeps a PostgreSQL product inventory in step with product events on Kafka."""
