"""``settings.TFBATCH``, parsed once into frozen dataclasses.

The parser never raises on bad values: it collects ``Problem``s, which the system
checks report (with ids ``tfbatch_django.E0xx``) and ``get_config()`` turns into
``ImproperlyConfigured``. One parser, so the checks and the runtime can never disagree
about what a setting means. The parsed result is cached and dropped on Django's
``setting_changed`` signal (tests using ``override_settings`` see their values).

Settings reference (README has the long form)::

    TFBATCH = {
        "MODELS": {"<name>": {<model keys>}},
        "DEFAULTS": {<model keys applied to every model>},
        "INTRA_OP_THREADS": None, "INTER_OP_THREADS": None,   # TensorFlow thread pools
        "GPU_MEMORY_GROWTH": True, "QUIET_TENSORFLOW": True,
        "PERMISSION": "authenticated",                      # who may predict over HTTP/WebSocket
        "MAX_REQUEST_BYTES": 2_621_440, "MAX_IN_FLIGHT_PER_SOCKET": 64,
    }
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .batching.config import BatchConfig
from .runners.config import FrameworkOptions, RunnerConfig, detect_format

__all__ = ["MODEL_DEFAULTS", "TOP_LEVEL_DEFAULTS", "ModelConfig", "Problem", "TFBatchConfig", "get_config", "parse"]

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
    "JIT_COMPILE": False,  # XLA; give ALLOWED_BATCH_SIZES too, it compiles per shape
    "WARMUP": True,  # run every batch size once at load time
    "MAX_CONCURRENT_BATCHES": 1,  # >1 only for thread-safe runners (SavedModel)
}

#: Top-level keys (besides MODELS and DEFAULTS) and their defaults.
TOP_LEVEL_DEFAULTS: dict[str, Any] = {
    "INTRA_OP_THREADS": None,
    "INTER_OP_THREADS": None,
    "GPU_MEMORY_GROWTH": True,
    "QUIET_TENSORFLOW": True,
    # Serving (WebSocket/HTTP)
    "PERMISSION": "authenticated",  # "authenticated", "staff", "any", or a dotted path to f(user, model) -> bool
    "MAX_REQUEST_BYTES": 2_621_440,  # largest HTTP body / WebSocket frame accepted (413 / too_large)
    "MAX_IN_FLIGHT_PER_SOCKET": 64,  # requests one WebSocket may have unanswered at once
}

#: ``PERMISSION`` shortcuts (anything else must be a dotted path to a callable).
PERMISSION_SHORTCUTS = ("authenticated", "staff", "any")

#: Problems that make only that model fail when it loads (see ``Problem.fatal``).
_LOAD_TIME = frozenset({"E002", "E005", "E007"})

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DEVICE_RE = re.compile(r"^(auto|cpu|gpu)(:\d+)?$", re.IGNORECASE)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the settings; ``id`` is the system check id suffix."""

    id: str  # "E001" ...
    msg: str
    hint: str | None = None
    level: str = "error"  # or "warning"
    #: False for problems that only surface when the model loads (a missing PATH, an
    #: unknown signature, a RUNNER that will not import): the model stays configured
    #: and fails alone, with status "failed", while the others serve.
    fatal: bool = True
    model: str | None = None  # the model the problem is about, if any


@dataclass(frozen=True)
class ModelConfig:
    """Everything about one configured model."""

    name: str
    runner: RunnerConfig
    batching: BatchConfig
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def describe(self) -> dict[str, Any]:
        """The settings in force, JSON-ready, for stats and the admin page."""
        return {key: (str(v) if isinstance(v, Path) else v) for key, v in self.raw.items()}


@dataclass(frozen=True)
class TFBatchConfig:
    models: Mapping[str, ModelConfig]
    framework: FrameworkOptions
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)


