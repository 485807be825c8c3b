"""The REST API through Django's views: async ones under tfbatch/, sync ones under sync/."""

from django.urls import include, path

urlpatterns = [
    path("tfbatch/", include("tfbatch_django.urls", namespace="async")),
    path("sync/", include("tfbatch_django.urls_sync", namespace="sync")),
]
