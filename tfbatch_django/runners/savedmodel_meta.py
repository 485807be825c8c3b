"""Read a SavedModel's signatures from ``saved_model.pb`` without importing TensorFlow.

``manage.py check`` runs on every management command and must stay fast, so the
system checks ("unknown signature") and the metadata endpoints read the protobuf wire
format directly: a SavedModel is a few nested messages, and the signature map sits a
couple of levels down. Only the fields needed are decoded; everything else (the
graph, often most of the file) is skipped by its length prefix.

Also resolves TensorFlow Serving's directory layout: a base path holding numbered
version directories serves the highest version.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["SignatureMeta", "TensorMeta", "is_tf1_export", "read_signatures", "resolve_savedmodel_dir"]

# tensorflow/core/framework/types.proto DataType -> numpy dtype name.
_DTYPES = {
    1: "float32",
    2: "float64",
    3: "int32",
    4: "uint8",
    5: "int16",
    6: "int8",
    7: "string",
    9: "int64",
    10: "bool",
    14: "bfloat16",
    17: "uint16",
    19: "float16",
    22: "uint32",
    23: "uint64",
}


@dataclass(frozen=True)
class TensorMeta:
    name: str  # the signature's key for it
    dtype: str
    shape: tuple[int | None, ...] | None  # None: unknown rank; None in it: unknown size
    tensor_name: str = ""  # the graph tensor ("x:0"), as TF Serving's metadata shows it


@dataclass(frozen=True)
class SignatureMeta:
    name: str
    method_name: str
    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]


def resolve_savedmodel_dir(path: str | Path) -> tuple[Path, int | None]:
    """The directory holding ``saved_model.pb`` and its version number, if any.

    Accepts the SavedModel directory itself or a TF Serving model base path (the
    highest numeric subdirectory wins). Raises FileNotFoundError with what was looked for.
    """
    base = Path(path)
    if (base / "saved_model.pb").is_file():
        version = int(base.name) if base.name.isdigit() else None
        return base, version
    if base.is_dir():
        versions = sorted(
            (int(p.name), p) for p in base.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()
        )
        if versions:
            return versions[-1][1], versions[-1][0]
    raise FileNotFoundError(
        f"{base} is not a SavedModel: no saved_model.pb in it, nor in a numbered version directory under it"
    )


def is_tf1_export(path: str | Path) -> bool:
    """True for a graph-only (TF1) export: its meta graph has no object graph, so TensorFlow
    loads it with its v1 compatibility loader (signatures over a graph, reference variables)."""
    meta_graph = _serving_meta_graph(path)
    return meta_graph is not None and not any(f == 7 for f, _ in _fields(meta_graph))  # object_graph_def


def read_signatures(path: str | Path, *, internal: bool = False) -> dict[str, SignatureMeta]:
    """Signature name -> inputs/outputs, from the SavedModel at ``path``.

    From the meta graph tagged ``serve``, the one TensorFlow Serving loads (else the
    first). ``internal=True`` keeps TensorFlow's own ``__saved_model_init_op``, which
    TensorFlow Serving's metadata lists; it is not a servable signature.
    """
    meta_graph = _serving_meta_graph(path)
    return {} if meta_graph is None else _signatures(meta_graph, internal)


def _serving_meta_graph(path: str | Path) -> memoryview | None:
    directory, _ = resolve_savedmodel_dir(path)
    data = memoryview((directory / "saved_model.pb").read_bytes())
    graphs = [v for f, v in _fields(data) if f == 2 and isinstance(v, memoryview)]  # SavedModel.meta_graphs
    for graph in graphs:
        for f, info in _fields(graph):
            if f == 1 and isinstance(info, memoryview):  # MetaGraphDef.meta_info_def
                tags = [bytes(t).decode() for tf, t in _fields(info) if tf == 4 and isinstance(t, memoryview)]
                if "serve" in tags:
                    return graph
    return graphs[0] if graphs else None


def _signatures(meta_graph: memoryview, internal: bool = False) -> dict[str, SignatureMeta]:
    out: dict[str, SignatureMeta] = {}
    for field, entry in _fields(meta_graph):
        if field != 5 or not isinstance(entry, memoryview):  # MetaGraphDef.signature_def
            continue
        key, body = _map_entry(entry)
        if key.startswith("__saved_model") and not internal:  # TF's internal init op
            continue
        inputs: list[TensorMeta] = []
        outputs: list[TensorMeta] = []
        method = ""
        for f, v in _fields(body):
            if f in (1, 2) and isinstance(v, memoryview):
                tname, info = _map_entry(v)
                (inputs if f == 1 else outputs).append(_tensor_info(tname, info))
            elif f == 3:
                method = bytes(v).decode() if isinstance(v, memoryview) else ""
        out[key] = SignatureMeta(key, method, tuple(inputs), tuple(outputs))
    return out


def _tensor_info(name: str, body: memoryview) -> TensorMeta:
    dtype = "unknown"
    shape: tuple[int | None, ...] | None = None
    tensor_name = ""
    for f, v in _fields(body):
        if f == 1 and isinstance(v, memoryview):
            tensor_name = bytes(v).decode()
        elif f == 2 and isinstance(v, int):
            dtype = _DTYPES.get(v, f"dtype_{v}")
        elif f == 3 and isinstance(v, memoryview):
            shape = _shape(v)
    return TensorMeta(name, dtype, shape, tensor_name)


def _shape(body: memoryview) -> tuple[int | None, ...] | None:
    dims: list[int | None] = []
    for f, v in _fields(body):
        if f == 3 and v:  # unknown_rank
            return None
        if f == 2 and isinstance(v, memoryview):
            size = -1
            for df, dv in _fields(v):
                if df == 1 and isinstance(dv, int):
                    size = dv - (1 << 64) if dv >= 1 << 63 else dv
            dims.append(None if size < 0 else size)
    return tuple(dims)


def _map_entry(body: memoryview) -> tuple[str, memoryview]:
    key, value = "", memoryview(b"")
    for f, v in _fields(body):
        if f == 1 and isinstance(v, memoryview):
            key = bytes(v).decode()
        elif f == 2 and isinstance(v, memoryview):
            value = v
    return key, value


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _fields(data: memoryview) -> list[tuple[int, int | memoryview]]:
    """Top-level (field number, value) pairs of one message; groups are not supported."""
    out: list[tuple[int, int | memoryview]] = []
    pos, end = 0, len(data)
    while pos < end:
        tag, pos = _varint(data, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((field, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            out.append((field, data[pos : pos + length]))
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return out
