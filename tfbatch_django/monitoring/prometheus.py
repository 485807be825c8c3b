"""Prometheus metrics named ``tfbatch_*`` (extra ``prometheus``), fed by a stats listener.

With ``TFBATCH["PROMETHEUS"] = True`` every batcher event updates these metrics on the
batcher's own threads: a dict lookup and an increment or two per event. Several worker
processes: set ``PROMETHEUS_MULTIPROC_DIR`` (an empty directory) in the environment of
every worker before it starts; prometheus_client then keeps each process's values in
files there, and ``metrics_view`` merges them into one exposition. See the README.

Latency buckets are every fourth edge of the batcher's own ``LATENCY_BOUNDS`` (10 µs
times a power of two), so each Prometheus bucket count equals the batcher's cumulative
count up to that edge.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from ..batching.stats import LATENCY_BOUNDS, OUTCOMES

__all__ = ["BATCH_SIZE_BUCKETS", "LATENCY_BUCKETS", "PrometheusListener", "listener", "metrics_view"]

LATENCY_BUCKETS: tuple[float, ...] = LATENCY_BOUNDS[::4]
BATCH_SIZE_BUCKETS: tuple[float, ...] = tuple(float(2**k) for k in range(11))  # 1 ... 1024 rows


@dataclass(frozen=True)
class _ModelMetrics:
    """One model's labelled children, looked up once instead of at every event."""

    requests: dict[str, Any]
    queue_wait: Any
    latency: Any
    batch_size: Any
    padding_rows: Any
    run: Any
    queue_depth: Any


class PrometheusListener:
    """A ``StatsListener`` that feeds the ``tfbatch_*`` metrics."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.requests = Counter(
            "tfbatch_requests", "Prediction requests by how they ended.", ["model", "outcome"], registry=registry
        )
        self.queue_wait = Histogram(
            "tfbatch_queue_wait_seconds",
            "Time a completed request waited before its batch started.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.latency = Histogram(
            "tfbatch_request_latency_seconds",
            "End-to-end time of a completed request, from submit to answer.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "tfbatch_batch_size", "Real rows per model call.", ["model"], buckets=BATCH_SIZE_BUCKETS, registry=registry
        )
        self.padding_rows = Counter(
            "tfbatch_padding_rows", "Filler rows added to reach an allowed batch size.", ["model"], registry=registry
        )
        self.run = Histogram(
            "tfbatch_run_seconds", "Time of one model call.", ["model"], buckets=LATENCY_BUCKETS, registry=registry
        )
        self.queue_depth = Gauge(
            "tfbatch_queue_depth",
            "Requests queued when the latest batch finished (summed over live processes).",
            ["model"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self._models: dict[str, _ModelMetrics] = {}
        self._lock = threading.Lock()

    def _for(self, model: str) -> _ModelMetrics:
        metrics = self._models.get(model)
        if metrics is None:
            with self._lock:
                metrics = self._models.get(model)
                if metrics is None:
                    # Every outcome starts at 0, so rate() works before the first error.
                    metrics = _ModelMetrics(
                        requests={outcome: self.requests.labels(model, outcome) for outcome in OUTCOMES},
                        queue_wait=self.queue_wait.labels(model),
                        latency=self.latency.labels(model),
                        batch_size=self.batch_size.labels(model),
                        padding_rows=self.padding_rows.labels(model),
                        run=self.run.labels(model),
                        queue_depth=self.queue_depth.labels(model),
                    )
                    self._models[model] = metrics
        return metrics

    def on_request(self, model: str, outcome: str, queue_wait: float | None, latency: float | None) -> None:
        metrics = self._for(model)
        metrics.requests[outcome].inc()
        if queue_wait is not None:
            metrics.queue_wait.observe(queue_wait)
        if latency is not None:
            metrics.latency.observe(latency)

    def on_batch(self, model: str, rows: int, padded: int, run_time: float, queue_depth: int) -> None:
        metrics = self._for(model)
        metrics.batch_size.observe(rows)
        if padded > rows:
            metrics.padding_rows.inc(padded - rows)
        metrics.run.observe(run_time)
        metrics.queue_depth.set(queue_depth)


_listener: PrometheusListener | None = None
_listener_lock = threading.Lock()


def listener() -> PrometheusListener:
    """The process's listener; its metrics live in prometheus_client's default registry."""
    global _listener
    with _listener_lock:
        if _listener is None:
            _listener = PrometheusListener()
        return _listener


def metrics_view(request: HttpRequest) -> HttpResponse:
    """The text exposition: this process's metrics, or all workers' in multiprocess mode.

    Mount it on a URL only your monitoring can reach, e.g.
    ``path("metrics", metrics_view)``; it does no authentication of its own.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
