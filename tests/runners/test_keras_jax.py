"""The same Keras runner on the JAX backend (how GPU runs are checked without TensorFlow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("jax", reason="the JAX backend check needs jax (installed by the test extra)")

ROOT = Path(__file__).resolve().parents[2]


def test_keras_runner_on_jax_matches_tensorflow_and_never_compiles_during_requests(classifier, tmp_path):
    images = np.random.default_rng(5).random((37, 8, 8, 1), dtype=np.float32)
    np.save(tmp_path / "in.npy", images)
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "runners" / "keras_jax_probe.py"),
            str(classifier.keras_path),
            str(tmp_path / "in.npy"),
            str(tmp_path / "out.npy"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["backend"] == "jax"
    assert report["warmup_sizes"] == [4, 8]
    assert report["compiles_during_warmup"] > 0
    # Padding to the allowed sizes, warmed up at load: no request paid for a compile.
    assert report["compiles_during_requests"] == 0
    # Batches are staged (jax.device_put) on the staging thread before the model runs.
    assert report["staging"] is True
    assert report["staged_types"] == ["jaxlib"]
    expected = classifier.direct(images).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=1e-4, atol=1e-5)


def test_keras_model_with_default_settings_runs_compiled_on_jax(tmp_path):
    """A layer's Python ``call`` runs on every model call op by op, and never once a compiled shape is traced."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "runners" / "keras_jax_jit_probe.py"), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    default, off, on = report["default"], report["off"], report["on"]
    assert default["backend"] == "jax"
    assert (default["setting"], default["jit_compile"], default["jit_compile_source"]) == (None, True, "Keras default")
    assert default["calls_during_requests"] == 0  # traced at warm-up, then only the compiled function runs
    assert (off["jit_compile"], off["jit_compile_source"]) == (False, "JIT_COMPILE")
    assert off["calls_during_requests"] == 9  # op by op: one Python call per model call (9 requests of <= 8 rows)
    assert (on["jit_compile"], on["calls_during_requests"]) == (True, 0)
    np.testing.assert_allclose(default["outputs"], off["outputs"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(default["outputs"], on["outputs"], rtol=1e-5, atol=1e-6)
