"""The monitoring keys: admin dashboard, cross-process publishing, history, Prometheus."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .problems import Problem, is_number

__all__ = ["MONITORING_DEFAULTS", "MonitoringConfig", "parse_monitoring"]

MONITORING_DEFAULTS: dict[str, Any] = {
    "STATS_PUBLISH_INTERVAL": 5.0,  # seconds between a process's live snapshots; None: never publish
    "STATS_STALE_AFTER": 20.0,  # seconds without a snapshot before a process drops out of the sums
    "STATS_HISTORY_INTERVAL": 60.0,  # seconds between persisted history samples (per process and model)
    "STATS_RETENTION_HOURS": 24.0,  # history (and stopped processes) older than this is deleted
    "DASHBOARD_REFRESH_SECONDS": 5.0,  # how often the admin dashboard refreshes its figures
    "PROMETHEUS": False,  # feed prometheus_client metrics named tfbatch_* (extra "prometheus")
}


@dataclass(frozen=True)
class MonitoringConfig:
    """The monitoring keys (dashboard, history, Prometheus), in seconds unless named otherwise."""

    publish_interval: float | None = MONITORING_DEFAULTS["STATS_PUBLISH_INTERVAL"]
    stale_after: float = MONITORING_DEFAULTS["STATS_STALE_AFTER"]
    history_interval: float = MONITORING_DEFAULTS["STATS_HISTORY_INTERVAL"]
    retention_hours: float = MONITORING_DEFAULTS["STATS_RETENTION_HOURS"]
    refresh_seconds: float = MONITORING_DEFAULTS["DASHBOARD_REFRESH_SECONDS"]
    prometheus: bool = MONITORING_DEFAULTS["PROMETHEUS"]


def parse_monitoring(top: Mapping[str, Any], problems: list[Problem]) -> MonitoringConfig:
    """The monitoring keys; a bad value falls back to its default.

    Their problems are not ``fatal``: a mistyped refresh interval must not stop
    predictions, so ``manage.py check`` reports it and serving goes on.
    """

    def bad(id_: str, msg: str, hint: str | None = None) -> None:
        problems.append(Problem(id_, msg, hint, fatal=False))

    values: dict[str, Any] = {}
    for key in (
        "STATS_PUBLISH_INTERVAL",
        "STATS_STALE_AFTER",
        "STATS_HISTORY_INTERVAL",
        "STATS_RETENTION_HOURS",
        "DASHBOARD_REFRESH_SECONDS",
    ):
        value = top[key]
        if key == "STATS_PUBLISH_INTERVAL" and value is None:
            values[key] = None
        elif is_number(value) and value > 0:
            values[key] = float(value)
        else:
            maybe_none = " or None (never publish)" if key == "STATS_PUBLISH_INTERVAL" else ""
            bad("E020", f"TFBATCH[{key!r}] must be a positive number{maybe_none}, got {value!r}.")
            values[key] = float(MONITORING_DEFAULTS[key])
    interval = values["STATS_PUBLISH_INTERVAL"]
    if interval is not None and values["STATS_STALE_AFTER"] <= interval:
        bad(
            "E021",
            f"TFBATCH['STATS_STALE_AFTER'] ({values['STATS_STALE_AFTER']:g}s) must be longer than "
            f"STATS_PUBLISH_INTERVAL ({interval:g}s), or live processes drop out between two snapshots.",
            f"Use at least {3 * interval:g}s (three publish intervals).",
        )
        values["STATS_STALE_AFTER"] = 3 * interval
    if interval is not None and values["STATS_HISTORY_INTERVAL"] < interval:
        bad(
            "E022",
            f"TFBATCH['STATS_HISTORY_INTERVAL'] ({values['STATS_HISTORY_INTERVAL']:g}s) is shorter than "
            f"STATS_PUBLISH_INTERVAL ({interval:g}s); history samples are taken when a snapshot is published.",
            f"Set STATS_HISTORY_INTERVAL to {interval:g} or more.",
        )
        values["STATS_HISTORY_INTERVAL"] = interval
    prometheus = top["PROMETHEUS"]
    if not isinstance(prometheus, bool):
        bad("E023", f"TFBATCH['PROMETHEUS'] must be True or False, got {prometheus!r}.")
        prometheus = False
    elif prometheus and importlib.util.find_spec("prometheus_client") is None:
        bad(
            "E024",
            "TFBATCH['PROMETHEUS'] is True but prometheus_client is not installed.",
            'pip install "tfbatch-django[prometheus]"',
        )
        prometheus = False
    return MonitoringConfig(
        publish_interval=interval,
        stale_after=values["STATS_STALE_AFTER"],
        history_interval=values["STATS_HISTORY_INTERVAL"],
        retention_hours=values["STATS_RETENTION_HOURS"],
        refresh_seconds=values["DASHBOARD_REFRESH_SECONDS"],
        prometheus=prometheus,
    )
