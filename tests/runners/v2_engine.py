"""A real KServe v2 engine for the remote-runner tests: KServe's own Python model server.

Run by ``.venv-engine/bin/python`` (``make engine`` installs ``requirements/engine.txt``
there; KServe's dependencies would clash with the project's), never imported by the
suite. It binds 127.0.0.1 on a free port, prints ``PORT <n>`` once it listens, and
serves until it is terminated. KServe itself decodes and encodes the v2 protocol,
binary tensor extension included; the models below only compute.

Models (all numpy):

* ``dense``: ``x`` FP32 [-1, 4] -> ``probs`` FP32 [-1, 3] (softmax of a fixed affine
  map), ``label`` INT64 [-1], ``rows`` INT32 [-1] (how many rows the engine got in this
  call, so a test can see batches arrive whole). Sentinel values in ``x[:, 0]``:
  ``-999`` raises (KServe answers 500 with the message), ``777`` sleeps 60 s (a slow
  engine), ``555`` waits for another ``555`` call to be in flight (at most 20 s) and
  answers how many were in flight in ``rows`` (concurrent batches), ``444`` waits until
  a call with ``333`` opens the gate (at most 30 s): a test holds the batcher's only
  executor there while it queues the requests it wants batched together.
* ``typed``: ``text`` BYTES [-1], ``ids`` INT32 [-1, 2], ``flag`` BOOL [-1] ->
  ``upper`` BYTES [-1], ``length`` INT64 [-1], ``total`` FP64 [-1], ``negated`` BOOL [-1].
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.model_server import FASTAPI_APP_IMPORT_STRING
from kserve.protocol.rest.server import RESTServer

WEIGHTS = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
BIAS = np.array([0.1, -0.2, 0.3], np.float32)


def _response(model: Model, request: InferRequest, outputs: dict[str, np.ndarray]) -> InferResponse:
    infer_outputs = []
    for name, value in outputs.items():
        datatype = "BYTES" if value.dtype == object else _DATATYPES[value.dtype.name]
        out = InferOutput(name=name, shape=list(value.shape), datatype=datatype)
        out.set_data_from_numpy(value, binary_data=request.use_binary_outputs)
        infer_outputs.append(out)
    return InferResponse(
        response_id=request.id or "",
        model_name=model.name,
        infer_outputs=infer_outputs,
        use_binary_outputs=request.use_binary_outputs,
        requested_outputs=request.request_outputs,
    )


_DATATYPES = {"float32": "FP32", "float64": "FP64", "int64": "INT64", "int32": "INT32", "bool": "BOOL"}


class Dense(Model):
    def __init__(self) -> None:
        super().__init__("dense")
        self.waiting = self.together = 0
        self.partner = asyncio.Event()
        self.gate = asyncio.Event()
        self.ready = True

    def get_input_types(self) -> list[dict[str, object]]:
        return [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]

    def get_output_types(self) -> list[dict[str, object]]:
        return [
            {"name": "probs", "datatype": "FP32", "shape": [-1, 3]},
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "rows", "datatype": "INT32", "shape": [-1]},
        ]

    async def predict(self, payload: InferRequest, headers: object = None, response_headers: object = None) -> object:
        x = payload.inputs[0].as_numpy().astype(np.float32)
        rows = np.full(len(x), len(x), np.int32)
        first = x[:, 0]
        if (first == -999).any():
            raise RuntimeError(f"row {int(np.argmax(first == -999))} holds the poison value -999")
        if (first == 333).any():
            self.gate.set()
        if (first == 444).any():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.gate.wait(), 30)
            self.gate.clear()
        if (first == 777).any():
            await asyncio.sleep(60)
        if (first == 555).any():
            self.waiting += 1
            if self.waiting >= 2:
                self.together = self.waiting
                self.partner.set()
            try:
                await asyncio.wait_for(self.partner.wait(), 20)
                rows[:] = self.together
            except TimeoutError:
                rows[:] = 1
            self.waiting -= 1
            if self.waiting == 0:
                self.partner.clear()
        logits = x @ WEIGHTS + BIAS
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
        return _response(self, payload, {"probs": probs, "label": probs.argmax(axis=1).astype(np.int64), "rows": rows})


class Typed(Model):
    def __init__(self) -> None:
        super().__init__("typed")
        self.ready = True

    def get_input_types(self) -> list[dict[str, object]]:
        return [
            {"name": "text", "datatype": "BYTES", "shape": [-1]},
            {"name": "ids", "datatype": "INT32", "shape": [-1, 2]},
            {"name": "flag", "datatype": "BOOL", "shape": [-1]},
        ]

    def get_output_types(self) -> list[dict[str, object]]:
        return [
            {"name": "upper", "datatype": "BYTES", "shape": [-1]},
            {"name": "length", "datatype": "INT64", "shape": [-1]},
            {"name": "total", "datatype": "FP64", "shape": [-1]},
            {"name": "negated", "datatype": "BOOL", "shape": [-1]},
        ]

    async def predict(self, payload: InferRequest, headers: object = None, response_headers: object = None) -> object:
        tensors = {i.name: i.as_numpy() for i in payload.inputs}
        text = [t if isinstance(t, bytes) else str(t).encode() for t in tensors["text"].reshape(-1)]
        upper = np.array([t.upper() for t in text], dtype=object)
        return _response(
            self,
            payload,
            {
                "upper": upper,
                "length": np.array([len(t) for t in text], np.int64),
                "total": tensors["ids"].astype(np.float64).sum(axis=1),
                "negated": ~tensors["flag"].astype(bool),
            },
        )


def main() -> None:
    logging.getLogger().setLevel(logging.WARNING)
    sock = socket.socket()
    sock.bind(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0))
    port = sock.getsockname()[1]
    server = ModelServer(http_port=port, enable_grpc=False, workers=1, enable_latency_logging=False)
    for model in (Dense(), Typed()):
        server.register_model(model)
    # KServe binds 0.0.0.0 itself; handing uvicorn our own socket keeps it on loopback.
    # A short grace period: a test's slow call (60 s) must not hold up the shutdown.
    rest = RESTServer(
        FASTAPI_APP_IMPORT_STRING, server.dataplane, server.model_repository_extension, port, workers=1, grace_period=1
    )
    sock.listen(128)
    print(f"PORT {port}", flush=True)
    rest.run(sockets=[sock])


if __name__ == "__main__":
    main()
