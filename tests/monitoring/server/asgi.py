"""What a deployment's asgi.py does: build the app, then warm models up and start publishing."""

import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

from tfbatch_django import start_publishing, warmup

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.monitoring.server.settings")
application = ASGIStaticFilesHandler(get_asgi_application())  # sets Django up
warmup(wait=False)
start_publishing()
