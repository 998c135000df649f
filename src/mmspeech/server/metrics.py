"""The server's Prometheus metrics, kept by ``prometheus-client`` in one registry per app.

Counters and histograms are declared here, once; gauges (queue depth, loaded models) are read
from the app's state when ``/metrics`` is scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

Samples = Callable[[], list[tuple[dict[str, str], float]]]  # a gauge's (labels, value) pairs
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# name (as exposed) -> (kind, help, label names, histogram upper bounds)
_DECLARED: dict[str, tuple[str, str, tuple[str, ...], tuple[float, ...]]] = {
    "mmspeech_requests_total": (
        "counter", "HTTP requests by endpoint and status code.",
        ("endpoint", "method", "status"), (),
    ),
    "mmspeech_rejected_total": (
        "counter", "Requests refused or abandoned by the scheduler, by reason.", ("reason",), (),
    ),
    "mmspeech_request_duration_seconds": (
        "histogram", "Time from request to response headers, by endpoint.", ("endpoint",),
        (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    ),
    "mmspeech_queue_wait_seconds": (
        "histogram", "Time a job waited in the queue before it ran.", (),
        (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
    ),
    "mmspeech_batch_size": (
        "histogram", "Requests per inference call (micro-batching).", (), (1, 2, 4, 8, 16, 32),
    ),
}  # fmt: skip


class _Gauges(Collector):
    """Gauges whose values are read from functions at scrape time."""

    def __init__(self, gauges: dict[str, tuple[str, Samples]]):
        self.gauges = gauges

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, (help_text, samples) in sorted(self.gauges.items()):
            values = samples()
            labels = sorted({key for sample_labels, _ in values for key in sample_labels})
            family = GaugeMetricFamily(name, help_text, labels=labels)
            for sample_labels, value in values:
                family.add_metric([sample_labels.get(key, "") for key in labels], value)
            yield family


class Metrics:
    """The counters and histograms of one server (thread-safe, as prometheus-client is)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._metrics: dict[str, Any] = {}
        for name, (kind, help_text, labels, buckets) in _DECLARED.items():
            if kind == "counter":  # prometheus-client adds the _total suffix itself
                self._metrics[name] = Counter(
                    name.removesuffix("_total"), help_text, labels, registry=self.registry
                )
            else:
                self._metrics[name] = Histogram(
                    name, help_text, labels, buckets=buckets, registry=self.registry
                )
        self._gauges = _Gauges({})
        self.registry.register(self._gauges)

    def _child(self, name: str, labels: dict[str, str] | None) -> Any:
        metric = self._metrics[name]
        return metric.labels(**labels) if labels else metric

    def count(self, name: str, labels: dict[str, str] | None = None, value: float = 1) -> None:
        self._child(name, labels).inc(value)

    def observe(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        self._child(name, labels).observe(value)

    def render(self, gauges: dict[str, tuple[str, Samples]]) -> str:
        """The exposition text; ``gauges`` maps a name to (help, function giving samples)."""
        self._gauges.gauges = gauges
        return generate_latest(self.registry).decode()
