"""The Open Inference Protocol (KServe v2) as async Django views, at the project's root:
``path("", include("tfbatch_django.urls_v2"))``, so that clients such as ``tritonclient``
find ``/v2/...`` on the host. Under WSGI, include ``tfbatch_django.urls_v2_sync`` instead.
"""

from django.urls import re_path

from .serving.kserve_v2 import PROTOCOL, ROUTE
from .views import protocol_view

app_name = "tfbatch_django_v2"

urlpatterns = [re_path("^" + ROUTE, protocol_view(PROTOCOL), name="v2")]