def _suggest(key: str, choices: Mapping[str, Any]) -> str | None:
    close = difflib.get_close_matches(str(key).upper(), list(choices), n=1)
    return f"Did you mean {close[0]!r}?" if close else None


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse(raw: Any) -> tuple[TFBatchConfig, list[Problem]]:
    """Parse a ``TFBATCH`` value; always returns a config (bad models left out) and problems."""
    problems: list[Problem] = []
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        problems.append(Problem("E008", f"TFBATCH must be a dict, got {type(raw).__name__}."))
        raw = {}
    for key in raw:
        if key not in ("MODELS", "DEFAULTS") and key not in TOP_LEVEL_DEFAULTS:
            problems.append(
                Problem(
                    "E001",
                    f"TFBATCH has an unknown key {key!r}.",
                    _suggest(key, {"MODELS": 1, "DEFAULTS": 1, **TOP_LEVEL_DEFAULTS})
                    or "Known keys: MODELS, DEFAULTS, " + ", ".join(TOP_LEVEL_DEFAULTS) + ".",
                )
            )
    top = {**TOP_LEVEL_DEFAULTS, **{k: v for k, v in raw.items() if k in TOP_LEVEL_DEFAULTS}}
    for key in ("INTRA_OP_THREADS", "INTER_OP_THREADS"):
        if top[key] is not None and not (_int(top[key]) and top[key] >= 0):
            problems.append(
                Problem("E003", f"TFBATCH[{key!r}] must be a non-negative integer or None, got {top[key]!r}.")
            )
            top[key] = None
    _check_serving(top, problems)
    framework = FrameworkOptions(
        intra_op_threads=top["INTRA_OP_THREADS"],
        inter_op_threads=top["INTER_OP_THREADS"],
        gpu_memory_growth=bool(top["GPU_MEMORY_GROWTH"]),
        quiet=bool(top["QUIET_TENSORFLOW"]),
    )

    defaults = raw.get("DEFAULTS") or {}
    if not isinstance(defaults, Mapping):
        problems.append(Problem("E008", f"TFBATCH['DEFAULTS'] must be a dict, got {type(defaults).__name__}."))
        defaults = {}
    for key in defaults:
        if key not in MODEL_DEFAULTS:
            problems.append(
                Problem("E001", f"TFBATCH['DEFAULTS'] has an unknown key {key!r}.", _suggest(key, MODEL_DEFAULTS))
            )

    models_raw = raw.get("MODELS") or {}
    if not isinstance(models_raw, Mapping):
        problems.append(
            Problem("E008", f"TFBATCH['MODELS'] must be a dict of name -> settings, got {type(models_raw).__name__}.")
        )
        models_raw = {}
    models: dict[str, ModelConfig] = {}
    for name, model_raw in models_raw.items():
        model = _parse_model(str(name), model_raw, defaults, problems)
        if model is not None:
            models[model.name] = model
    return TFBatchConfig(models, framework, raw), problems


def _parse_model(name: str, model_raw: Any, defaults: Mapping[str, Any], problems: list[Problem]) -> ModelConfig | None:
    where = f"TFBATCH['MODELS'][{name!r}]"
    before = len(problems)

    def bad(id_: str, msg: str, hint: str | None = None) -> None:
        problems.append(Problem(id_, f"{where}: {msg}", hint, fatal=id_ not in _LOAD_TIME, model=name))

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
                _suggest(key, MODEL_DEFAULTS) or "Known keys: " + ", ".join(MODEL_DEFAULTS) + ".",
            )
    cfg = {**MODEL_DEFAULTS, **{k: v for k, v in defaults.items() if k in MODEL_DEFAULTS}}
    cfg.update({k: v for k, v in model_raw.items() if k in MODEL_DEFAULTS})

    path = cfg["PATH"]
    runner = cfg["RUNNER"]
    if (path is None) == (runner is None):
        bad(
            "E006",
            "set exactly one of PATH (a SavedModel directory or .keras file) or RUNNER (a dotted path to a factory).",
        )
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
        if not (_int(cfg[key]) and cfg[key] >= 1):
            bad("E003", f"{key} must be a positive integer, got {cfg[key]!r}.")
    if not (_number(cfg["MAX_LATENCY_MS"]) and cfg["MAX_LATENCY_MS"] >= 0):
        bad("E003", f"MAX_LATENCY_MS must be a number >= 0, got {cfg['MAX_LATENCY_MS']!r}.")
    if cfg["TIMEOUT_MS"] is not None and not (_number(cfg["TIMEOUT_MS"]) and cfg["TIMEOUT_MS"] > 0):
        bad("E003", f"TIMEOUT_MS must be a positive number or None, got {cfg['TIMEOUT_MS']!r}.")
    _check_allowed_sizes(cfg, bad)
    if not (isinstance(cfg["DEVICE"], str) and _DEVICE_RE.match(cfg["DEVICE"])):
        bad("E009", f"DEVICE must be 'auto', 'cpu', 'gpu' or 'gpu:N', got {cfg['DEVICE']!r}.")
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
            jit_compile=bool(cfg["JIT_COMPILE"]),
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
    )


