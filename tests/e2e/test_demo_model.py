"""The demo's training command: stable names in the export, and ``--if-missing``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.servers import ROOT
from tfbatch_django.runners.savedmodel_meta import TensorMeta, read_signatures


def test_the_export_has_stable_names(demo_model: Path) -> None:
    signature = read_signatures(demo_model)["serving_default"]
    assert signature.inputs == (TensorMeta("pixels", "float32", (None, 8, 8), "serving_default_pixels:0"),)
    [output] = signature.outputs
    assert (output.name, output.dtype, output.shape) == ("probabilities", "float32", (None, 10))


def test_if_missing_keeps_an_existing_model_and_runs_despite_failing_checks(demo_model: Path) -> None:
    before = (demo_model / "saved_model.pb").stat().st_mtime_ns
    # The demo's configured model is missing (check W002): the command must run anyway.
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "demo_project.settings"}
    env["TFBATCH_DEMO_MODEL_DIR"] = str(demo_model.parent / "missing")
    done = subprocess.run(
        [sys.executable, "manage.py", "tfbatch_demo_model", "--if-missing", "--path", str(demo_model)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stdout.strip()) == (0, f"The demo model is already at {demo_model}.")
    assert (demo_model / "saved_model.pb").stat().st_mtime_ns == before
