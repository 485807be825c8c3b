"""What ``AppConfig.ready()`` sets up for monitoring: the Prometheus listener, if asked for.

It starts no thread and opens no database connection: publishing is started by the
serving process itself (``start_publishing()``), so management commands stay quiet.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.conf import settings

__all__ = ["sync_prometheus"]


def _prometheus_wanted() -> bool:
    raw = getattr(settings, "TFBATCH", None)
    if not (isinstance(raw, Mapping) and raw.get("PROMETHEUS") is True):
        return False  # the common case decides without parsing (and reading every saved_model.pb)
    from ..conf import get_monitoring

    return get_monitoring().prometheus  # False when prometheus_client is missing (check E024)


def sync_prometheus() -> None:
    """Attach the Prometheus listener when ``PROMETHEUS`` is on, detach it when it is off."""
    from ..registry import registry

    if _prometheus_wanted():
        from .prometheus import listener

        registry.add_listener(listener())
    else:
        import sys

        module = sys.modules.get("tfbatch_django.monitoring.prometheus")
        if module is not None:
            registry.remove_listener(module.listener())
