"""The codec: serialize -> compress -> frame, and back, with a SHA-256 check on every decode.

A frame is ``MAGIC (2 bytes) | compression code (1) | original length (uint32, big endian) |
payload``. The checksum is the SHA-256 of the serialized, *uncompressed* JSON, stored beside the
frame by the backend; decoding recomputes it, so corruption anywhere (stored bytes, a flipped
compression code or length, a bad decompressor) is caught instead of returned. The recorded
length also bounds decompression, so a crafted frame cannot inflate past ``max_bytes``.
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import lz4.block
import orjson

from persistence.errors import StateIntegrityError, StateSerializationError
from persistence.types import CompressionType

MAGIC = b"\xa7S"
_HEADER = struct.Struct(">2sBI")
_CODES = {CompressionType.NONE: 0, CompressionType.LZ4: 1, CompressionType.ZLIB: 2}
_TYPES = {code: kind for kind, code in _CODES.items()}

# Serialize only what JSON represents exactly: datetimes, dataclasses and subclasses of
# builtins are passed through to fail loudly rather than be converted into something else.
_DUMP_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_INT_RANGE = (-(2**63), 2**64 - 1)
MAX_NESTING = 254  # the deepest nesting of lists and dicts orjson serializes

DEFAULT_MAX_BYTES = 32 * 1024 * 1024
DEFAULT_THRESHOLD = 128
_INFLATE_STEP = 1024 * 1024


@dataclass(slots=True)  # not frozen: built on every save, and frozen __init__ is far slower
class Encoded:
    """A framed version ready to store, with the figures its metadata records."""

    frame: bytes
    checksum: str
    original_size: int
    compression: CompressionType


def dumps(value: Any, *, field: str = "state") -> bytes:
    """JSON bytes that load back equal to ``value``, or StateSerializationError naming the path."""
    try:
        data = orjson.dumps(value, option=_DUMP_OPTIONS)
    except (orjson.JSONEncodeError, RecursionError) as exc:
        raise StateSerializationError(_explain(value, field) or f"{field}: {exc}") from exc
    # orjson writes NaN as null and tuples as lists; comparing the round trip catches every
    # such silent change in C, and only a failure pays for the slow walk that names the path.
    if orjson.loads(data) != value:
        raise StateSerializationError(
            _explain(value, field) or f"{field} does not round-trip exactly through JSON"
        )
    return data


def loads(data: bytes) -> Any:
    return orjson.loads(data)


def checksum(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


def encode(
    value: Any,
    compression: CompressionType,
    *,
    threshold: int = DEFAULT_THRESHOLD,
    max_bytes: int = DEFAULT_MAX_BYTES,
    field: str = "state",
) -> Encoded:
    """Serialize, compress where it pays (at least ``threshold`` bytes and smaller), and frame."""
    data = dumps(value, field=field)
    if len(data) > max_bytes:
        raise ValueError(
            f"{field} is {len(data)} bytes as JSON, over the store's max_state_bytes ({max_bytes})"
        )
    used, payload = CompressionType.NONE, data
    if compression is not CompressionType.NONE and len(data) >= threshold:
        packed = _compress(compression, data)
        if len(packed) < len(data):
            used, payload = compression, packed
    frame = _HEADER.pack(MAGIC, _CODES[used], len(data)) + payload
    return Encoded(frame, checksum(data), len(data), used)


def decode(frame: bytes, expected_checksum: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """The value stored in ``frame``; StateIntegrityError if anything about it is off."""
    data = unframe(frame, max_bytes=max_bytes)
    if checksum(data) != expected_checksum:
        raise StateIntegrityError("checksum mismatch: the stored bytes were altered")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:  # only reachable if the checksum itself was forged
        raise StateIntegrityError(f"stored JSON is malformed: {exc}") from exc


def unframe(frame: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes | bytearray:
    """The serialized bytes inside a frame, decompressed within the recorded length."""
    if len(frame) < _HEADER.size:
        raise StateIntegrityError(f"frame is truncated ({len(frame)} bytes)")
    magic, code, length = _HEADER.unpack_from(frame)
    if magic != MAGIC:
        raise StateIntegrityError("frame has an unknown header")
    if code not in _TYPES:
        raise StateIntegrityError(f"frame names unknown compression code {code}")
    if length > max_bytes:
        raise StateIntegrityError(
            f"frame claims {length} bytes uncompressed, over max_state_bytes ({max_bytes}); "
            "a store opened with a higher limit wrote it, or the frame is corrupt"
        )
    payload = memoryview(frame)[_HEADER.size :]
    try:
        data = _decompress(_TYPES[code], payload, length)
    except (lz4.block.LZ4BlockError, zlib.error, ValueError, MemoryError) as exc:
        raise StateIntegrityError(f"payload does not decompress: {exc}") from exc
    if len(data) != length:
        raise StateIntegrityError(
            f"payload decodes to {len(data)} bytes, the frame records {length}"
        )
    return data


def _compress(kind: CompressionType, data: bytes) -> bytes:
    if kind is CompressionType.LZ4:
        return bytes(lz4.block.compress(data, store_size=False))
    return zlib.compress(data, 6)


def _decompress(kind: CompressionType, payload: memoryview, length: int) -> bytes | bytearray:
    if kind is CompressionType.NONE:
        return bytes(payload)
    if kind is CompressionType.LZ4:
        return bytes(lz4.block.decompress(payload, uncompressed_size=length))
    # Inflate in steps into a buffer of the recorded size: the peak stays near that size,
    # where one big decompress() would grow (and copy) its output up to twice over.
    out = bytearray(length)
    inflater = zlib.decompressobj()
    pos, tail = 0, bytes(payload)
    while tail and not inflater.eof:
        chunk = inflater.decompress(tail, _INFLATE_STEP)
        if pos + len(chunk) > length:
            raise ValueError("zlib stream inflates past the recorded length")
        out[pos : pos + len(chunk)] = chunk
        pos += len(chunk)
        tail = inflater.unconsumed_tail
    if pos != length or not inflater.eof or tail:
        raise ValueError("zlib stream is longer or shorter than recorded")
    return out


def _explain(value: Any, path: str) -> str | None:
    """The first place in ``value`` that JSON cannot hold exactly, as a readable message."""
    stack: list[tuple[str, Any, int]] = [(path, value, 0)]
    while stack:
        where, item, depth = stack.pop()
        if depth > MAX_NESTING:
            shown = where if len(where) <= 80 else f"{where[:60]}…{where[-16:]}"
            return f"{path} is nested deeper than {MAX_NESTING} levels (at {shown})"
        kind = type(item)
        if item is None or kind in (bool, str):
            if kind is str and not _is_utf8(item):
                return f"{where} contains a lone surrogate, which is not valid UTF-8"
            continue
        if kind is int:
            if not _INT_RANGE[0] <= item <= _INT_RANGE[1]:
                return f"{where} is an integer outside the 64-bit range"
            continue
        if kind is float:
            if not math.isfinite(item):
                return f"{where} is {item!r}, which JSON cannot represent"
            continue
        if kind is dict:
            for key, sub in item.items():
                if type(key) is not str:
                    return f"{where} has a non-string key {key!r} (JSON keys are strings)"
                if not _is_utf8(key):
                    return f"{where} has a key with a lone surrogate"
                stack.append((f"{where}[{key!r}]", sub, depth + 1))
            continue
        if kind is list:
            stack.extend((f"{where}[{i}]", sub, depth + 1) for i, sub in enumerate(item))
            continue
        return f"{where} is a {kind.__name__}, which is not a JSON type (use dict, list, str, ...)"
    return None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
