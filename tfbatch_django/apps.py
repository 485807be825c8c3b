from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.signals import setting_changed


class TFBatchConfig(AppConfig):
    """Registers the system checks, the settings-reset hook and, when ``PROMETHEUS`` is
    on, the metrics listener; loads nothing and starts no thread.

    Models load on first use or through ``tfbatch_warmup``/``warmup()``: doing it here
    would make every ``manage.py`` command pay for TensorFlow.
    """

    name = "tfbatch_django"
    verbose_name = "TF batching"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the checks
        from .monitoring import hooks

        setting_changed.connect(_settings_changed, dispatch_uid="tfbatch_django.settings_changed")
        hooks.sync_prometheus()


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    """``override_settings(TFBATCH=...)`` and friends: rebuild everything from the new value."""
    if setting == "TFBATCH":
        from .conf import clear_cache
        from .monitoring import hooks
        from .registry import registry

        registry.reset()
        clear_cache()
        hooks.sync_prometheus()
