"""Importing and configuring TensorFlow: each case in a fresh process (tf_setup_probe.py),
since TensorFlow is imported and configured once per process."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tests.tf_models import TFSERVING

PROBE = [sys.executable, "-m", "tests.runners.tf_setup_probe"]
HALF_PLUS_TWO = str(TFSERVING / "saved_model_half_plus_two_cpu")
TF_LOG_LINE = re.compile(r"^[IW]\d{4} [\d:.]+ +\d+ \S+\.cc:\d+\] ")


def probe(*args: str, env: dict[str, str] | None = None) -> tuple[dict[str, object], str]:
    import os

    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [*PROBE, *args], capture_output=True, text=True, timeout=180, env={**environment, **(env or {})}
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_quiet_import_loses_nothing_another_thread_writes_to_stderr():
    report, stderr = probe("stderr")
    during = report["written_during_import"]
    assert len(during) > 10  # the other thread really wrote while TensorFlow imported
    lines = stderr.splitlines()
    theirs = [line for line in lines if line.startswith("other thread line ")]
    numbers = [int(line.rsplit(" ", 1)[1]) for line in theirs]
    assert numbers == list(range(len(numbers)))  # every line, in order
    assert set(during) <= set(numbers)
    # ... and TensorFlow's own import lines are gone.
    assert [line for line in lines if TF_LOG_LINE.match(line) or "absl::InitializeLog" in line] == []


def test_framework_settings_reach_tensorflow():
    tfbatch = {
        "INTRA_OP_THREADS": 1,
        "INTER_OP_THREADS": 2,
        "GPU_MEMORY_GROWTH": False,
        "QUIET_TENSORFLOW": False,
        "GC_FREEZE": False,
        "MODELS": {"hp2": {"PATH": HALF_PLUS_TWO}},
    }
    info, _ = probe("settings", json.dumps(tfbatch))
    assert info["answer"] == [[2.5]]
    # TensorFlow's own view of its thread pools, read back from TensorFlow.
    assert (info["intra_op_threads"], info["inter_op_threads"]) == (1, 2)
    assert info["configured_with"] == {
        "intra_op_threads": 1,
        "inter_op_threads": 2,
        "gpu_memory_growth": False,
        "quiet": False,
    }
    assert all(growth is False for growth in info["gpu_memory_growth"].values())  # on a GPU machine
    assert info["TF_CPP_MIN_LOG_LEVEL"] != "2"  # not quieted (TensorFlow itself may set "1")


def test_framework_defaults():
    info, _ = probe("settings", json.dumps({"GC_FREEZE": False, "MODELS": {"hp2": {"PATH": HALF_PLUS_TWO}}}))
    assert info["configured_with"] == {
        "intra_op_threads": None,
        "inter_op_threads": None,
        "gpu_memory_growth": True,
        "quiet": True,
    }
    assert (info["intra_op_threads"], info["inter_op_threads"]) == (0, 0)  # TensorFlow's "choose for me"
    assert all(growth is True for growth in info["gpu_memory_growth"].values())
    assert info["TF_CPP_MIN_LOG_LEVEL"] == "2"
