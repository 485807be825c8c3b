"""The REST API as sync Django views, for WSGI deployments (same URLs as ``tfbatch_django.urls``)."""

from django.urls import re_path

from .serving.tfserving import NOT_FOUND, ROUTE, UNKNOWN_ROUTE
from .views import protocol_view_sync, rest_api_sync

app_name = "tfbatch_django"

urlpatterns = [
    re_path("^" + ROUTE, rest_api_sync, name="rest"),
    # Any other URL under v1/: a JSON 404, as API clients expect, not an HTML page.
    re_path("^" + UNKNOWN_ROUTE, protocol_view_sync(NOT_FOUND), name="not_found"),
]
