from django.contrib import admin
from django.urls import include, path

from demo_project.demo.views import index

urlpatterns = [
    path("", index, name="index"),
    path("admin/", admin.site.urls),
    # TensorFlow Serving's REST API (async Django views): base URL http://127.0.0.1:8000/tfbatch
    path("tfbatch/", include("tfbatch_django.urls")),
    # The same API as sync views (what a WSGI deployment mounts): under ASGI, Django runs
    # each request's sync view in a thread of its own, so they batch together too.
    path("sync/", include("tfbatch_django.urls_sync", namespace="sync")),
    # The Open Inference Protocol (KServe v2) at the root: http://127.0.0.1:8000/v2/health/ready
    path("", include("tfbatch_django.urls_v2")),
]
