"""WSGI entry point for ``bench_workers.py``: each gunicorn worker loads its models before serving."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.worker_settings")
application = get_wsgi_application()

from tfbatch_django import warmup  # noqa: E402

warmup()
