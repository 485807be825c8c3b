"""The serving layer: what HTTP and WebSocket clients talk to.

One implementation of each protocol, several thin front doors:

* ``codec``: JSON bytes <-> Python values and numpy outputs (orjson);
* ``errors``: the error codes clients see, and their HTTP statuses;
* ``options`` / ``permissions``: the serving settings and who may predict;
* ``rest``: TensorFlow Serving's REST API (predict, model status, metadata), used by
  the Django views (``tfbatch_django.views``) and the Channels HTTP consumer
  (``http_consumer``);
* ``messages``: the WebSocket message protocol, used by ``websocket``'s consumer.

Only ``websocket`` and ``http_consumer`` import Channels, so the Django views work
without it installed.
"""
