"""What a web process makes of heartbeats (no Redis needed)."""

from __future__ import annotations

import time

from tfbatch_django.remote.liveness import WorkerBook


def beat(key, models, stopping=False):
    return {"worker": "gpu", "key": key, "host": "h", "pid": 1, "models": models, "stopping": stopping}


def test_the_ready_worker_describes_the_model():
    book = WorkerBook(dead_after=60)
    book.heard(beat("a", {"m": {"status": "loading"}}))
    book.heard(beat("b", {"m": {"status": "ready", "runner": {"inputs": []}}}))
    snap, live = book.model("gpu", "m")
    assert snap["status"] == "ready" and len(live) == 2
    assert book.model("gpu", "other")[0] is None


def test_silent_and_stopping_workers_are_dead_once():
    book = WorkerBook(dead_after=0.05)
    book.heard(beat("a", {"m": {"status": "ready"}}))
    book.heard(beat("b", {"m": {"status": "ready"}}, stopping=True))
    assert [w.key for w in book.live("gpu")] == ["a"]
    time.sleep(0.1)
    assert book.live("gpu") == []
    assert sorted(w.key for w in book.collect_dead("gpu")) == ["a", "b"]
    assert book.collect_dead("gpu") == []


def test_a_fresh_process_waits_for_the_first_heartbeat():
    book = WorkerBook(dead_after=0.05)
    book.watch("gpu")
    assert book.still_listening("gpu")
    time.sleep(0.1)
    assert not book.still_listening("gpu")
