"""Tables for the admin dashboard: one live row per serving process, and history samples.

The database is the meeting point of the worker processes (see README, "Publishing"):
every process with a publisher upserts its own ``PublishedProcess`` row every few
seconds and appends ``StatsSample`` rows at the history interval; the dashboard reads
both. ``Dashboard`` has no table: it exists for its admin entry and view permission.
"""

from __future__ import annotations

from django.db import models


class Dashboard(models.Model):
    """The admin entry of the batching dashboard; unmanaged, so it has no table.

    Its only permission, ``tfbatch_django.view_dashboard``, decides who sees the page
    (superusers always do).
    """

    class Meta:
        managed = False
        default_permissions = ("view",)
        verbose_name = "batching dashboard"
        verbose_name_plural = "batching dashboard"

    def __str__(self) -> str:
        return "batching dashboard"


class PublishedProcess(models.Model):
    """The latest statistics of one serving process, replaced at each publish."""

    key = models.CharField(max_length=128, unique=True, help_text="host:pid:random, unique per process start")
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)
    #: Set when the process stopped publishing on purpose (it exited cleanly).
    stopped_at = models.DateTimeField(null=True, blank=True)
    #: Model name -> ``get_stats()`` of that model in this process, plus ``window``:
    #: what changed since the previous snapshot (for rates and recent percentiles).
    stats = models.JSONField(default=dict)

    class Meta:
        default_permissions = ()
        ordering = ("host", "pid")

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}"


class StatsSample(models.Model):
    """What one process did with one model during one history interval (deltas, not totals)."""

    process = models.CharField(max_length=128, help_text="PublishedProcess.key of the writer")
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    model = models.CharField(max_length=200)
    at = models.DateTimeField(db_index=True, help_text="end of the interval")
    seconds = models.FloatField(help_text="length of the interval")
    #: ``{"counters": {name: delta}, "histograms": {name: sparse bucket deltas}, "queue_depth": n}``
    data = models.JSONField(default=dict)

    class Meta:
        default_permissions = ()
        ordering = ("at",)

    def __str__(self) -> str:
        return f"{self.model} @ {self.host}:{self.pid} {self.at:%Y-%m-%d %H:%M:%S}"


from .apikeys import ApiKey as ApiKey  # noqa: E402 - the API keys' table (defined beside their use)
