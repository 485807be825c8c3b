"""A fake model reachable from settings, and a workload whose batches are known exactly.

The model is held while the requests queue, so which batches form is decided by the
queue, never by timing: 100 one-row requests with MAX_BATCH_SIZE 10 always run as one
batch of 1 (the request that was running when the rest arrived), nine of 10 and one of
9 (padded to 10 by ALLOWED_BATCH_SIZES).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.db import OperationalError

from tests.fakes import GatedModel
from tfbatch_django import predict_sync
from tfbatch_django.registry import registry

made: list[GatedModel] = []

GATED = {
    "MODELS": {
        "gated": {
            "RUNNER": "tests.monitoring.workloads.gated_runner",
            "MAX_BATCH_SIZE": 10,
            "ALLOWED_BATCH_SIZES": [1, 5, 10],
            "MAX_LATENCY_MS": 1,
            "WARMUP": False,
        },
    },
}
#: Real rows per batch, and what the model saw (the last batch padded from 9 to 10 rows).
EXPECTED_ROWS = [1] + [10] * 9 + [9]
EXPECTED_MODEL_CALLS = [1] + [10] * 10
EXPECTED_HISTOGRAM = {"1": 1, "9": 1, "10": 9}


def gated_runner() -> GatedModel:
    model = GatedModel()
    made.append(model)
    return model


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition", interval: float = 0.002) -> Any:
    """Poll until ``predicate()`` returns something truthy, and return it.

    The test database is SQLite in memory with a shared cache, where a read that meets a
    publisher thread's write fails at once ("table is locked") instead of waiting: such
    a poll counts as "not yet".
    """
    end = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except OperationalError as exc:
            if "locked" not in str(exc):
                raise
            value = None
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def known_workload(name: str = "gated", total: int = 100) -> GatedModel:
    """Send ``total`` one-row requests that form exactly ``EXPECTED_ROWS``; returns the model."""
    batcher = registry.get(name).load(timeout=10)
    model = made[-1]
    model.hold()
    errors: list[BaseException] = []

    def call(i: int) -> None:
        try:
            predict_sync(name, [[i, i, i]], timeout=30)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(total)]
    threads[0].start()
    model.entered.wait(10)
    for t in threads[1:]:
        t.start()
    wait_for(lambda: batcher.snapshot()["requests"] == total, what="all requests accepted")
    model.release()
    for t in threads:
        t.join(30)
    assert not errors, errors
    return model
