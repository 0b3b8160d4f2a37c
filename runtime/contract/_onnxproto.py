"""Find the external-data ``location`` strings of an ONNX file without importing ``onnx``.

Why not onnx: it is not a runtime dependency (the device has numpy + one backend). Why not trust the
backend: onnxruntime and OpenVINO each have their own (version-dependent) rules for external paths,
and we want one rule checked before any backend opens the file. The protobuf wire format is simple
and stable, so this walks it directly: only the messages that can hold a TensorProto are descended
into (Model -> Graph/Function/TrainingInfo -> Node -> Attribute -> Tensor/Graph/SparseTensor); every
other field, raw weight bytes included, is skipped by its length, so the cost is proportional to the
number of fields, not to the file size. Field numbers are those of onnx/onnx.proto (stable since
they are the on-disk format).
"""

from __future__ import annotations

import mmap
import os

from cmkd_edge.errors import BundleError

# message -> {field number: child message kind} for the fields that may lead to a TensorProto
_CHILDREN: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "function": {7: "node"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {13: "entry"},
}
_MAX_DEPTH = 64


def _varint(buf: memoryview | mmap.mmap, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _walk(buf: memoryview | mmap.mmap, start: int, end: int, kind: str, out: list[str],
          depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError("nesting too deep")
    children = _CHILDREN.get(kind, {})
    pos, key, value = start, None, None
    while pos < end:
        tag, pos = _varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            _, pos = _varint(buf, pos, end)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise ValueError("length past end of message")
            if kind == "entry" and number in (1, 2):
                text = bytes(buf[pos:pos + length]).decode("utf-8", "replace")
                key, value = (text, value) if number == 1 else (key, text)
            elif number in children:
                _walk(buf, pos, pos + length, children[number], out, depth + 1)
            pos += length
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > end:
            raise ValueError("field past end of message")
    if kind == "entry" and key == "location" and value is not None:
        out.append(value)


def external_data_locations(path: str | os.PathLike[str]) -> list[str]:
    """Every external-data ``location`` referenced by the ONNX model at ``path`` (may repeat).

    Raises:
        BundleError: the file is not a parseable ONNX protobuf.
    """
    out: list[str] = []
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise BundleError(f"ONNX file {os.fspath(path)!r} is empty")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            try:
                _walk(mm, 0, size, "model", out, 0)
            except (ValueError, IndexError) as exc:
                raise BundleError(f"{os.fspath(path)!r} is not a valid ONNX file ({exc})") from exc
    return out
