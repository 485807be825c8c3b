from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

ROOT = Path(__file__).resolve().parents[2]
FAKES = {
    "MODELS": {
        "double": {"RUNNER": "tests.fakes.double_runner", "MAX_BATCH_SIZE": 4, "ALLOWED_BATCH_SIZES": [2, 4]},
        "broken": {"RUNNER": "tests.fakes.broken_factory"},
    }
}


@override_settings(TFBATCH=FAKES)
def test_reports_each_model():
    out = StringIO()
    call_command("tfbatch_warmup", "double", stdout=out)
    assert out.getvalue().startswith("double: ready (loaded in ")
    assert "warm-up 2: " in out.getvalue()


@override_settings(TFBATCH=FAKES)
def test_failure_is_a_command_error():
    err = StringIO()
    with pytest.raises(CommandError, match=r"1 model\(s\) failed to load: broken"):
        call_command("tfbatch_warmup", stdout=StringIO(), stderr=err)
    assert "broken: failed model 'broken': RUNNER 'tests.fakes.broken_factory' raised" in err.getvalue()


@override_settings(TFBATCH=FAKES)
def test_unknown_model_name():
    with pytest.raises(CommandError, match="no model named 'nope'"):
        call_command("tfbatch_warmup", "nope", stdout=StringIO())


def test_exit_status_in_a_real_process(tmp_path):
    settings_module = tmp_path / "warmup_settings.py"
    settings_module.write_text(
        "from tests.settings import *\n"
        "TFBATCH = {'MODELS': {'double': {'RUNNER': 'tests.fakes.double_runner'},"
        " 'broken': {'RUNNER': 'tests.fakes.broken_factory'}}}\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "warmup_settings", "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    failing = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "tfbatch_warmup"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failing.returncode == 1
    assert "double: ready" in failing.stdout
    assert "broken: failed" in failing.stderr
    passing = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "tfbatch_warmup", "double"], env=env, capture_output=True, timeout=120
    )
    assert passing.returncode == 0
