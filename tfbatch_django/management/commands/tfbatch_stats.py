"""Print the dashboard's numbers: every model summed over live processes, then each process.

It reads what the serving processes published (this command's own process serves
nothing), so it shows exactly what the admin dashboard shows; ``--json`` prints the
dashboard's JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...monitoring.aggregate import dashboard_data
from ...monitoring.views import HOURS


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain-text columns: text left-aligned, numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], int | float) or row[i] is None for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)]).rstrip()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class Command(BaseCommand):
    help = "Batch statistics summed over the live serving processes (as on the admin dashboard)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("models", nargs="*", help="model names (default: all)")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print the dashboard's JSON instead of tables"
        )
        parser.add_argument(
            "--hours", type=int, choices=HOURS, default=HOURS[0], help="span of the history series in the JSON"
        )

    def handle(self, *args: Any, models: list[str], as_json: bool, hours: int, **options: Any) -> None:
        data = dashboard_data(hours=hours)
        unknown = [name for name in models if name not in data["models"]]
        if unknown:
            raise CommandError(f"unknown model(s): {', '.join(unknown)}; known: {', '.join(data['models']) or 'none'}")
        if models:
            data["models"] = {name: data["models"][name] for name in models}
            data["history"]["models"] = {name: data["history"]["models"][name] for name in models}
        if as_json:
            self.stdout.write(json.dumps(data, indent=2))
            return
        if not data["processes"]:
            self.stderr.write(
                f"No serving process published in the last {data['settings']['stale_after_s']:g}s "
                "(is start_publishing() in asgi.py, and migrate run?)."
            )
        self.stdout.write(self._models_table(data["models"]))
        for name, model in data["models"].items():
            for error in model["error_messages"]:
                self.stdout.write(f"{name}: {error}")
            sizes = ", ".join(f"{size}: {n}" for size, n in model["batch_size_histogram"].items())
            self.stdout.write(f"{name} batches by size (rows: batches): {sizes or '-'}")
        self.stdout.write("")
        self.stdout.write(self._processes_table(data["processes"], list(data["models"])))

    def _models_table(self, models: dict[str, Any]) -> str:
        columns: dict[str, Callable[[dict[str, Any]], Any]] = {
            "status": itemgetter("status"),
            "procs": itemgetter("processes"),
            "req/s": lambda m: m["recent"]["requests_per_s"],
            "rows/s": lambda m: m["recent"]["rows_per_s"],
            **{c: itemgetter(c) for c in ("requests", "completed", "batches")},
            "mean batch": itemgetter("mean_batch_size"),
            "padding": itemgetter("padding_share"),
            "queued": itemgetter("queue_depth"),
            **{f"e2e {q} ms": _end_to_end(q) for q in ("p50", "p95", "p99")},
            **{c: itemgetter(c) for c in ("rejected", "timeouts", "cancelled", "errors")},
        }
        rows = [(name, *(get(m) for get in columns.values())) for name, m in models.items()]
        return table(("model", *columns), rows)

    def _processes_table(self, processes: list[dict[str, Any]], names: list[str]) -> str:
        shown = ("status", "requests", "requests_per_s", "queue_depth", "p99_ms", "errors")
        rows = [
            (p["pid"], p["host"], p["age_s"], name, *(cell[key] for key in shown))
            for p in processes
            for name in names
            if (cell := p["models"].get(name))
        ]
        return table(
            ("pid", "host", "last seen s", "model", "status", "requests", "req/s", "queued", "p99 ms", "errors"), rows
        )


def _end_to_end(q: str) -> Callable[[dict[str, Any]], Any]:
    return lambda m: m["latency_ms"]["end_to_end"][f"{q}_ms"]
