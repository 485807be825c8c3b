"""TensorFlow Serving's Classify and Regress APIs: ``:classify`` and ``:regress``.

    POST /v1/models/<name>:regress   {"examples": [{"x": 1.0}, ...], "context": {...}}
                                  -> {"results": [2.5, ...]}
    POST /v1/models/<name>:classify  same body
                                  -> {"results": [[["<label>", <score>], ...], ...]}

They serve a model whose configured ``SIGNATURE`` is a classification or regression
signature (``method_name`` ``tensorflow/serving/classify`` or ``.../regress``) taking
serialized ``tf.Example`` strings: each example (merged over ``context``) is
serialized (``tf_example``) and batched like any other request. Another signature is
refused as TensorFlow Serving refuses it: a 400 saying which method it expected.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..batching import Prediction
from ..conf import ModelConfig
from ..runners.savedmodel_meta import TensorMeta
from . import codec
from .errors import ServingError
from .tf_example import serialize_example
from .tfserving_body import check_signature_name

__all__ = ["METHODS", "check_signature", "parse_examples", "render_results"]

#: URL verb -> (the signature method_name it needs, the word TF Serving's message uses).
METHODS = {
    ":classify": ("tensorflow/serving/classify", "classification"),
    ":regress": ("tensorflow/serving/regress", "regression"),
}


def check_signature(action: str, method_name: str, inputs: tuple[TensorMeta, ...]) -> str:
    """The input that takes the examples; refuses a signature of another kind."""
    expected, kind = METHODS[action]
    if method_name != expected:
        raise ServingError("bad_request", f"Expected {kind} signature method_name to be {expected}. Was: {method_name}")
    if len(inputs) != 1 or inputs[0].dtype != "string":
        raise ServingError("bad_request", f"the {kind} signature must take one input of serialized tf.Example strings")
    return inputs[0].name


def parse_examples(body: bytes, config: ModelConfig) -> np.ndarray:
    """Serialized ``tf.Example``s from a Classify/Regress body, one per example."""
    doc = codec.loads(body, what="the request body")
    if not isinstance(doc, dict):
        raise ServingError("bad_request", "the request body must be a JSON object with 'examples'")
    check_signature_name(doc, config)
    examples = doc.get("examples")
    if not isinstance(examples, list) or not examples or not all(isinstance(e, dict) for e in examples):
        raise ServingError("bad_request", "'examples' must be a non-empty list of objects (feature name -> value)")
    context = doc.get("context", {})
    if not isinstance(context, dict):
        raise ServingError("bad_request", "'context' must be an object (feature name -> value)")
    if b'"b64"' in body:
        context, examples = codec.decode_b64(context), codec.decode_b64(examples)
    serialized = np.empty(len(examples), dtype=object)
    try:
        serialized[:] = [serialize_example({**context, **example}) for example in examples]
    except ValueError as exc:
        raise ServingError("bad_request", str(exc)) from None
    return serialized


def render_results(action: str, prediction: Prediction) -> dict[str, Any]:
    outputs = prediction.outputs
    if action == ":regress":
        values = outputs.get("outputs")
        if values is None:
            raise ServingError("model_error", "the regression signature has no 'outputs' tensor")
        return {"results": values.reshape(len(values), -1)[:, 0]}
    scores, classes = outputs.get("scores"), outputs.get("classes")
    if scores is None and classes is None:
        raise ServingError("model_error", "the classification signature has neither 'classes' nor 'scores'")
    rows = len(scores if scores is not None else classes)  # type: ignore[arg-type]
    score_rows = None if scores is None else scores.reshape(rows, -1)
    class_rows = None if classes is None else classes.reshape(rows, -1)
    width = (score_rows if score_rows is not None else class_rows).shape[1]  # type: ignore[union-attr]
    results = [
        [
            [
                _label(class_rows[i, j]) if class_rows is not None else "",
                float(score_rows[i, j]) if score_rows is not None else 0.0,
            ]
            for j in range(width)
        ]
        for i in range(rows)
    ]
    return {"results": results}


def _label(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
