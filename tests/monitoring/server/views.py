"""Test-only endpoints: traffic for one process's batchers, and that process's own stats."""

from __future__ import annotations

import asyncio

import numpy as np
from django.http import HttpRequest, JsonResponse

from tfbatch_django import get_stats, predict


async def burst(request: HttpRequest, model: str) -> JsonResponse:
    """``n`` concurrent predictions of ``rows`` x ``width`` ones; answers how many succeeded."""
    n, rows, width = (int(request.GET.get(key, default)) for key, default in (("n", 10), ("rows", 1), ("width", 3)))
    x = np.ones((rows, width), np.float32)
    results = await asyncio.gather(*(predict(model, x) for _ in range(n)), return_exceptions=True)
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    return JsonResponse({"ok": n - len(errors), "errors": errors})


def local_stats(request: HttpRequest) -> JsonResponse:
    """``get_stats()`` of the process that answers: what its batchers counted themselves."""
    return JsonResponse(get_stats())
