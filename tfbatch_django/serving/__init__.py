"""The serving layer: what HTTP and WebSocket clients talk to.

One protocol-neutral core, one module per protocol on top of it, thin front doors:

* ``core``: the request context, the permission -> model -> load -> predict steps,
  the async and sync drivers, HTTP responses and error mapping (its docstring says
  how to add a protocol);
* ``tfserving`` (+ ``tfserving_body``): TensorFlow Serving's REST API (predict, model
  status, metadata);
* ``messages``: the WebSocket message protocol (text and binary frames);
* ``codec``: JSON bytes <-> Python values and numpy outputs (orjson);
* ``errors``: the error codes clients see, and their HTTP statuses;
* ``options`` / ``permissions``: the serving settings and who may predict;
* the doors: the Django views (``tfbatch_django.views``), the Channels fast door
  (``http_consumer``) and the WebSocket consumer (``websocket``).

Only ``websocket``, ``http_consumer`` and ``channels_base`` import Channels, so the
Django views work without it installed.
"""
