"""URLs of the test servers: the REST API (tests.serving.urls) and the server's batch
statistics, which tests read to know when the server has computed their requests."""

from django.http import HttpRequest, JsonResponse
from django.urls import path

from tests.serving.urls import urlpatterns as serving_urlpatterns
from tfbatch_django import get_stats


def stats(request: HttpRequest) -> JsonResponse:
    return JsonResponse(get_stats())


urlpatterns = [*serving_urlpatterns, path("stats/", stats)]
