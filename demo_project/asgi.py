"""ASGI entry point of the demo project (served by daphne)."""

import os

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

from tfbatch_django import start_publishing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")
django_asgi_app = get_asgi_application()
if settings.DEBUG:  # daphne serves no static files; the admin and its batching dashboard need them
    django_asgi_app = ASGIStaticFilesHandler(django_asgi_app)

application = django_asgi_app

start_publishing()  # this process's batch statistics -> the admin dashboard (see README)
