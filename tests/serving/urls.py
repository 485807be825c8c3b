"""The REST API through Django's views: async ones under tfbatch/, sync ones under sync/."""

from django.urls import include, path, re_path

from tests.serving.protocol_example import PROTOCOL as ECHO
from tfbatch_django.views import protocol_view, protocol_view_sync

urlpatterns = [
    path("tfbatch/", include("tfbatch_django.urls", namespace="async")),
    path("sync/", include("tfbatch_django.urls_sync", namespace="sync")),
    # A second protocol on the serving core: one route per door (tests/serving/test_core.py).
    re_path("^tfbatch/" + ECHO.route, protocol_view(ECHO)),
    re_path("^sync/" + ECHO.route, protocol_view_sync(ECHO)),
]
