"""What a web process knows about the workers: who is alive, what each serves and holds.

Fed by heartbeats (``protocol.HEARTBEAT``), read by callers (is anyone alive? what are
the model's inputs?) and by the client's watchdog (whose requests died with a worker?).
Plain Python, guarded by one lock: heartbeats arrive on the client's loop thread,
callers read from theirs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["WorkerBook", "WorkerSeen"]

#: Statuses in order of preference when several workers serve a model.
_RANK = {"ready": 0, "warming": 1, "loading": 2, "not_loaded": 3, "failed": 4}


@dataclass
class WorkerSeen:
    """One worker process, as of its latest heartbeat."""

    key: str  # host:pid:nonce, unique per process start
    worker: str  # the WORKER name it serves
    host: str
    pid: int
    last_seen: float  # time.monotonic() here
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> its get_stats() snapshot
    stopping: bool = False

    def describe(self, now: float) -> dict[str, Any]:
        return {
            "key": self.key,
            "host": self.host,
            "pid": self.pid,
            "seen_s_ago": round(now - self.last_seen, 3),
            "models": {name: snap.get("status") for name, snap in self.models.items()},
            "requests": {name: snap.get("requests", 0) for name, snap in self.models.items()},
        }


class WorkerBook:
    """Live workers per WORKER name, from their heartbeats."""

    def __init__(self, dead_after: float) -> None:
        self.dead_after = dead_after
        self._lock = threading.Lock()
        self._workers: dict[str, dict[str, WorkerSeen]] = {}  # name -> key -> seen
        self._watched_since: dict[str, float] = {}  # name -> when this process started listening

    def watch(self, worker: str) -> None:
        with self._lock:
            self._watched_since.setdefault(worker, time.monotonic())

    def watched(self) -> list[str]:
        with self._lock:
            return list(self._watched_since)

    def heard(self, message: dict[str, Any]) -> WorkerSeen:
        """Record a heartbeat; returns the worker as now known."""
        now = time.monotonic()
        with self._lock:
            workers = self._workers.setdefault(message["worker"], {})
            seen = workers.get(message["key"])
            if seen is None:
                seen = workers[message["key"]] = WorkerSeen(
                    message["key"], message["worker"], message["host"], message["pid"], now
                )
            seen.last_seen = now
            seen.models = message.get("models", {})
            seen.stopping = bool(message.get("stopping"))
            return seen

    def live(self, worker: str) -> list[WorkerSeen]:
        now = time.monotonic()
        with self._lock:
            return [
                w
                for w in self._workers.get(worker, {}).values()
                if not w.stopping and now - w.last_seen <= self.dead_after
            ]

    def collect_dead(self, worker: str) -> list[WorkerSeen]:
        """Workers silent for ``dead_after`` (or that said they stop): forgotten, returned once."""
        now = time.monotonic()
        with self._lock:
            workers = self._workers.get(worker, {})
            dead = [w for w in workers.values() if w.stopping or now - w.last_seen > self.dead_after]
            for w in dead:
                del workers[w.key]
            return dead

    def still_listening(self, worker: str) -> bool:
        """True while this process may simply not have heard the workers' first heartbeat yet."""
        with self._lock:
            since = self._watched_since.get(worker)
        return since is None or time.monotonic() - since < self.dead_after

    def model(self, worker: str, model: str) -> tuple[dict[str, Any] | None, list[WorkerSeen]]:
        """The snapshot of ``model`` from its best live worker (ready first), and the live workers."""
        live = self.live(worker)
        snaps = [(w, w.models[model]) for w in live if model in w.models]
        if not snaps:
            return None, live
        snaps.sort(key=lambda ws: (_RANK.get(ws[1].get("status", ""), 9), -ws[0].last_seen))
        return snaps[0][1], live