def _check_path(path: Path, cfg: Mapping[str, Any], bad: Callable[..., None]) -> None:
    if not path.exists():
        bad(
            "E002",
            f"PATH {str(path)!r} does not exist.",
            "Point PATH at a SavedModel directory or a .keras file (absolute paths are safest).",
        )
        return
    if detect_format(path) == "keras":
        if not path.is_file():
            bad("E002", f"PATH {str(path)!r} ends in .keras but is not a file.")
        return
    from .runners.savedmodel_meta import read_signatures

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
    from .runners.custom import import_dotted

    try:
        obj = import_dotted(runner)
    except Exception as exc:  # noqa: BLE001 - ImportError, or the module raising at import
        bad("E007", f"RUNNER {runner!r} cannot be imported: {exc}.")
        return
    if not callable(obj):
        bad("E007", f"RUNNER {runner!r} is a {type(obj).__name__}, not a callable factory.")


def _check_serving(top: Mapping[str, Any], problems: list[Problem]) -> None:
    """The serving keys: E011 for PERMISSION, E012 for the limits."""
    permission = top["PERMISSION"]
    if not isinstance(permission, str):
        message = f"TFBATCH['PERMISSION'] must be a string, got {type(permission).__name__}."
        problems.append(Problem("E011", message, _PERMISSION_HINT))
    elif permission not in PERMISSION_SHORTCUTS:
        from .runners.custom import import_dotted

        try:
            obj = import_dotted(permission)
        except Exception as exc:  # noqa: BLE001 - ImportError, or the module raising at import
            problems.append(
                Problem("E011", f"TFBATCH['PERMISSION'] {permission!r} cannot be imported: {exc}.", _PERMISSION_HINT)
            )
        else:
            if not callable(obj):
                problems.append(
                    Problem(
                        "E011",
                        f"TFBATCH['PERMISSION'] {permission!r} is a {type(obj).__name__}, not a callable.",
                        _PERMISSION_HINT,
                    )
                )
    for key in ("MAX_REQUEST_BYTES", "MAX_IN_FLIGHT_PER_SOCKET"):
        if not (_int(top[key]) and top[key] >= 1):
            problems.append(Problem("E012", f"TFBATCH[{key!r}] must be a positive integer, got {top[key]!r}."))


_PERMISSION_HINT = "Use 'authenticated', 'staff', 'any', or a dotted path to a callable (user, model_name) -> bool."


def _check_allowed_sizes(cfg: Mapping[str, Any], bad: Callable[..., None]) -> None:
    allowed = cfg["ALLOWED_BATCH_SIZES"]
    if allowed is None or allowed == []:
        return
    if not isinstance(allowed, list | tuple) or not all(_int(s) and s >= 1 for s in allowed):
        bad("E004", f"ALLOWED_BATCH_SIZES must be a list of positive integers, got {allowed!r}.")
        return
    if list(allowed) != sorted(set(allowed)):
        bad("E004", f"ALLOWED_BATCH_SIZES must be strictly increasing, got {list(allowed)!r}.")
        return
    max_batch = cfg["MAX_BATCH_SIZE"]
    if _int(max_batch) and allowed[-1] < max_batch:
        bad(
            "E004",
            f"ALLOWED_BATCH_SIZES {list(allowed)!r} does not reach MAX_BATCH_SIZE ({max_batch}).",
            f"Add {max_batch} to ALLOWED_BATCH_SIZES, or lower MAX_BATCH_SIZE to {allowed[-1]}.",
        )


@lru_cache(maxsize=1)
def _cached() -> tuple[TFBatchConfig, tuple[Problem, ...]]:
    config, problems = parse(getattr(settings, "TFBATCH", None))
    return config, tuple(problems)


def get_problems() -> tuple[Problem, ...]:
    return _cached()[1]


def get_config() -> TFBatchConfig:
    """The parsed settings; raises ``ImproperlyConfigured`` if they have errors."""
    config, problems = _cached()
    errors = [p for p in problems if p.level == "error" and p.fatal]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more; run manage.py check)" if len(errors) > 1 else ""
        raise ImproperlyConfigured(f"tfbatch_django.{first.id}: {first.msg}{more}")
    return config


def clear_cache() -> None:
    _cached.cache_clear()
