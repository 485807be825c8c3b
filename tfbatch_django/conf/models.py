"""The per-model keys (``TFBATCH["MODELS"][name]`` and ``TFBATCH["DEFAULTS"]``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..batching.config import BatchConfig
from ..runners.config import RunnerConfig, detect_format
from ..runners.remote_http import check_url, redact_url
from .problems import Problem, is_int, is_number, suggest
from .workers import WORKER_NAME_RE

__all__ = ["MODEL_DEFAULTS", "PATH_HINT", "ModelConfig", "parse_model"]

#: Per-model keys and their defaults.
MODEL_DEFAULTS: dict[str, Any] = {
    "PATH": None,  # SavedModel directory (or TF Serving base dir of versions), or a .keras file
    "RUNNER": None,  # dotted path to a factory returning a Runner, instead of PATH
    "OPTIONS": {},  # keyword arguments for RUNNER
    "SIGNATURE": "serving_default",  # SavedModel only
    "MAX_BATCH_SIZE": 32,
    "MAX_LATENCY_MS": 5.0,
    "ALLOWED_BATCH_SIZES": None,
    "MAX_QUEUE_SIZE": 1024,
    "TIMEOUT_MS": None,  # default deadline of a request; None = no deadline
    "DEVICE": "auto",  # "auto", "cpu", "gpu", "gpu:N"
    "JIT_COMPILE": None,  # None: the framework's default (Keras: compiled on JAX); True/False force it
    "WARMUP": True,  # run every batch size once at load time
    "MAX_CONCURRENT_BATCHES": 1,  # >1 only for thread-safe runners (SavedModel, URL)
    "VERSION_LABELS": {},  # TF Serving's version labels: {"stable": 123} for /v1/models/<m>/labels/stable
    "WORKER": None,  # served by `manage.py tfbatch_worker <WORKER>` over the channel layer; None: in process
    "URL": None,  # instead of PATH: http://host:port/v2/models/<m> (KServe v2) or .../v1/models/<m> (TF Serving)
    "REMOTE_TIMEOUT_MS": 30000,  # URL only: limit of each call to the engine
}

#: Problems that make only that model fail when it loads (see ``Problem.fatal``).
_LOAD_TIME = frozenset({"E002", "E005", "E007", "E013", "W002"})

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DEVICE_RE = re.compile(r"^(auto|cpu|gpu)(:\d+)?$", re.IGNORECASE)


@dataclass(frozen=True)
class ModelConfig:
    """Everything about one configured model."""

    name: str
    runner: RunnerConfig
    batching: BatchConfig
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)
    worker: str | None = None  # the WORKER name serving it, or None (this process's batcher)

    def describe(self) -> dict[str, Any]:
        """The settings in force, JSON-ready, for stats and the admin page.

        ``OPTIONS`` shows its keys only: its values go to a project's own factory and may
        be secrets (tokens, URLs with passwords), and stats are written to the database.
        """
        described = {
            key: sorted(map(str, value)) if key == "OPTIONS" else _jsonable(value) for key, value in self.raw.items()
        }
        url = described.get("URL")
        if isinstance(url, str):
            described["URL"] = redact_url(url)
        return described


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)  # Path, and whatever else a setting holds


def parse_model(name: str, model_raw: Any, defaults: Mapping[str, Any], problems: list[Problem]) -> ModelConfig | None:
    where = f"TFBATCH['MODELS'][{name!r}]"
    before = len(problems)

    def bad(id_: str, msg: str, hint: str | None = None) -> None:
        level = "warning" if id_.startswith("W") else "error"
        problems.append(Problem(id_, f"{where}: {msg}", hint, level, fatal=id_ not in _LOAD_TIME, model=name))

    if not _NAME_RE.match(name):
        bad("E010", "model names may hold letters, digits, '_', '.' and '-' only (they appear in URLs).")
    if not isinstance(model_raw, Mapping):
        bad("E008", f"expected a dict of settings, got {type(model_raw).__name__}.")
        return None
    for key in model_raw:
        if key not in MODEL_DEFAULTS:
            bad(
                "E001",
                f"unknown key {key!r}.",
                suggest(key, MODEL_DEFAULTS) or "Known keys: " + ", ".join(MODEL_DEFAULTS) + ".",
            )
    cfg = {**MODEL_DEFAULTS, **{k: v for k, v in defaults.items() if k in MODEL_DEFAULTS}}
    cfg.update({k: v for k, v in model_raw.items() if k in MODEL_DEFAULTS})

    path = cfg["PATH"]
    runner = cfg["RUNNER"]
    if [path, runner, cfg["URL"]].count(None) != 2:
        bad(
            "E006",
            "set exactly one of PATH (a SavedModel directory or .keras file), RUNNER (a dotted path to a "
            "factory) or URL (a model on a KServe v2 engine or TF Serving).",
        )
    url_problem = None if cfg["URL"] is None else check_url(cfg["URL"])
    if url_problem:
        bad("E013", url_problem + ".", "Example: http://triton:8000/v2/models/resnet")
    if path is not None:
        if not isinstance(path, str | Path):
            bad("E008", f"PATH must be a string or pathlib.Path, got {type(path).__name__}.")
            path = None
        else:
            path = Path(path)
            _check_path(path, cfg, bad)
    if runner is not None:
        if not isinstance(runner, str):
            bad("E008", f"RUNNER must be a dotted path string, got {type(runner).__name__}.")
        else:
            _check_runner(runner, bad)
    if not isinstance(cfg["OPTIONS"], Mapping):
        bad("E008", f"OPTIONS must be a dict of keyword arguments, got {type(cfg['OPTIONS']).__name__}.")
    for key in ("MAX_BATCH_SIZE", "MAX_QUEUE_SIZE", "MAX_CONCURRENT_BATCHES"):
        if not (is_int(cfg[key]) and cfg[key] >= 1):
            bad("E003", f"{key} must be a positive integer, got {cfg[key]!r}.")
    if not (is_number(cfg["MAX_LATENCY_MS"]) and cfg["MAX_LATENCY_MS"] >= 0):
        bad("E003", f"MAX_LATENCY_MS must be a number >= 0, got {cfg['MAX_LATENCY_MS']!r}.")
    if cfg["TIMEOUT_MS"] is not None and not (is_number(cfg["TIMEOUT_MS"]) and cfg["TIMEOUT_MS"] > 0):
        bad("E003", f"TIMEOUT_MS must be a positive number or None, got {cfg['TIMEOUT_MS']!r}.")
    if not (is_number(cfg["REMOTE_TIMEOUT_MS"]) and cfg["REMOTE_TIMEOUT_MS"] > 0):
        bad("E003", f"REMOTE_TIMEOUT_MS must be a positive number, got {cfg['REMOTE_TIMEOUT_MS']!r}.")
    _check_allowed_sizes(cfg, bad)
    if not (isinstance(cfg["DEVICE"], str) and _DEVICE_RE.match(cfg["DEVICE"])):
        bad("E009", f"DEVICE must be 'auto', 'cpu', 'gpu' or 'gpu:N', got {cfg['DEVICE']!r}.")
    if not (cfg["JIT_COMPILE"] is None or isinstance(cfg["JIT_COMPILE"], bool)):
        bad(
            "E008",
            f"JIT_COMPILE must be True, False or None (the framework's default), got {cfg['JIT_COMPILE']!r}.",
        )
    labels = cfg["VERSION_LABELS"]
    if not (
        isinstance(labels, Mapping) and all(isinstance(k, str) and is_int(v) and v >= 0 for k, v in labels.items())
    ):
        bad("E008", f"VERSION_LABELS must be a dict of label -> version number, got {labels!r}.")
    worker = cfg["WORKER"]
    if worker is not None and not (isinstance(worker, str) and WORKER_NAME_RE.match(worker)):
        bad("E030", f"WORKER must be None or a name of letters, digits, '_', '.', '-' (under 80), got {worker!r}.")
    if not isinstance(cfg["SIGNATURE"], str):
        bad("E008", f"SIGNATURE must be a string, got {type(cfg['SIGNATURE']).__name__}.")
    if any(p.fatal for p in problems[before:]):
        return None
    allowed = cfg["ALLOWED_BATCH_SIZES"]
    return ModelConfig(
        name=name,
        runner=RunnerConfig(
            path=path,
            runner=runner,
            options=dict(cfg["OPTIONS"]),
            signature=cfg["SIGNATURE"],
            device=cfg["DEVICE"].lower(),
            jit_compile=cfg["JIT_COMPILE"],
            url=cfg["URL"] if isinstance(cfg["URL"], str) else None,
            remote_timeout=cfg["REMOTE_TIMEOUT_MS"] / 1000.0,
            connections=cfg["MAX_CONCURRENT_BATCHES"],
        ),
        batching=BatchConfig(
            max_batch_size=cfg["MAX_BATCH_SIZE"],
            max_latency=cfg["MAX_LATENCY_MS"] / 1000.0,
            allowed_batch_sizes=tuple(allowed) if allowed else (),
            max_queue_size=cfg["MAX_QUEUE_SIZE"],
            max_concurrent_batches=cfg["MAX_CONCURRENT_BATCHES"],
            default_timeout=None if cfg["TIMEOUT_MS"] is None else cfg["TIMEOUT_MS"] / 1000.0,
            warmup=bool(cfg["WARMUP"]),
        ),
        raw=cfg,
        worker=worker,
    )


#: The hint of E002 under ``check --deploy`` (a missing PATH), and the start of W002's.
PATH_HINT = "Point PATH at a SavedModel directory or a .keras file (absolute paths are safest)."


def _check_path(path: Path, cfg: Mapping[str, Any], bad: Callable[..., None]) -> None:
    if not path.exists():
        # A warning, not an error: models are often mounted after the image is built,
        # and an error would stop migrate and collectstatic. ``check --deploy`` and the
        # model's status when it loads report it as an error (see checks.py).
        later = "If it is mounted after this command runs, ignore this: the model loads once it is there."
        bad("W002", f"PATH {str(path)!r} does not exist.", f"{PATH_HINT} {later}")
        return
    if detect_format(path) == "keras":
        if not path.is_file():
            bad("E002", f"PATH {str(path)!r} ends in .keras but is not a file.")
        return
    from ..runners.savedmodel_meta import read_signatures

    try:
        signatures = read_signatures(path)
    except FileNotFoundError as exc:
        bad("E002", str(exc) + ".", "A SavedModel directory holds saved_model.pb; Keras archives must end in .keras.")
        return
    except (OSError, ValueError, IndexError) as exc:
        bad("E002", f"PATH {str(path)!r}: saved_model.pb could not be read ({exc}).")
        return
    signature = cfg["SIGNATURE"]
    if isinstance(signature, str) and signature not in signatures:
        bad(
            "E005",
            f"the SavedModel has no signature {signature!r}.",
            "Available signatures: " + (", ".join(sorted(signatures)) or "none") + ".",
        )


def _check_runner(runner: str, bad: Callable[..., None]) -> None:
    from ..runners.custom import import_dotted

    try:
        obj = import_dotted(runner)
    except Exception as exc:  # noqa: BLE001 - ImportError, or the module raising at import
        bad("E007", f"RUNNER {runner!r} cannot be imported: {exc}.")
        return
    if not callable(obj):
        bad("E007", f"RUNNER {runner!r} is a {type(obj).__name__}, not a callable factory.")


def _check_allowed_sizes(cfg: Mapping[str, Any], bad: Callable[..., None]) -> None:
    allowed = cfg["ALLOWED_BATCH_SIZES"]
    if allowed is None or allowed == []:
        return
    if not isinstance(allowed, list | tuple) or not all(is_int(s) and s >= 1 for s in allowed):
        bad("E004", f"ALLOWED_BATCH_SIZES must be a list of positive integers, got {allowed!r}.")
        return
    if list(allowed) != sorted(set(allowed)):
        bad("E004", f"ALLOWED_BATCH_SIZES must be strictly increasing, got {list(allowed)!r}.")
        return
    max_batch = cfg["MAX_BATCH_SIZE"]
    if is_int(max_batch) and allowed[-1] < max_batch:
        bad(
            "E004",
            f"ALLOWED_BATCH_SIZES {list(allowed)!r} does not reach MAX_BATCH_SIZE ({max_batch}).",
            f"Add {max_batch} to ALLOWED_BATCH_SIZES, or lower MAX_BATCH_SIZE to {allowed[-1]}.",
        )
