"""The demo's URLs plus a Django async view answering a constant: the Django path's ceiling;
and this process's own statistics, for the soak's accounting (a benchmark project only:
``get_stats()`` is not for the world to read)."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from demo_project.urls import urlpatterns as demo_urlpatterns

CONSTANT = b'{"predictions": [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]]}'


@csrf_exempt
async def constant(request: HttpRequest) -> HttpResponse:
    return HttpResponse(CONSTANT, content_type="application/json")


def stats(request: HttpRequest) -> JsonResponse:
    from tfbatch_django import get_stats

    return JsonResponse(get_stats())


urlpatterns = [*demo_urlpatterns, path("const/django/", constant), path("bench/stats/", stats)]
