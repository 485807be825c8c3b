"""TensorFlow Serving's REST API as async Django views: ``path("tfbatch/", include("tfbatch_django.urls"))``.

Clients then use ``http://host/tfbatch`` as their TF Serving base URL. Under WSGI, mount
``tfbatch_django.urls_sync`` instead (same URLs, sync views).
"""

from django.urls import re_path

from .serving.tfserving import ROUTE
from .views import rest_api

app_name = "tfbatch_django"

urlpatterns = [re_path("^" + ROUTE, rest_api, name="rest")]
