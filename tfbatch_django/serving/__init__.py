"""The serving layer: what HTTP and WebSocket clients talk to.

One protocol-neutral core, one module per protocol on top of it, thin front doors:

* ``core``: the request context, the permission -> model -> load -> predict steps,
  the async and sync drivers, HTTP responses and error mapping (its docstring says
  how to add a protocol);
* ``tfserving`` (+ ``tfserving_body``, ``tfserving_examples``, ``tf_example``):
  TensorFlow Serving's REST API (predict, classify, regress, model status, metadata);
* ``kserve_v2`` (+ ``kserve_v2_body``): the Open Inference Protocol (KServe v2), with
  JSON and binary tensors;
* ``model_io``: what both HTTP protocols say about a model (served version, tensors);
* ``messages``: the WebSocket message protocol (text and binary frames);
* ``codec``: JSON bytes <-> Python values and numpy outputs (orjson);
* ``errors``: the error codes clients see, and their HTTP statuses;
* ``options`` / ``permissions`` / ``auth``: the serving settings, who may predict, and
  who is asking (API keys, the session's user, CSRF);
* the doors: the Django views (``tfbatch_django.views``), the Channels fast door
  (``http_consumer``) and the WebSocket consumer (``websocket``), the last two on
  ``channels_base``.

Only ``websocket``, ``http_consumer`` and ``channels_base`` import Channels, so the
Django views work without it installed.
"""
