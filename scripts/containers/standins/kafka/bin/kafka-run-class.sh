#!/bin/sh
# kafka-run-class.sh of the stand-in: the class with the jars of /opt/kafka/libs.
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
  -cp '/opt/kafka/libs/*' "$@"
