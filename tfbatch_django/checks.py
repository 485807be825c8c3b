"""System checks for ``settings.TFBATCH`` (ids ``tfbatch_django.E001`` ...).

    E001 unknown key (typo)                 E006 not exactly one of PATH, RUNNER, URL
    E002 PATH not a model (or, under        E007 RUNNER not importable or not callable
         check --deploy, missing)
    E003 size/time not positive             E008 wrong type or structure
    E004 ALLOWED_BATCH_SIZES invalid or     E009 DEVICE not auto/cpu/gpu/gpu:N
         not reaching MAX_BATCH_SIZE        E010 model name not URL-safe
    E005 unknown SavedModel signature       E011 PERMISSION not a shortcut nor an
                                                 importable callable
                                            E012 MAX_REQUEST_BYTES or
                                                 MAX_IN_FLIGHT_PER_SOCKET not a
                                                 positive integer
                                            E013 URL not .../v2/models/<m> or .../v1/models/<m>

Monitoring keys (reported, never fatal: the value falls back to its default)::

    E020 STATS_PUBLISH_INTERVAL, STATS_STALE_AFTER, STATS_HISTORY_INTERVAL,
         STATS_RETENTION_HOURS or DASHBOARD_REFRESH_SECONDS not a positive number
    E021 STATS_STALE_AFTER not longer than STATS_PUBLISH_INTERVAL
    E022 STATS_HISTORY_INTERVAL shorter than STATS_PUBLISH_INTERVAL
    E023 PROMETHEUS not True/False
    E024 PROMETHEUS on but prometheus_client not installed

Workers::

    E030 WORKER not a valid name            E032 models have a WORKER but the channel
    E031 a WORKER_* key invalid                  layer is missing or in memory

A ``PATH`` that does not exist is only a warning, W002: models are often mounted after
the image is built, and an error would stop ``migrate`` and ``collectstatic``. The
model reports status ``failed`` if the file is still missing when it loads, and
``manage.py check --deploy`` reports it as the error E002.

The checks read settings and ``saved_model.pb`` only; they never import TensorFlow.
"""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, Warning, register

from .conf import parse
from .conf.models import PATH_HINT
from .conf.workers import check_channel_layer


@register("tfbatch_django")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django.conf import settings

    config, problems = parse(getattr(settings, "TFBATCH", None))
    uses_workers = any(m.worker is not None for m in config.models.values())
    problems += check_channel_layer(config.workers, uses_workers, getattr(settings, "CHANNEL_LAYERS", None))
    level = {"error": Error, "warning": Warning}
    return [level[p.level](p.msg, hint=p.hint, id=f"tfbatch_django.{p.id}") for p in problems]


@register("tfbatch_django", deploy=True)
def check_models_present(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Under ``check --deploy``: a model file that is still missing is an error."""
    from django.conf import settings

    _, problems = parse(getattr(settings, "TFBATCH", None))
    return [Error(p.msg, hint=PATH_HINT, id="tfbatch_django.E002") for p in problems if p.id == "W002"]
