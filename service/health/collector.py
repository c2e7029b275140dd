"""The Prometheus collector of progress and readiness: its values are computed when /metrics
is scraped, from the same checks the probes answer with."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from service.health.probe import Verdict
from service.health.progress import ProgressTracker

LAG = "inventory_sink_partition_lag"
SINCE_PROGRESS = "inventory_sink_seconds_since_progress"


class ProgressCollector(Collector):
    """Per assigned partition, as the position watch last observed it."""

    def __init__(self, tracker: ProgressTracker) -> None:
        self.tracker = tracker

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag, since = self._families()
        for p in self.tracker.snapshot:
            labels = [p.tp[0], str(p.tp[1])]
            if p.lag is not None:
                lag.add_metric(labels, p.lag)
            since.add_metric(labels, p.seconds_since_progress)
        yield lag
        yield since

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                LAG,
                "Records in the partition's log not yet applied to the database.",
                labels=["topic", "partition"],
            ),
            GaugeMetricFamily(
                SINCE_PROGRESS,
                "Seconds the partition has had lag without its stored position advancing "
                "(0 while caught up).",
                labels=["topic", "partition"],
            ),
        )


class HealthMetrics:
    """Registers the progress gauges; `record` publishes each readiness verdict."""

    def __init__(self, registry: CollectorRegistry, tracker: ProgressTracker) -> None:
        registry.register(ProgressCollector(tracker))
        self.ready = Gauge(
            "inventory_sink_ready",
            "1 when /health/ready passes, 0 when it fails (evaluated at each scrape).",
            registry=registry,
        )
        self.checks = Gauge(
            "inventory_sink_ready_check",
            "1 when the named readiness check passes, 0 when it fails.",
            ["check"],
            registry=registry,
        )

    def record(self, verdict: Verdict) -> None:
        self.ready.set(1 if verdict.ok else 0)
        for name, problem in verdict.problems.items():
            self.checks.labels(name).set(1 if problem is None else 0)
