"""``settings.TFBATCH``, parsed once into frozen dataclasses.

The parser never raises on bad values: it collects ``Problem``s, which the system
checks report (with ids ``tfbatch_django.E0xx``) and ``get_config()`` turns into
``ImproperlyConfigured``. One parser, so the checks and the runtime can never disagree
about what a setting means. The parsed result is cached and dropped on Django's
``setting_changed`` signal (tests using ``override_settings`` see their values).

One module per section of the settings::

    TFBATCH = {
        "MODELS": {"<name>": {...}},      # models.py (per-model keys)
        "DEFAULTS": {...},                # models.py (per-model keys for every model)
        "INTRA_OP_THREADS": None, ...     # parse.py (TensorFlow, process-wide)
        "PERMISSION": "authenticated", ...   # serving.py (HTTP/WebSocket)
        "STATS_PUBLISH_INTERVAL": 5.0, ...   # monitoring.py (dashboard, metrics)
    }
"""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .models import MODEL_DEFAULTS, ModelConfig
from .monitoring import MonitoringConfig
from .parse import TOP_LEVEL_DEFAULTS, TFBatchConfig, parse
from .problems import Problem
from .serving import PERMISSION_SHORTCUTS

__all__ = [
    "MODEL_DEFAULTS",
    "PERMISSION_SHORTCUTS",
    "TOP_LEVEL_DEFAULTS",
    "ModelConfig",
    "MonitoringConfig",
    "Problem",
    "TFBatchConfig",
    "clear_cache",
    "get_config",
    "get_monitoring",
    "get_problems",
    "parse",
]


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


def get_monitoring() -> MonitoringConfig:
    """The monitoring settings; never raises (bad values were replaced by defaults)."""
    return _cached()[0].monitoring


def clear_cache() -> None:
    _cached.cache_clear()
