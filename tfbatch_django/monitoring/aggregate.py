"""The dashboard's data: every model summed over live processes, one row per process.

One function builds it, and the dashboard page, its JSON and ``manage.py tfbatch_stats``
all show what it returns, so they cannot disagree.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from ..conf import get_config, get_monitoring
from ..models import PublishedProcess
from . import figures, history, store
from .publisher import publisher

__all__ = ["STOPPED_WITHIN", "dashboard_data"]

#: How far back the dashboard lists processes that stopped publishing.
STOPPED_WITHIN = timedelta(hours=1)


def dashboard_data(*, hours: float = 1.0, now: datetime | None = None) -> dict[str, Any]:
    """Everything the dashboard shows, as JSON-ready data (``hours``: span of the charts)."""
    config = get_monitoring()
    now = now or timezone.now()
    live = store.live_processes(now, config.stale_after)
    names = _model_names(live)
    return {
        "generated_at": now.isoformat(),
        "settings": {
            "publish_interval_s": config.publish_interval,
            "stale_after_s": config.stale_after,
            "history_interval_s": config.history_interval,
            "retention_hours": config.retention_hours,
            "refresh_seconds": config.refresh_seconds,
        },
        "this_process": {"key": publisher.identity.key, "publishing": publisher.running},
        "models": {name: _model(name, [p.stats[name] for p in live if name in p.stats]) for name in names},
        "processes": [_process(p, now) for p in live],
        "stopped_processes": [
            {
                "key": p.key,
                "host": p.host,
                "pid": p.pid,
                "last_seen": p.last_seen.isoformat(),
                "stopped_at": p.stopped_at.isoformat() if p.stopped_at else None,
            }
            for p in store.recently_stopped(now, config.stale_after, STOPPED_WITHIN)
        ],
        "history": history.series(names, now, hours, config.history_interval),
    }


def _model_names(live: list[PublishedProcess]) -> list[str]:
    """Configured models first (in settings order), then any only other processes serve."""
    try:
        names = list(get_config().models)
    except ImproperlyConfigured:
        names = []
    for process in live:
        names.extend(name for name in process.stats if name not in names)
    return names


def _model(name: str, snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    statuses = Counter(s["status"] for s in snapshots)
    first = next((s for s in snapshots if s["runner"]), snapshots[0] if snapshots else None)
    settings = first["settings"] if first else _configured_settings(name)
    runner = first["runner"] if first else {}
    return {
        "status": next(iter(statuses)) if len(statuses) == 1 else ("mixed" if statuses else "no_data"),
        "statuses": dict(statuses),
        "error_messages": sorted({s["error"] for s in snapshots if s["error"]}),
        "processes": len(snapshots),
        "device": runner.get("device") or settings.get("DEVICE"),
        "signature": runner.get("signature"),
        "runner": runner,
        "settings": settings,
        "settings_differ": any(s["settings"] != settings for s in snapshots),
        **figures.sum_totals(snapshots),
        "recent": figures.sum_windows([s["window"] for s in snapshots]),
    }


def _configured_settings(name: str) -> dict[str, Any]:
    try:
        model = get_config().models.get(name)
    except ImproperlyConfigured:
        return {}
    return model.describe() if model else {}


def _process(process: PublishedProcess, now: datetime) -> dict[str, Any]:
    models = {}
    for name, snap in process.stats.items():
        recent = figures.sum_windows([snap["window"]])
        models[name] = {
            "status": snap["status"],
            "error": snap["error"],
            **{c: snap[c] for c in ("requests", "completed", "batches", "rejected", "timeouts", "errors")},
            "queue_depth": snap["queue_depth"],
            "mean_batch_size": snap["mean_batch_size"],
            "requests_per_s": recent["requests_per_s"],
            "rows_per_s": recent["rows_per_s"],
            "p99_ms": snap["latency_ms"]["end_to_end"]["p99_ms"],
        }
    return {
        "key": process.key,
        "host": process.host,
        "pid": process.pid,
        "started_at": process.started_at.isoformat(),
        "last_seen": process.last_seen.isoformat(),
        "age_s": round((now - process.last_seen).total_seconds(), 1),
        "models": models,
        "serves": _serves(process.stats),
    }


def _serves(stats: dict[str, Any]) -> dict[str, Any]:
    """What a process serves: a ``tfbatch_worker`` its WORKER's models, any other process its local ones.

    Read from the snapshots it published: a worker publishes the models whose ``WORKER``
    it is (their settings say which), a web process only the models it batches itself.
    """
    by_worker = {name: (snap.get("settings") or {}).get("WORKER") for name, snap in stats.items()}
    workers = sorted({str(w) for w in by_worker.values() if w})
    # A worker also publishes the models without WORKER (idle, never loaded there): not its job.
    models = sorted(name for name, w in by_worker.items() if w or not workers)
    return {"worker": workers[0] if len(workers) == 1 else (workers or None), "models": models}
