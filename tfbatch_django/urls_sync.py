"""The REST API as sync Django views, for WSGI deployments (same URLs as ``tfbatch_django.urls``)."""

from django.urls import re_path

from .serving.tfserving import ROUTE
from .views import rest_api_sync

app_name = "tfbatch_django"

urlpatterns = [re_path("^" + ROUTE, rest_api_sync, name="rest")]
