"""System checks: each id, with the exact message and hint users read."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import Error, Warning
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from tfbatch_django.checks import check_settings
from tfbatch_django.conf import get_config

ROOT = Path(__file__).resolve().parents[1]
TFSERVING = ROOT.parent / "shared" / "testdata" / "tfserving"
HALF_PLUS_TWO = TFSERVING / "saved_model_half_plus_two_cpu"


def run(tfbatch: object) -> list[tuple[str, str, str | None]]:
    with override_settings(TFBATCH=tfbatch):
        return [(m.id, m.msg, m.hint) for m in check_settings()]


def model(**keys: object) -> dict[str, object]:
    return {"MODELS": {"m": {"RUNNER": "tests.fakes.double_runner", **keys}}}


def test_valid_settings_pass():
    assert run(model(MAX_BATCH_SIZE=8, ALLOWED_BATCH_SIZES=[1, 4, 8])) == []
    assert run({"MODELS": {"hp2": {"PATH": HALF_PLUS_TWO}}}) == []
    assert run(None) == []


def test_e001_unknown_keys_suggest_the_closest():
    assert run(model(MAX_BATCH=8)) == [
        ("tfbatch_django.E001", "TFBATCH['MODELS']['m']: unknown key 'MAX_BATCH'.", "Did you mean 'MAX_BATCH_SIZE'?")
    ]
    assert run({"MODEL": {}}) == [
        ("tfbatch_django.E001", "TFBATCH has an unknown key 'MODEL'.", "Did you mean 'MODELS'?")
    ]
    [(cid, msg, _)] = run({"DEFAULTS": {"MAX_LATENCY": 3}})
    assert (cid, msg) == ("tfbatch_django.E001", "TFBATCH['DEFAULTS'] has an unknown key 'MAX_LATENCY'.")


def test_w002_missing_path_is_only_a_warning():
    # Models are often mounted after the image is built: migrate and collectstatic must run.
    with override_settings(TFBATCH={"MODELS": {"m": {"PATH": "/nope/model"}}}):
        messages = check_settings()
    assert [(type(m), m.id, m.msg, m.hint) for m in messages] == [
        (
            Warning,
            "tfbatch_django.W002",
            "TFBATCH['MODELS']['m']: PATH '/nope/model' does not exist.",
            "Point PATH at a SavedModel directory or a .keras file (absolute paths are safest). "
            "If it is mounted after this command runs, ignore this: the model loads once it is there.",
        )
    ]


def test_e002_missing_path_under_check_deploy():
    from django.core import checks

    with override_settings(TFBATCH={"MODELS": {"m": {"PATH": "/nope/model"}}}):
        normal = checks.run_checks(tags=["tfbatch_django"])
        deploy = checks.run_checks(tags=["tfbatch_django"], include_deployment_checks=True)
    assert [m.id for m in normal] == ["tfbatch_django.W002"]
    assert sorted((m.id, type(m).__name__) for m in deploy) == [
        ("tfbatch_django.E002", "Error"),
        ("tfbatch_django.W002", "Warning"),
    ]
    [error] = [m for m in deploy if m.id == "tfbatch_django.E002"]
    assert error.msg == "TFBATCH['MODELS']['m']: PATH '/nope/model' does not exist."
    with override_settings(TFBATCH={"MODELS": {"hp2": {"PATH": HALF_PLUS_TWO}}}):
        assert checks.run_checks(tags=["tfbatch_django"], include_deployment_checks=True) == []


def test_a_missing_model_file_fails_only_that_model_when_it_loads(tmp_path):
    from tfbatch_django import ModelLoadError, get_stats, predict_sync, warmup

    later = tmp_path / "later"
    settings = {"MODELS": {"later": {"PATH": later}, "ok": {"RUNNER": "tests.fakes.double_runner"}}}
    with override_settings(TFBATCH=settings):
        assert warmup() == {"later": "failed", "ok": "ready"}
        with pytest.raises(ModelLoadError, match=f"model 'later' cannot load: PATH '{later}' does not exist"):
            predict_sync("later", [[1.0]])
        assert get_stats("later")["later"]["error"] == f"model 'later' cannot load: PATH '{later}' does not exist"
        assert predict_sync("ok", [[1.0, 2.0, 3.0]]).tolist() == [[2.0, 4.0, 6.0]]


def test_a_model_mounted_after_the_settings_were_read_loads(tmp_path):
    from tfbatch_django import predict_sync

    later = tmp_path / "later"
    with override_settings(TFBATCH={"MODELS": {"later": {"PATH": later}}}):
        assert [m.id for m in check_settings()] == ["tfbatch_django.W002"]  # parsed while missing
        shutil.copytree(HALF_PLUS_TWO, later)
        assert predict_sync("later", [[1.0]]).tolist() == [[2.5]]


@pytest.mark.parametrize("command", [["migrate", "--noinput"], ["collectstatic", "--noinput"]])
def test_migrate_and_collectstatic_run_before_the_model_is_mounted(tmp_path, command):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.deploy_settings",
        "TFBATCH_TEST_DB": str(tmp_path / "db.sqlite3"),
        "TFBATCH_TEST_STATIC_ROOT": str(tmp_path / "static"),
        "TFBATCH_TEST_MISSING_MODEL": str(tmp_path / "models" / "later"),
    }
    done = subprocess.run(
        [sys.executable, "manage.py", *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    if command[0] == "migrate":  # collectstatic runs the staticfiles checks only
        assert "tfbatch_django.W002" in done.stderr  # reported, not fatal
    deploy = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--tag", "tfbatch_django"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert deploy.returncode == 1
    assert "tfbatch_django.E002" in deploy.stderr


def test_e002_directory_without_a_savedmodel(tmp_path):
    [(cid, msg, _)] = run({"MODELS": {"m": {"PATH": tmp_path}}})
    assert cid == "tfbatch_django.E002"
    assert msg == (
        f"TFBATCH['MODELS']['m']: {tmp_path} is not a SavedModel: no saved_model.pb in it, "
        "nor in a numbered version directory under it."
    )


def test_e003_non_positive_sizes():
    assert run(model(MAX_BATCH_SIZE=0, MAX_QUEUE_SIZE=-1, MAX_LATENCY_MS=-5, TIMEOUT_MS=0)) == [
        ("tfbatch_django.E003", "TFBATCH['MODELS']['m']: MAX_BATCH_SIZE must be a positive integer, got 0.", None),
        ("tfbatch_django.E003", "TFBATCH['MODELS']['m']: MAX_QUEUE_SIZE must be a positive integer, got -1.", None),
        ("tfbatch_django.E003", "TFBATCH['MODELS']['m']: MAX_LATENCY_MS must be a number >= 0, got -5.", None),
        ("tfbatch_django.E003", "TFBATCH['MODELS']['m']: TIMEOUT_MS must be a positive number or None, got 0.", None),
    ]


def test_e004_allowed_sizes_must_reach_max_batch_size():
    assert run(model(MAX_BATCH_SIZE=64, ALLOWED_BATCH_SIZES=[1, 8, 32])) == [
        (
            "tfbatch_django.E004",
            "TFBATCH['MODELS']['m']: ALLOWED_BATCH_SIZES [1, 8, 32] does not reach MAX_BATCH_SIZE (64).",
            "Add 64 to ALLOWED_BATCH_SIZES, or lower MAX_BATCH_SIZE to 32.",
        )
    ]
    [(_, msg, _)] = run(model(ALLOWED_BATCH_SIZES=[8, 4, 32]))
    assert msg == "TFBATCH['MODELS']['m']: ALLOWED_BATCH_SIZES must be strictly increasing, got [8, 4, 32]."


def test_e005_unknown_signature_lists_available():
    assert run({"MODELS": {"hp2": {"PATH": HALF_PLUS_TWO, "SIGNATURE": "predict"}}}) == [
        (
            "tfbatch_django.E005",
            "TFBATCH['MODELS']['hp2']: the SavedModel has no signature 'predict'.",
            "Available signatures: classify_x_to_y, regress_x2_to_y3, regress_x_to_y, regress_x_to_y2, "
            "serving_default.",
        )
    ]


def test_e006_path_or_runner():
    msg = (
        "TFBATCH['MODELS']['m']: set exactly one of PATH (a SavedModel directory or .keras file), "
        "RUNNER (a dotted path to a factory) or URL (a model on a KServe v2 engine or TF Serving)."
    )
    assert run({"MODELS": {"m": {}}}) == [("tfbatch_django.E006", msg, None)]
    url = "http://127.0.0.1:9/v2/models/m"
    assert run(model(URL=url)) == [("tfbatch_django.E006", msg, None)]
    assert run({"MODELS": {"m": {"PATH": HALF_PLUS_TWO, "URL": url}}}) == [("tfbatch_django.E006", msg, None)]


def test_e007_runner_not_importable():
    [(cid, msg, _)] = run({"MODELS": {"m": {"RUNNER": "tests.fakes.no_such_factory"}}})
    assert cid == "tfbatch_django.E007"
    assert msg == (
        "TFBATCH['MODELS']['m']: RUNNER 'tests.fakes.no_such_factory' cannot be imported: "
        "module 'tests.fakes' has no attribute 'no_such_factory'."
    )
    assert run({"MODELS": {"m": {"RUNNER": "tests.fakes.NOT_CALLABLE"}}}) == [
        (
            "tfbatch_django.E007",
            "TFBATCH['MODELS']['m']: RUNNER 'tests.fakes.NOT_CALLABLE' is a int, not a callable factory.",
            None,
        )
    ]


def test_e003_gil_switch_interval():
    assert run({"GIL_SWITCH_INTERVAL_MS": 0}) == [
        ("tfbatch_django.E003", "TFBATCH['GIL_SWITCH_INTERVAL_MS'] must be a number in (0, 100] or None, got 0.", None)
    ]


def test_e008_wrong_structure():
    assert run(["m"]) == [("tfbatch_django.E008", "TFBATCH must be a dict, got list.", None)]
    assert run({"MODELS": {"m": "path"}}) == [
        ("tfbatch_django.E008", "TFBATCH['MODELS']['m']: expected a dict of settings, got str.", None)
    ]


def test_e008_jit_compile_is_true_false_or_none():
    with override_settings(TFBATCH=model()):
        assert get_config().models["m"].runner.jit_compile is None  # the framework's default
    for value in (None, True, False):
        assert run(model(JIT_COMPILE=value)) == []
    for value in ("auto", 1):
        assert run(model(JIT_COMPILE=value)) == [
            (
                "tfbatch_django.E008",
                "TFBATCH['MODELS']['m']: JIT_COMPILE must be True, False or None (the framework's default), "
                f"got {value!r}.",
                None,
            )
        ]


def test_e008_version_labels_map_labels_to_version_numbers():
    assert run(model(VERSION_LABELS={"stable": 1, "canary": 2})) == []
    for labels in ([1], {"stable": "1"}, {"stable": -1}):
        [(cid, msg, _)] = run(model(VERSION_LABELS=labels))
        assert (cid, msg) == (
            "tfbatch_django.E008",
            f"TFBATCH['MODELS']['m']: VERSION_LABELS must be a dict of label -> version number, got {labels!r}.",
        )


def test_e009_device():
    [(cid, msg, _)] = run(model(DEVICE="tpu"))
    assert (cid, msg) == (
        "tfbatch_django.E009",
        "TFBATCH['MODELS']['m']: DEVICE must be 'auto', 'cpu', 'gpu' or 'gpu:N', got 'tpu'.",
    )


def test_e010_model_name_must_be_url_safe():
    [(cid, msg, _)] = run({"MODELS": {"my model": {"RUNNER": "tests.fakes.double_runner"}}})
    assert cid == "tfbatch_django.E010"
    assert "model names may hold letters, digits" in msg


def test_checks_are_django_errors_registered_under_the_app_tag():
    from django.core import checks

    with override_settings(TFBATCH=model(MAX_BATCH_SIZE=0)):
        messages = checks.run_checks(tags=["tfbatch_django"])
    assert [type(m) for m in messages] == [Error]


def test_structural_errors_stop_predictions_load_time_errors_do_not():
    error = r"tfbatch_django.E003: .*MAX_BATCH_SIZE must be a positive"
    with override_settings(TFBATCH=model(MAX_BATCH_SIZE=0)), pytest.raises(ImproperlyConfigured, match=error):
        get_config()
    with override_settings(
        TFBATCH={"MODELS": {"gone": {"PATH": "/nope"}, "ok": {"RUNNER": "tests.fakes.double_runner"}}}
    ):
        assert set(get_config().models) == {"gone", "ok"}


def test_defaults_apply_to_every_model():
    settings = {
        "DEFAULTS": {"MAX_BATCH_SIZE": 16, "TIMEOUT_MS": 250},
        "MODELS": {
            "a": {"RUNNER": "tests.fakes.double_runner"},
            "b": {"RUNNER": "tests.fakes.double_runner", "MAX_BATCH_SIZE": 4},
        },
    }
    with override_settings(TFBATCH=settings):
        models = get_config().models
    assert models["a"].batching.max_batch_size == 16
    assert models["b"].batching.max_batch_size == 4
    assert models["a"].batching.default_timeout == 0.25


def test_e013_url_must_name_a_model_on_a_v2_engine():
    assert run({"MODELS": {"m": {"URL": "http://127.0.0.1:8000/v2/models/resnet"}}}) == []
    assert run({"MODELS": {"m": {"URL": "https://user:pw@engine.example/prefix/v2/models/r/versions/3"}}}) == []
    assert run({"MODELS": {"m": {"URL": "http://tfs:8501/v1/models/m/labels/stable"}}}) == []
    hint = "Example: http://triton:8000/v2/models/resnet"
    bad_path = "must name a model on an engine, with no query: "
    shape = (
        "http(s)://host:port/v2/models/<model>[/versions/<version>] (KServe v2), or "
        "http(s)://host:port/v1/models/<model>[/versions/<version> or /labels/<label>] (TF Serving REST)."
    )
    cases = {
        "ftp://h/v2/models/m": "URL 'ftp://h/v2/models/m' must start with http:// or https:// and name a host.",
        "http:///v2/models/m": "URL 'http:///v2/models/m' must start with http:// or https:// and name a host.",
        "http://h:99999/v2/models/m": "URL 'http://h:99999/v2/models/m' is malformed (Port out of range 0-65535).",
        "http://h/v3/models/m": f"URL 'http://h/v3/models/m' {bad_path}{shape}",
        "http://h/v2/models/m/infer": f"URL 'http://h/v2/models/m/infer' {bad_path}{shape}",
        "http://h/v2/models/m?x=1": f"URL 'http://h/v2/models/m?x=1' {bad_path}{shape}",
        "http://u:secret@h/v2": f"URL 'http://u:***@h/v2' {bad_path}{shape}",
        42: "URL must be a string, got int.",
    }
    for url, message in cases.items():
        assert run({"MODELS": {"m": {"URL": url}}}) == [
            ("tfbatch_django.E013", f"TFBATCH['MODELS']['m']: {message}", hint)
        ], url
    # Load-time: the other models keep serving, this one reports why it failed.
    with override_settings(TFBATCH={"MODELS": {"m": {"URL": "http://h/v3/models/m"}}}):
        assert get_config().models["m"].runner.url == "http://h/v3/models/m"


def test_remote_timeout_must_be_positive():
    [(cid, msg, _)] = run({"MODELS": {"m": {"URL": "http://h/v2/models/m", "REMOTE_TIMEOUT_MS": 0}}})
    assert (cid, msg) == (
        "tfbatch_django.E003",
        "TFBATCH['MODELS']['m']: REMOTE_TIMEOUT_MS must be a positive number, got 0.",
    )
