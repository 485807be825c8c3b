"""The top level of ``settings.TFBATCH``: sections, framework options, and ``parse()``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..runners.config import FrameworkOptions
from .models import MODEL_DEFAULTS, ModelConfig, parse_model
from .monitoring import MONITORING_DEFAULTS, MonitoringConfig, parse_monitoring
from .problems import Problem, is_int, is_number, suggest
from .serving import SERVING_DEFAULTS, check_serving
from .workers import WORKER_DEFAULTS, WorkerConfig, parse_workers

__all__ = ["FRAMEWORK_DEFAULTS", "TOP_LEVEL_DEFAULTS", "TFBatchConfig", "parse"]

#: TensorFlow and process-wide keys.
FRAMEWORK_DEFAULTS: dict[str, Any] = {
    "INTRA_OP_THREADS": None,
    "INTER_OP_THREADS": None,
    "GPU_MEMORY_GROWTH": True,
    "QUIET_TENSORFLOW": True,
    "GC_FREEZE": True,  # gc.freeze() after each model loads (see registry.py)
    "GIL_SWITCH_INTERVAL_MS": None,  # sys.setswitchinterval when the first model loads; None: leave it
}

#: Every top-level key (besides MODELS and DEFAULTS) and its default, all sections.
TOP_LEVEL_DEFAULTS: dict[str, Any] = {
    **FRAMEWORK_DEFAULTS,
    **SERVING_DEFAULTS,
    **MONITORING_DEFAULTS,
    **WORKER_DEFAULTS,
}


@dataclass(frozen=True)
class TFBatchConfig:
    models: Mapping[str, ModelConfig]
    framework: FrameworkOptions
    gc_freeze: bool = True
    switch_interval: float | None = None  # seconds
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    workers: WorkerConfig = field(default_factory=WorkerConfig)


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
                    suggest(key, {"MODELS": 1, "DEFAULTS": 1, **TOP_LEVEL_DEFAULTS})
                    or "Known keys: MODELS, DEFAULTS, " + ", ".join(TOP_LEVEL_DEFAULTS) + ".",
                )
            )
    top = {**TOP_LEVEL_DEFAULTS, **{k: v for k, v in raw.items() if k in TOP_LEVEL_DEFAULTS}}
    for key in ("INTRA_OP_THREADS", "INTER_OP_THREADS"):
        if top[key] is not None and not (is_int(top[key]) and top[key] >= 0):
            problems.append(
                Problem("E003", f"TFBATCH[{key!r}] must be a non-negative integer or None, got {top[key]!r}.")
            )
            top[key] = None
    interval = top["GIL_SWITCH_INTERVAL_MS"]
    if interval is not None and not (is_number(interval) and 0 < interval <= 100):
        message = f"TFBATCH['GIL_SWITCH_INTERVAL_MS'] must be a number in (0, 100] or None, got {interval!r}."
        problems.append(Problem("E003", message))
        top["GIL_SWITCH_INTERVAL_MS"] = interval = None
    monitoring = parse_monitoring(top, problems)
    check_serving(top, problems)
    workers = parse_workers(top, problems)
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
                Problem("E001", f"TFBATCH['DEFAULTS'] has an unknown key {key!r}.", suggest(key, MODEL_DEFAULTS))
            )

    models_raw = raw.get("MODELS") or {}
    if not isinstance(models_raw, Mapping):
        problems.append(
            Problem("E008", f"TFBATCH['MODELS'] must be a dict of name -> settings, got {type(models_raw).__name__}.")
        )
        models_raw = {}
    models: dict[str, ModelConfig] = {}
    for name, model_raw in models_raw.items():
        model = parse_model(str(name), model_raw, defaults, problems)
        if model is not None:
            models[model.name] = model
    config = TFBatchConfig(
        models=models,
        framework=framework,
        gc_freeze=bool(top["GC_FREEZE"]),
        switch_interval=None if interval is None else interval / 1000.0,
        raw=raw,
        monitoring=monitoring,
        workers=workers,
    )
    return config, problems
