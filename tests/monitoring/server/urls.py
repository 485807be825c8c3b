from django.contrib import admin
from django.urls import path

from tfbatch_django.monitoring.prometheus import metrics_view

from . import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("burst/<str:model>/", views.burst),
    path("local-stats/", views.local_stats),
    path("metrics", metrics_view),
]
