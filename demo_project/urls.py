from django.contrib import admin
from django.urls import include, path

from demo_project.demo.views import index

urlpatterns = [
    path("", index, name="index"),
    path("admin/", admin.site.urls),
    # TensorFlow Serving's REST API (async Django views): base URL http://127.0.0.1:8000/tfbatch
    path("tfbatch/", include("tfbatch_django.urls")),
]
