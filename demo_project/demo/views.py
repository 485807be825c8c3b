from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def index(request: HttpRequest) -> HttpResponse:
    """The drawing page; everything else happens over the WebSocket."""
    return render(request, "demo/index.html")
