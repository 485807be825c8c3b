"""TensorFlow Serving's REST API as async Django views: ``path("tfbatch/", include("tfbatch_django.urls"))``.

Clients then use ``http://host/tfbatch`` as their TF Serving base URL. Under WSGI, mount
``tfbatch_django.urls_sync`` instead (same URLs, sync views).
"""

from django.urls import re_path

from .serving.tfserving import NOT_FOUND, ROUTE, UNKNOWN_ROUTE
from .views import protocol_view, rest_api

app_name = "tfbatch_django"

urlpatterns = [
    re_path("^" + ROUTE, rest_api, name="rest"),
    # Any other URL under v1/: a JSON 404, as API clients expect, not an HTML page.
    re_path("^" + UNKNOWN_ROUTE, protocol_view(NOT_FOUND), name="not_found"),
]
