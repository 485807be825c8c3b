"""The per-process publisher: a daemon thread writing this process's stats to the database.

Why a thread, and why started explicitly (``start_publishing()`` in ``asgi.py``):
predictions never wait on it (it reads ``get_stats()``, which copies counters under the
batchers' short locks, and writes from its own thread and DB connection), and only
serving processes publish — ``manage.py migrate`` or ``shell`` never appear on the
dashboard as phantom workers, as they would if ``AppConfig.ready()`` started it.

Fork-safe: a child forked from a publishing process (gunicorn's preload, multiprocessing)
inherits no threads, so it takes a new identity, forgets its parent's baselines and
starts a thread of its own.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import close_old_connections
from django.utils import timezone

from ..api import get_stats
from ..conf import get_monitoring
from . import figures, store

__all__ = ["Publisher", "publisher"]

logger = logging.getLogger("tfbatch_django.monitoring")


class Publisher:
    """Publishes ``get_stats()`` every ``STATS_PUBLISH_INTERVAL`` seconds, with history samples."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock  # decides when history samples are due
        self._reset()
        self._atexit_registered = False

    def _reset(self) -> None:
        self._lock = threading.Lock()  # the thread's lifecycle: quick, never held over I/O
        self._publishing = threading.Lock()  # one publish at a time (held over database writes)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wanted = False  # start() was called here (or in the parent, before a fork)
        self._failing = False
        self.identity = store.ProcessIdentity()
        self._live_base: dict[str, dict[str, Any]] = {}
        self._history_base: dict[str, dict[str, Any]] = {}
        self._history_due = -math.inf  # clock() time of the next history sample

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> bool:
        """Start the thread unless publishing is off; idempotent. True if running."""
        interval = get_monitoring().publish_interval
        if interval is None:
            logger.info("tfbatch: stats publishing is off (STATS_PUBLISH_INTERVAL is None)")
            return False
        with self._lock:
            self._wanted = True
            if self.running:
                return True
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stop,), name="tfbatch-publish", daemon=True)
            self._thread.start()
            if not self._atexit_registered:
                atexit.register(self._at_exit)
                self._atexit_registered = True
        logger.info("tfbatch: publishing stats as %s every %gs", self.identity.key, interval)
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and mark this process stopped, so it drops out of the sums now.

        Bounded by ``timeout`` even when the database hangs: if a publish is still in
        flight then, the process is left to go stale (its row would be written after ours).
        """
        with self._lock:
            was_wanted, self._wanted = self._wanted, False
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("tfbatch: stats publisher still busy after %.1fs; leaving it", timeout)
                return
        if was_wanted:
            try:
                store.mark_stopped(self.identity, timezone.now())
            except Exception as exc:  # noqa: BLE001 - the database may be gone at interpreter exit
                logger.debug("tfbatch: could not mark %s stopped: %s", self.identity.key, exc)
            finally:
                close_old_connections()

    def publish(self) -> None:
        """Write the live snapshot now, plus a history sample when one is due."""
        with self._publishing:
            config = get_monitoring()
            # A model another process serves (WORKER) is published by that worker only.
            stats = {name: snap for name, snap in get_stats().items() if not snap.get("remote")}
            now = timezone.now()
            live = {
                name: {**snap, "window": figures.window(snap, self._live_base.get(name))}
                for name, snap in stats.items()
            }
            store.save_live(self.identity, now, live)
            self._live_base = stats
            if self._clock() >= self._history_due:
                windows = {
                    name: {**figures.window(snap, self._history_base.get(name)), "queue_depth": snap["queue_depth"]}
                    for name, snap in stats.items()
                }
                store.save_history(self.identity, now, windows)
                store.prune(now, config.retention_hours)
                self._history_base = stats
                # Half a publish interval of slack, so a 60 s history on a 5 s publish
                # interval samples every 60 s rather than every 65 s.
                slack = (config.publish_interval or 0.0) / 2
                self._history_due = self._clock() + config.history_interval - slack

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                close_old_connections()
                self.publish()
            except Exception as exc:  # noqa: BLE001 - a publisher must outlive any failure
                # Typically the tables are missing (migrate not run) or the database is down:
                # say it once, then quietly retry at each interval.
                log = logger.debug if self._failing else logger.warning
                log("tfbatch: could not publish stats (will retry): %s: %s", type(exc).__name__, exc)
                self._failing = True
            else:
                if self._failing:
                    logger.info("tfbatch: publishing stats again")
                self._failing = False
            finally:
                close_old_connections()
            stop.wait(get_monitoring().publish_interval or 1.0)

    def _at_exit(self) -> None:
        if self._wanted and self.identity.pid == os.getpid():
            self.stop(timeout=1.0)

    def _after_fork_in_child(self) -> None:
        wanted = self._wanted
        self._reset()
        if wanted:
            self.start()


publisher = Publisher()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=publisher._after_fork_in_child)
