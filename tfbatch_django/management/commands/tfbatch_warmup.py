"""Load and warm up configured models now; exit non-zero if any fails.

Run it in a container's start script or a readiness probe, so a broken model stops a
deploy instead of failing the first user request.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...api import get_stats, warmup
from ...exceptions import ModelNotFound


class Command(BaseCommand):
    help = "Load and warm up TFBATCH models; exits with status 1 if any model fails to load."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("models", nargs="*", help="model names (default: all configured models)")
        parser.add_argument("--timeout", type=float, default=None, help="seconds to wait in all")

    def handle(self, *args: Any, models: list[str], timeout: float | None, **options: Any) -> None:
        try:
            statuses = warmup(models or None, timeout=timeout)
        except ModelNotFound as exc:
            raise CommandError(str(exc)) from None
        stats = get_stats()
        failed = []
        for name, status in statuses.items():
            snap = stats[name]
            if status == "ready":
                sizes = ", ".join(f"{w['size']}: {w['ms']:.1f} ms" for w in snap["warmup"] if "size" in w)
                detail = f"loaded in {snap['load_seconds']:.2f}s" + (f"; warm-up {sizes}" if sizes else "")
                self.stdout.write(self.style.SUCCESS(f"{name}: ready") + f" ({detail})")
            else:
                failed.append(name)
                self.stderr.write(self.style.ERROR(f"{name}: {status}") + f" {snap['error'] or '(timed out)'}")
        if failed:
            raise CommandError(f"{len(failed)} model(s) failed to load: {', '.join(failed)}")
