"""A runner that hands each batch to an existing engine over the Open Inference Protocol.

Triton and KServe speak it with the binary tensor extension this runner uses (MLServer's
REST API lacks the extension). A model configured with
``"URL": "http://triton:8000/v2/models/resnet"`` instead of ``PATH`` is served here:
Django keeps auth, batching, the front doors and the admin; the engine computes.
Connections and failures: ``remote_http.py``.

* Load: ``GET <URL>`` (the model's metadata) gives the input and output specs (v2
  datatypes as numpy dtypes, ``-1`` as ``None``). An engine that is down, or does not
  know the model, fails the load with its own words.
* Each batch: ``POST <URL>/infer`` with the binary tensor data extension (a JSON header
  of ``Inference-Header-Content-Length`` bytes, then the raw tensors), asking for binary
  outputs too. Measured here on a 64 x 32 x 32 x 3 float32 batch: 786 KB raw against
  3.8 MB as JSON numbers (``tolist()`` + orjson), encoded in 0.4 ms against 16 ms and
  decoded in 0.4 ms against 20 ms.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from ..batching.spec import TensorSpec
from ..exceptions import ModelLoadError
from .remote_http import RemoteError, RemoteRunner, check_url, redact_url
from .v2_datatypes import decode_binary, decode_json, encode_binary, numpy_dtype, parse_shape, v2_datatype

__all__ = ["RemoteError", "RemoteV2Runner", "check_url", "redact_url"]

_HEADER_LENGTH = "Inference-Header-Content-Length"


class RemoteV2Runner(RemoteRunner):
    """The model at ``url`` on a KServe v2 engine (see the module docstring)."""

    kind = "remote_v2"

    def __init__(self, url: str, *, timeout: float = 30.0, connections: int = 1) -> None:
        super().__init__(url, timeout=timeout, connections=connections)
        try:
            meta = self._get_json()
            self.engine_model = str(meta.get("name", ""))
            self.platform = str(meta.get("platform", ""))
            self.input_specs = self._specs(meta, "inputs")
            self.output_specs = self._specs(meta, "outputs")
            if not self.input_specs:
                raise ModelLoadError(f"the engine's metadata at {self.url} lists no inputs")
        except BaseException:
            self.close()
            raise
        self._requested = [{"name": name, "parameters": {"binary_data": True}} for name in self.output_specs]

    def _specs(self, meta: Mapping[str, Any], key: str) -> dict[str, TensorSpec]:
        entries = meta.get(key) or []
        if not isinstance(entries, list):
            raise ModelLoadError(f"the engine's metadata at {self.url}: {key!r} is not a list")
        specs: dict[str, TensorSpec] = {}
        for entry in entries:
            try:
                name = entry["name"]
                spec = TensorSpec(str(name), numpy_dtype(entry["datatype"]), parse_shape(entry["shape"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise ModelLoadError(f"the engine's metadata at {self.url}: {key} entry {entry!r}: {exc}") from None
            if not spec.shape or spec.shape[0] is not None:
                raise ModelLoadError(
                    f"the engine's metadata at {self.url}: {key[:-1]} {spec.name!r} has shape "
                    f"{list(entry['shape'])}, without a variable first (batch) dimension; this runner "
                    "sends whole batches, so serve the model with dynamic batching (first dimension -1)"
                )
            specs[spec.name] = spec
        return specs

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        descriptors: list[dict[str, Any]] = []
        chunks: list[bytes] = []
        for name, spec in self.input_specs.items():
            array = inputs[name]
            raw = encode_binary(array)
            descriptors.append(
                {
                    "name": name,
                    "shape": list(array.shape),
                    "datatype": "BYTES" if spec.is_string else v2_datatype(array.dtype),
                    "parameters": {"binary_data_size": len(raw)},
                }
            )
            chunks.append(raw)
        header: dict[str, Any] = {"inputs": descriptors, "parameters": {"binary_data_output": True}}
        if self._requested:
            header["outputs"] = self._requested
        head = orjson.dumps(header)
        response = self._post(
            "/infer",
            b"".join([head, *chunks]),
            {"Content-Type": "application/octet-stream", _HEADER_LENGTH: str(len(head))},
        )
        return self._outputs(response.headers.get(_HEADER_LENGTH), response.data)

    def _outputs(self, header_length: str | None, body: bytes) -> dict[str, np.ndarray]:
        try:
            split = len(body) if header_length is None else int(header_length)
            header = orjson.loads(body[:split])
            binary = bytearray(body[split:])  # writable arrays for the callers, one copy
            view = memoryview(binary)
            outputs: dict[str, np.ndarray] = {}
            offset = 0
            for out in header["outputs"]:
                name, datatype, shape = out["name"], out["datatype"], out["shape"]
                size = (out.get("parameters") or {}).get("binary_data_size")
                if size is not None:
                    outputs[name] = decode_binary(view[offset : offset + size], datatype, shape)
                    offset += size
                else:
                    outputs[name] = decode_json(out["data"], datatype, shape)
        except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
            raise self.unreadable(exc) from None
        return outputs

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "engine_model": self.engine_model, "platform": self.platform}
