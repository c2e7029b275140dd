#!/bin/sh
exec kafka-run-class.sh kafka.tools.StorageTool "$@"
