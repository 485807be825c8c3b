"""Reads and writes of the monitoring tables; the only module that queries them.

Writes come from the publisher thread of each process (a handful of queries every few
seconds); reads from the dashboard and ``tfbatch_stats``.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..models import PublishedProcess, StatsSample

__all__ = [
    "ProcessIdentity",
    "live_processes",
    "mark_stopped",
    "prune",
    "recently_stopped",
    "samples_since",
    "save_history",
    "save_live",
]


@dataclass(frozen=True)
class ProcessIdentity:
    """Who publishes: unique per process start, since pids are reused after restarts."""

    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_at: datetime = field(default_factory=timezone.now)
    nonce: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def key(self) -> str:
        return f"{self.host}:{self.pid}:{self.nonce}"


def _jsonable(value: Any) -> Any:
    """Plain JSON: settings may hold paths or objects passed to a RUNNER factory."""
    return json.loads(json.dumps(value, default=str))


def save_live(identity: ProcessIdentity, now: datetime, stats: dict[str, Any]) -> None:
    PublishedProcess.objects.update_or_create(
        key=identity.key,
        defaults={
            "host": identity.host,
            "pid": identity.pid,
            "started_at": identity.started_at,
            "last_seen": now,
            "stopped_at": None,
            "stats": _jsonable(stats),
        },
    )


def mark_stopped(identity: ProcessIdentity, now: datetime) -> None:
    PublishedProcess.objects.filter(key=identity.key).update(stopped_at=now)


def save_history(identity: ProcessIdentity, now: datetime, windows: dict[str, dict[str, Any]]) -> None:
    """One sample per model; ``windows`` maps model name -> ``figures.window()`` (+ extras)."""
    StatsSample.objects.bulk_create(
        StatsSample(
            process=identity.key,
            host=identity.host,
            pid=identity.pid,
            model=name,
            at=now,
            seconds=data["seconds"],
            data=_jsonable({k: v for k, v in data.items() if k != "seconds"}),
        )
        for name, data in windows.items()
    )


def prune(now: datetime, retention_hours: float) -> int:
    """Delete history and process rows older than the retention; returns rows deleted."""
    cutoff = now - timedelta(hours=retention_hours)
    with transaction.atomic():
        samples, _ = StatsSample.objects.filter(at__lt=cutoff).delete()
        processes, _ = PublishedProcess.objects.filter(last_seen__lt=cutoff).delete()
    return samples + processes


def live_processes(now: datetime, stale_after: float) -> list[PublishedProcess]:
    """Processes that published within ``stale_after`` seconds and did not stop."""
    return list(
        PublishedProcess.objects.filter(last_seen__gte=now - timedelta(seconds=stale_after), stopped_at__isnull=True)
    )


def recently_stopped(now: datetime, stale_after: float, within: timedelta) -> list[PublishedProcess]:
    """Processes that dropped out during ``within``: stopped cleanly, or went silent."""
    stale = now - timedelta(seconds=stale_after)
    return list(
        PublishedProcess.objects.filter(last_seen__gte=now - within)
        .exclude(last_seen__gte=stale, stopped_at__isnull=True)
        .defer("stats")
        .order_by("-last_seen")
    )


def samples_since(since: datetime, models: list[str] | None = None) -> list[StatsSample]:
    queryset = StatsSample.objects.filter(at__gt=since)
    if models is not None:
        queryset = queryset.filter(model__in=models)
    return list(queryset.only("process", "model", "at", "seconds", "data"))
