"""The Open Inference Protocol as sync Django views, for WSGI (same URLs as ``urls_v2``)."""

from django.urls import re_path

from .serving.kserve_v2 import PROTOCOL, ROUTE
from .views import protocol_view_sync

app_name = "tfbatch_django_v2"

urlpatterns = [re_path("^" + ROUTE, protocol_view_sync(PROTOCOL), name="v2")]
