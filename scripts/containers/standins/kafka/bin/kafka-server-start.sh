#!/bin/sh
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}" exec kafka-run-class.sh kafka.Kafka "$@"
