"""``bench.urls`` plus the sync views (``sync/``) that gunicorn's sync workers serve."""

from django.urls import include, path

from bench.urls import urlpatterns as bench_urlpatterns

urlpatterns = [*bench_urlpatterns, path("sync/", include("tfbatch_django.urls_sync"))]
