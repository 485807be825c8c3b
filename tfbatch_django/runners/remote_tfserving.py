"""A runner that hands each batch to a TensorFlow Serving REST endpoint.

``"URL": "http://tfs:8501/v1/models/m"`` (or ``.../versions/<v>``, ``.../labels/<l>``):
the same shape as the KServe v2 runner (``remote_v2.py``), on TF Serving's REST API.
Connections and failures: ``remote_http.py``.

* Load: ``GET <URL>/metadata`` gives the ``SIGNATURE``'s inputs and outputs (``DT_*``
  dtypes as numpy dtypes, ``-1`` as ``None``).
* Each batch: ``POST <URL>:predict`` in the columnar format
  (``{"signature_name": ..., "inputs": {name: nested list}}``), strings as ``{"b64": ...}``;
  non-finite floats as TF Serving writes them (``NaN``, ``Infinity``). JSON only: TF
  Serving's REST API has no binary tensors (its gRPC API does).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from ..batching.spec import TensorSpec
from ..exceptions import ModelLoadError
from .remote_http import RemoteRunner

__all__ = ["TF_DTYPES", "RemoteTFServingRunner"]

#: TensorFlow's DataType names (TF Serving's metadata) -> numpy dtypes.
TF_DTYPES: dict[str, np.dtype[Any]] = {
    "DT_FLOAT": np.dtype(np.float32),
    "DT_DOUBLE": np.dtype(np.float64),
    "DT_HALF": np.dtype(np.float16),
    "DT_INT8": np.dtype(np.int8),
    "DT_INT16": np.dtype(np.int16),
    "DT_INT32": np.dtype(np.int32),
    "DT_INT64": np.dtype(np.int64),
    "DT_UINT8": np.dtype(np.uint8),
    "DT_UINT16": np.dtype(np.uint16),
    "DT_UINT32": np.dtype(np.uint32),
    "DT_UINT64": np.dtype(np.uint64),
    "DT_BOOL": np.dtype(np.bool_),
    "DT_STRING": np.dtype(object),
}


class RemoteTFServingRunner(RemoteRunner):
    """The model at ``url`` on TF Serving's REST API (see the module docstring)."""

    kind = "remote_tfserving"

    def __init__(
        self, url: str, *, signature: str = "serving_default", timeout: float = 30.0, connections: int = 1
    ) -> None:
        super().__init__(url, timeout=timeout, connections=connections)
        self.signature = signature
        try:
            meta = self._get_json("/metadata")
            try:
                signatures = meta["metadata"]["signature_def"]["signature_def"]
            except (KeyError, TypeError):
                raise ModelLoadError(f"GET {self.url}/metadata did not answer TF Serving's metadata") from None
            if signature not in signatures:
                raise ModelLoadError(
                    f"the model at {self.url} has no signature {signature!r}; it has: "
                    + (", ".join(sorted(signatures)) or "none")
                )
            self.input_specs = self._specs(signatures[signature], "inputs")
            self.output_specs = self._specs(signatures[signature], "outputs")
            if not self.input_specs:
                raise ModelLoadError(f"signature {signature!r} at {self.url} lists no inputs")
            self.version = str((meta.get("model_spec") or {}).get("version", ""))
        except BaseException:
            self.close()
            raise

    def _specs(self, signature_def: Mapping[str, Any], key: str) -> dict[str, TensorSpec]:
        specs: dict[str, TensorSpec] = {}
        for name, info in (signature_def.get(key) or {}).items():
            try:
                dtype = TF_DTYPES[info["dtype"]]
                shape_info = info.get("tensor_shape") or {}
                shape = (
                    None
                    if shape_info.get("unknown_rank")
                    else tuple(None if int(d["size"]) < 0 else int(d["size"]) for d in shape_info.get("dim", []))
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ModelLoadError(f"the metadata at {self.url}: {key} {name!r}: unreadable ({exc!r})") from None
            if shape is not None and (not shape or shape[0] is not None):
                raise ModelLoadError(
                    f"the metadata at {self.url}: {key[:-1]} {name!r} has shape {list(shape)}, without a "
                    "variable first (batch) dimension; this runner sends whole batches"
                )
            specs[str(name)] = TensorSpec(str(name), dtype, shape)
        return specs

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        payload = {
            "signature_name": self.signature,
            "inputs": {name: _to_json(inputs[name]) for name in self.input_specs},
        }
        finite = all(a.dtype.kind != "f" or np.isfinite(a).all() for a in inputs.values())
        # orjson writes NaN and infinities as null; TF Serving reads and writes them as tokens.
        body = orjson.dumps(payload) if finite else json.dumps(payload).encode()
        response = self._post(":predict", body, {"Content-Type": "application/json"})
        try:
            try:
                answer = orjson.loads(response.data)
            except orjson.JSONDecodeError:
                answer = json.loads(response.data)  # NaN, Infinity
            outputs = answer["outputs"]
            if not isinstance(outputs, dict):  # one output: TF Serving gives the tensor itself
                outputs = {next(iter(self.output_specs), "outputs"): outputs}
            return {name: _from_json(value, self.output_specs.get(name)) for name, value in outputs.items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise self.unreadable(exc) from None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "signature": self.signature, "version": self.version}


def _to_json(array: np.ndarray) -> Any:
    if array.dtype.kind in "OSU":
        flat = [
            {"b64": base64.b64encode(v if isinstance(v, bytes) else str(v).encode()).decode("ascii")}
            for v in array.reshape(-1)
        ]
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out.reshape(array.shape).tolist()
    return array.tolist()


def _from_json(value: Any, spec: TensorSpec | None) -> np.ndarray:
    """An output as an array: of the signature's dtype; strings (and ``{"b64"}``) as bytes."""
    if spec is None:  # an output the metadata did not list
        array = np.asarray(value, dtype=object) if _holds_strings(value) else np.asarray(value)
        return _from_json(value, TensorSpec("", np.dtype(object), None)) if array.dtype == object else array
    if not spec.is_string:
        return np.asarray(value, dtype=spec.dtype)
    flat = np.asarray(value, dtype=object)
    out = np.empty(flat.size, dtype=object)
    out[:] = [base64.b64decode(v["b64"]) if isinstance(v, dict) else str(v).encode("utf-8") for v in flat.reshape(-1)]
    return out.reshape(flat.shape)


def _holds_strings(value: Any) -> bool:
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, str | dict)
