"""Train the demo's digit model and export it as a SavedModel (see ``demo.training``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Train the demo digit classifier on scikit-learn's 8x8 digits and export it as a SavedModel."
    # The model is what this command creates: the check that PATH exists (W002) must not stop it.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--path", type=Path, default=None, help="where to write it (default: the 'digits' model's PATH)"
        )
        parser.add_argument("--if-missing", action="store_true", help="do nothing if the model is already there")
        parser.add_argument("--epochs", type=int, default=20)

    def handle(self, *args: Any, path: Path | None, if_missing: bool, epochs: int, **options: Any) -> None:
        configured: dict[str, Any] = settings.TFBATCH
        target = Path(path or configured["MODELS"]["digits"]["PATH"])
        if if_missing and (target / "saved_model.pb").is_file():
            self.stdout.write(f"The demo model is already at {target}.")
            return
        from ...training import train_and_export

        self.stdout.write(f"Training the demo model on scikit-learn's digits into {target} ...")
        report = train_and_export(target, epochs=epochs)
        self.stdout.write(
            self.style.SUCCESS(
                f"Exported {report.path} in {report.seconds:.1f}s: {report.train_rows} training images, "
                f"test accuracy {report.test_accuracy:.1%}."
            )
        )
