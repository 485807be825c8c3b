"""A second HTTP protocol written the way ``serving/core.py`` says to: one module, no edit
to the core; mounted by tests/serving/urls.py (Django views) and test_core.py (fast door).

``POST <mount>/echo/<model>[:double]`` with a JSON list of rows predicts with ``model``;
``GET <mount>/echo`` answers without permission (like a health probe) and echoes the
request's context, so tests can see what every door hands a protocol.
"""

from __future__ import annotations

from typing import Any

from tfbatch_django.serving import codec
from tfbatch_django.serving.core import (
    Flow,
    HttpProtocol,
    Predict,
    Request,
    Response,
    allow,
    error_response,
    json_response,
    permitted_model,
)


class Echo(HttpProtocol):
    name = "echo"
    route = r"echo(?:/(?P<model>[^/:]+)(?P<action>:double)?)?/?$"

    def flow(self, request: Request) -> Flow[Response]:
        model = request.route.get("model")
        if model is None:
            context = request.context
            return json_response(
                200,
                {
                    "door": context.door,
                    "host": context.host,
                    "header": context.headers.get("x-echo"),
                    "query": request.query,
                    "method": request.method,
                },
            )
        allow(request.method, "POST", "echo")
        config = yield from permitted_model(request.context, model)
        prediction = yield Predict(config.name, codec.as_tensors(codec.loads(request.body)))
        values: Any = prediction.value()
        return json_response(200, {"echo": values * 2 if request.route.get("action") else values})

    def error(self, exc: BaseException) -> Response:
        return error_response(exc, lambda code, message: {"problem": {"code": code, "text": message}})


PROTOCOL = Echo()
