from django.urls import include, path

urlpatterns = [
    path("tfbatch/", include("tfbatch_django.urls")),
    path("sync/", include("tfbatch_django.urls_sync")),
]
