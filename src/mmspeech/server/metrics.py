"""Counters and histograms in the Prometheus text exposition format (no client library needed)."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

Labels = tuple[tuple[str, str], ...]
Samples = Callable[[], list[tuple[dict[str, str], float]]]  # a gauge's (labels, value) pairs

# histogram upper bounds: seconds for latencies, counts for batch sizes
_BUCKETS = {
    "mmspeech_request_duration_seconds": (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    "mmspeech_queue_wait_seconds": (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
    "mmspeech_batch_size": (1, 2, 4, 8, 16, 32),
}
_HELP = {
    "mmspeech_requests_total": "HTTP requests by endpoint and status code.",
    "mmspeech_rejected_total": "Requests refused or abandoned by the scheduler, by reason.",
    "mmspeech_request_duration_seconds": "Time from request to response headers, by endpoint.",
    "mmspeech_queue_wait_seconds": "Time a job waited in the queue before inference.",
    "mmspeech_batch_size": "Requests per inference call (micro-batching).",
}


def _labels(labels: dict[str, str] | None) -> Labels:
    return tuple(sorted((labels or {}).items()))


def _format_labels(labels: Labels, extra: tuple[str, str] | None = None) -> str:
    items = [*labels, extra] if extra else list(labels)
    if not items:
        return ""
    escaped = [
        f'{key}="{value.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for key, value in items
    ]
    return "{" + ",".join(escaped) + "}"


class Metrics:
    """Thread-safe counters and histograms, rendered by :meth:`render`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = defaultdict(lambda: defaultdict(float))
        # name -> labels -> (bucket counts, sum, count)
        self._histograms: dict[str, dict[Labels, tuple[list[int], float, int]]] = defaultdict(dict)

    def count(self, name: str, labels: dict[str, str] | None = None, value: float = 1) -> None:
        with self._lock:
            self._counters[name][_labels(labels)] += value

    def observe(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        bounds = _BUCKETS[name]
        key = _labels(labels)
        with self._lock:
            buckets, total, count = self._histograms[name].get(key, ([0] * len(bounds), 0.0, 0))
            for index, bound in enumerate(bounds):
                if value <= bound:
                    buckets[index] += 1
            self._histograms[name][key] = (buckets, total + value, count + 1)

    def render(self, gauges: dict[str, tuple[str, Samples]]) -> str:
        """The exposition text; ``gauges`` maps a name to (help, function giving samples)."""
        lines: list[str] = []
        with self._lock:
            for name, series in sorted(self._counters.items()):
                lines += [f"# HELP {name} {_HELP.get(name, name)}", f"# TYPE {name} counter"]
                lines += [f"{name}{_format_labels(k)} {v:g}" for k, v in sorted(series.items())]
            for name, histogram in sorted(self._histograms.items()):
                lines += [f"# HELP {name} {_HELP.get(name, name)}", f"# TYPE {name} histogram"]
                for key, (buckets, total, count) in sorted(histogram.items()):
                    for bound, hits in zip(_BUCKETS[name], buckets, strict=True):
                        labels = _format_labels(key, ("le", f"{bound:g}"))
                        lines.append(f"{name}_bucket{labels} {hits}")
                    lines.append(f"{name}_bucket{_format_labels(key, ('le', '+Inf'))} {count}")
                    lines.append(f"{name}_sum{_format_labels(key)} {total:.6f}")
                    lines.append(f"{name}_count{_format_labels(key)} {count}")
        for name, (help_text, samples) in sorted(gauges.items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
            for sample_labels, value in samples():
                lines.append(f"{name}{_format_labels(_labels(sample_labels))} {value:g}")
        return "\n".join(lines) + "\n"
