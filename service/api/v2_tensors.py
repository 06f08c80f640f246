"""Tensors of the Open Inference Protocol (v2) over HTTP: JSON ``data`` and the binary tensor data extension.

Binary extension (Triton's ``extension_binary_data.md``): the body is the JSON inference header of
``Inference-Header-Content-Length`` bytes, then the binary tensors back to back, in the order of the
tensors that carry ``parameters.binary_data_size``. Binary data is little-endian, row major, no padding;
a BYTES element is a 4-byte little-endian length followed by its bytes.

Decoding reads a binary input with ``np.frombuffer`` on the body itself (no copy); every failure raises
:class:`TensorError`, whose message says what to fix (HTTP 400).
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass

import numpy as np

HEADER_LENGTH = "inference-header-content-length"
BINARY_SIZE = "binary_data_size"
BINARY_MEDIA_TYPE = "application/octet-stream"
DTYPES = {"BOOL": np.dtype("?"), "UINT8": np.dtype("<u1"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
          "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
"""Protocol datatype -> numpy dtype of the fixed-size types this service sends or reads (BYTES apart)."""


class TensorError(ValueError):
    """A tensor or the body that carries it cannot be read; the message says what to fix (HTTP 400)."""


@dataclass(frozen=True)
class Body:
    """A request body split per the binary extension: ``header`` the JSON inference request, ``binary`` the
    bytes after it (empty without the extension)."""

    header: memoryview
    binary: memoryview


def split_body(body: bytearray, header_length: str | None) -> Body:
    """Split ``body`` at ``header_length`` (the Inference-Header-Content-Length header; None: all JSON)."""
    view = memoryview(body)
    if header_length is None:
        return Body(view, view[len(view):])
    if not header_length.isdigit():
        raise TensorError(f"Inference-Header-Content-Length must be a byte count, got {header_length!r}")
    length = int(header_length)
    if length > len(body):
        raise TensorError(f"Inference-Header-Content-Length is {length} but the body has only {len(body)} bytes")
    return Body(view[:length], view[length:])


def parse_header(header: memoryview) -> object:
    """The JSON inference request in ``header``."""
    try:
        return json.loads(header.tobytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TensorError(f"the inference request is not valid JSON ({err}); with binary tensors, "
                          "Inference-Header-Content-Length must be the JSON's length in bytes") from None


class BinaryReader:
    """Hands out the binary tensors of a body in order; :meth:`finish` checks none is left over."""

    def __init__(self, binary: memoryview):
        self.binary, self.offset = binary, 0

    def take(self, name: str, size: int) -> memoryview:
        """The next ``size`` bytes, for tensor ``name``."""
        if self.offset + size > len(self.binary):
            raise TensorError(f"input {name!r}: binary_data_size is {size} but only "
                              f"{len(self.binary) - self.offset} bytes of binary data are left in the body")
        chunk = self.binary[self.offset:self.offset + size]
        self.offset += size
        return chunk

    def finish(self) -> None:
        """Refuse binary data that no input claimed (a length header that lies, a missing input)."""
        extra = len(self.binary) - self.offset
        if extra:
            raise TensorError(f"{extra} bytes of binary data after the inputs that no input's binary_data_size "
                              "claims; check Inference-Header-Content-Length and each binary_data_size")


def read_tensor(name: str, datatype: str, shape: list[int], data: object, binary: memoryview | None) -> np.ndarray:
    """The tensor ``name`` of ``shape`` as a numpy array of ``datatype`` (UINT8 or FP32): from ``binary``
    (a read-only view of the body, no copy) when given, else from JSON ``data`` (flat or nested, row major)."""
    dtype = DTYPES[datatype]
    count = math.prod(shape)
    if binary is not None:
        if len(binary) != count * dtype.itemsize:
            raise TensorError(f"input {name!r}: binary_data_size is {len(binary)} bytes but shape {shape} of "
                              f"{datatype} needs {count * dtype.itemsize}")
        return np.frombuffer(binary, dtype=dtype).reshape(shape)
    if not isinstance(data, list):
        raise TensorError(f"input {name!r}: 'data' must be a JSON array of numbers (or send it as binary "
                          "data with parameters.binary_data_size)")
    try:
        values = np.asarray(data, dtype=np.float64).ravel()
    except (ValueError, TypeError):
        raise TensorError(f"input {name!r}: 'data' must hold numbers only, in a flat or evenly nested array") from None
    if values.size != count:
        raise TensorError(f"input {name!r}: 'data' holds {values.size} values but shape {shape} needs {count}")
    if datatype == "UINT8" and not np.array_equal(values, np.clip(np.round(values), 0, 255)):
        raise TensorError(f"input {name!r}: UINT8 data must be whole numbers from 0 to 255")
    return values.astype(dtype).reshape(shape)


def bytes_blob(values: list[str]) -> bytes:
    """BYTES elements as binary data: each a 4-byte little-endian length, then its UTF-8 bytes."""
    encoded = [value.encode() for value in values]
    return b"".join(struct.pack("<I", len(e)) + e for e in encoded)


def write_tensor(name: str, values: np.ndarray | list[str], binary: bool) -> tuple[dict, bytes | None]:
    """One response output: its JSON object and, when ``binary``, its bytes (None otherwise). ``values``
    is a numpy array of a ``DTYPES`` type, or a list of strings (BYTES, shape [len])."""
    if isinstance(values, list):
        out = {"name": name, "datatype": "BYTES", "shape": [len(values)]}
        blob = bytes_blob(values) if binary else None
    else:
        datatype = next(key for key, dtype in DTYPES.items() if dtype == values.dtype)
        out = {"name": name, "datatype": datatype, "shape": list(values.shape)}
        blob = np.ascontiguousarray(values).tobytes() if binary else None
    if blob is None:
        out["data"] = values if isinstance(values, list) else values.ravel().tolist()
    else:
        out["parameters"] = {BINARY_SIZE: len(blob)}
    return out, blob


def response_body(header: dict, blobs: list[bytes]) -> tuple[bytes, str, dict[str, str]]:
    """The response body (JSON, then the binary outputs), its media type and the headers that describe it."""
    text = json.dumps(header, separators=(",", ":")).encode()
    if not blobs:
        return text, "application/json", {}
    return b"".join([text, *blobs]), BINARY_MEDIA_TYPE, {HEADER_LENGTH: str(len(text))}
