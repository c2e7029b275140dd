"""Prometheus metrics of the sink, served at /metrics."""

from __future__ import annotations

import platform
from importlib.metadata import version

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

from service.core.contract import CONTRACT_VERSION
from service.core.domain import Reason

# The default registry's collectors: CPU, memory, open files and start time of the process
# (process_*), the interpreter (python_info) and its garbage collector (python_gc_*). They read
# /proc and the interpreter at each scrape; nothing is computed between scrapes.
RUNTIME_COLLECTORS = (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR)


BUILD_LABELS = ("version", "python", "contract")


def build_labels() -> dict[str, str]:
    """What runs: the installed release, the interpreter and the event contract it accepts."""
    return {
        "version": version("inventory-sink"),
        "python": platform.python_version(),
        "contract": str(CONTRACT_VERSION),
    }


# What happens to each record (the write path's BatchReport.as_counts() names the same).
FATES = ("applied", "stale", "duplicate", "dead_lettered", "redelivered", "abandoned")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        for collector in RUNTIME_COLLECTORS:
            self.registry.register(collector)
        # inventory_sink_build_info{version,python,contract} 1: which release each replica
        # runs, e.g. during a rolling deploy (join on it by instance). A gauge, as Prometheus's
        # own *_build_info: the same type in the text format and in OpenMetrics.
        self.build_info = Gauge(
            "inventory_sink_build_info",
            "The release (version), the Python version and the event contract version this "
            "process runs; the value is always 1.",
            list(BUILD_LABELS),
            registry=self.registry,
        )
        self.build_info.labels(**build_labels()).set(1)
        self.events = Counter(
            "inventory_sink_events_total",
            "Records handled, by fate (applied, stale, duplicate, dead_lettered, redelivered, "
            "abandoned).",
            ["fate"],
            registry=self.registry,
        )
        for fate in FATES:  # at 0 from the start, as the reasons below
            self.events.labels(fate)
        self.dead_letters = Counter(
            "inventory_sink_dead_letters_total",
            "Records copied to the dead-letter topic, by reason.",
            ["reason"],
            registry=self.registry,
        )
        # Every reason's series exists from the start, at 0: rate() and increase() then see
        # the first letters of a reason too (a series born at 5 looks like no increase), and
        # InventorySinkDeadLettersRising needs no special case for a new reason.
        for reason in Reason:
            self.dead_letters.labels(reason.value)
        self.dead_letters_cut = Counter(
            "inventory_sink_dead_letters_cut_total",
            "Dead letters published cut to fit the dead-letter topic (value, then headers, key "
            "and message), by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.dead_letters_refused = Counter(
            "inventory_sink_dead_letters_refused_total",
            "Dead letters the dead-letter topic refused in every form: their partition is stopped.",
            ["topic"],
            registry=self.registry,
        )
        self.batches = Counter(
            "inventory_sink_batches_total", "Batches committed.", registry=self.registry
        )
        self.retries = Counter(
            "inventory_sink_batch_retries_total",
            "Batch attempts that failed and were retried.",
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "inventory_sink_batch_seconds",
            "Time to process and commit one batch.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.last_commit = Gauge(
            "inventory_sink_last_commit_timestamp_seconds",
            "Unix time of the last committed batch.",
            registry=self.registry,
        )
