"""The REST API through Django's views: async ones under tfbatch/, sync ones under sync/;
the Open Inference Protocol's async views at the root, its sync ones under sync/."""

from django.urls import include, path, re_path

from tests.serving.protocol_example import PROTOCOL as ECHO
from tfbatch_django.views import protocol_view, protocol_view_sync

urlpatterns = [
    path("tfbatch/", include("tfbatch_django.urls", namespace="async")),
    # Beside TF Serving's sync URLs (which answer every other URL under sync/v1/ with a JSON 404).
    path("sync/", include("tfbatch_django.urls_v2_sync", namespace="v2-sync")),
    path("sync/", include("tfbatch_django.urls_sync", namespace="sync")),
    # A second protocol on the serving core: one route per door (tests/serving/test_core.py).
    re_path("^tfbatch/" + ECHO.route, protocol_view(ECHO)),
    re_path("^sync/" + ECHO.route, protocol_view_sync(ECHO)),
    path("", include("tfbatch_django.urls_v2", namespace="v2")),
]
