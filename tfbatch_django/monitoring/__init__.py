"""Monitoring: per-process publishing of batch statistics, the admin dashboard, Prometheus.

Each serving process that calls ``start_publishing()`` (from ``asgi.py`` or
``wsgi.py``) runs one background thread that writes its ``get_stats()`` to the
database every ``STATS_PUBLISH_INTERVAL`` seconds; the admin dashboard and
``manage.py tfbatch_stats`` sum what the live processes wrote. Nothing here runs on the
request path except the optional Prometheus listener (a few increments per event).

The functions below import the Django parts lazily, so importing this package is safe
before ``django.setup()``.
"""

from __future__ import annotations

__all__ = ["start_publishing", "stop_publishing"]


def start_publishing() -> bool:
    """Start this process's publisher thread (idempotent; forked children get their own).

    Call it once per serving process, after Django is set up: in ``asgi.py`` after
    ``get_asgi_application()``. Returns False when ``STATS_PUBLISH_INTERVAL`` is None.
    """
    from .publisher import publisher

    return publisher.start()


def stop_publishing() -> None:
    """Stop the thread and mark this process stopped, so it drops out of the sums at once.

    Runs by itself at interpreter exit; call it earlier from a server's shutdown hook.
    """
    from .publisher import publisher

    publisher.stop()
