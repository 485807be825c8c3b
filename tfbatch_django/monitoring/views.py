"""The dashboard's views: the page, its live fragment (re-fetched every few seconds) and JSON.

Access control is the admin's (see ``tfbatch_django.admin``); these functions assume
it passed. The page and the fragment are rendered by the same template, so what the
first paint shows and what the refreshes show cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse

from ..conf import get_monitoring
from .aggregate import dashboard_data
from .charts import batch_size_chart, history_charts

__all__ = ["HOURS", "dashboard", "data", "latency_text", "live"]

#: Chart spans offered on the page, in hours (the longest one is what retention must keep).
HOURS = (1, 6, 24)

STATUS_LABELS = {
    "not_loaded": "not loaded",
    "loading": "loading",
    "warming": "warming",
    "ready": "ready",
    "failed": "failed",
    "mixed": "mixed",
    "no_data": "no live process",
}

LATENCY_ROWS = (("queue_wait", "queue wait"), ("run", "model run (per batch)"), ("end_to_end", "end to end"))


def latency_text(ms: float | None) -> str:
    """A latency in milliseconds as the page shows it: three significant figures at most.

    Percentiles are read at the upper edge of a log bucket (up to ~19 % high), so more
    digits than that would be noise: 0.538, 4.31, 57.2, 612, 1,234.
    """
    if ms is None:
        return "\u2013"
    if ms < 0.001:
        return "0" if ms == 0 else "<0.001"
    if ms >= 100:
        return f"{ms:,.0f}"
    return f"{ms:.3g}"


def _latencies(figures: dict[str, Any]) -> dict[str, str]:
    return {key: latency_text(figures.get(key)) for key in ("p50_ms", "p95_ms", "p99_ms", "mean_ms")}


def _error_parts(message: str) -> tuple[str, str]:
    """An error's first line, shown; the rest (a traceback TensorFlow put in its message) folds away."""
    first, _, rest = message.strip().partition("\n")
    return first, rest.strip()


def chart_hours(request: HttpRequest) -> int:
    """The requested chart span, limited to the offered ones."""
    try:
        hours = int(request.GET.get("hours", HOURS[0]))
    except ValueError:
        hours = HOURS[0]
    return hours if hours in HOURS else HOURS[0]


def live_context(request: HttpRequest) -> dict[str, Any]:
    hours = chart_hours(request)
    data = dashboard_data(hours=hours)
    names = list(data["models"])
    cards = []
    for name, model in data["models"].items():
        cards.append(
            {
                "name": name,
                "m": model,
                "status_label": STATUS_LABELS.get(model["status"], model["status"]),
                "statuses": [(STATUS_LABELS.get(s, s), s, n) for s, n in model["statuses"].items()],
                "latency": [
                    (label, _latencies(model["recent"]["latency_ms"][key]), _latencies(model["latency_ms"][key]))
                    for key, label in LATENCY_ROWS
                ],
                "errors": [_error_parts(message) for message in model["error_messages"]],
                "sizes": batch_size_chart(
                    model["batch_size_histogram"], int(model["settings"].get("MAX_BATCH_SIZE", 1))
                ),
                "charts": history_charts(data["history"]["models"][name], data["history"]),
            }
        )
    processes = [
        {
            **process,
            "started": datetime.fromisoformat(process["started_at"]),
            "serves_text": _serves_text(process["serves"]),
            "rows": [
                (
                    name,
                    {
                        **cell,
                        "status_label": STATUS_LABELS.get(cell["status"], cell["status"]),
                        "p99_text": latency_text(cell["p99_ms"]),
                    },
                )
                for name in names
                if (cell := process["models"].get(name))
            ],
        }
        for process in data["processes"]
    ]
    return {
        "data": data,
        "cards": cards,
        "processes": processes,
        "stopped": [{**p, "seen": datetime.fromisoformat(p["last_seen"])} for p in data["stopped_processes"]],
        "updated": datetime.fromisoformat(data["generated_at"]),
        "hours": hours,
        "hours_choices": HOURS,
    }


def _serves_text(serves: dict[str, Any]) -> str:
    """``worker 'gpu': resnet, bert`` for a tfbatch_worker, ``in process: local`` for any other."""
    models = ", ".join(serves["models"]) or "nothing"
    worker = serves["worker"]
    if worker is None:
        return f"in process: {models}"
    names = ", ".join(repr(w) for w in ([worker] if isinstance(worker, str) else worker))
    return f"worker {names}: {models}"


def dashboard(request: HttpRequest, admin_context: dict[str, Any]) -> HttpResponse:
    context = {**admin_context, **live_context(request), "refresh_seconds": get_monitoring().refresh_seconds}
    return TemplateResponse(request, "admin/tfbatch_django/dashboard.html", context)


def live(request: HttpRequest) -> HttpResponse:
    return TemplateResponse(request, "admin/tfbatch_django/dashboard_live.html", live_context(request))


def data(request: HttpRequest) -> JsonResponse:
    return JsonResponse(dashboard_data(hours=chart_hours(request)))
