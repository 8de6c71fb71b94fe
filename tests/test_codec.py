"""The codec: exact JSON round trips, compression only where it pays, every corruption caught."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persistence import codec
from persistence.errors import StateIntegrityError, StateSerializationError
from persistence.types import CompressionType
from tests.corruption import flip_byte

_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)))  # lone surrogates: not UTF-8
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_text, children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(
    value=st.dictionaries(_text, json_values, max_size=6),
    kind=st.sampled_from(list(CompressionType)),
)
def test_every_json_state_round_trips_exactly(value: dict, kind: CompressionType) -> None:
    encoded = codec.encode(value, kind, threshold=1)
    decoded = codec.decode(encoded.frame, encoded.checksum)
    assert decoded == value
    assert _same_float_types(decoded, value)
    assert encoded.compression in (kind, CompressionType.NONE)


def _same_float_types(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return all(_same_float_types(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return all(_same_float_types(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=300, max_size=2000), index=st.integers(min_value=0))
def test_any_single_byte_flip_is_caught(data: bytes, index: int) -> None:
    encoded = codec.encode({"blob": data.hex()}, CompressionType.LZ4)
    damaged = flip_byte(encoded.frame, index % len(encoded.frame))
    with pytest.raises(StateIntegrityError):
        codec.decode(damaged, encoded.checksum)


def test_compression_is_used_only_when_it_shrinks_the_payload() -> None:
    import os

    random_text = {"noise": os.urandom(2000).hex()[:1000] + "\u00e9"}
    repetitive = {"data": "abc" * 1000}
    assert codec.encode({"k": 1}, CompressionType.LZ4).compression is CompressionType.NONE
    assert codec.encode(repetitive, CompressionType.LZ4).compression is CompressionType.LZ4
    assert codec.encode(repetitive, CompressionType.ZLIB).compression is CompressionType.ZLIB
    noisy = codec.encode(random_text, CompressionType.LZ4)
    assert len(noisy.frame) <= noisy.original_size + 7


@pytest.mark.parametrize("kind", [CompressionType.LZ4, CompressionType.ZLIB])
def test_a_frame_claiming_more_than_the_cap_is_refused_before_inflating(kind) -> None:
    encoded = codec.encode({"data": "0" * 5_000_000}, kind)
    # The message names the limit and its likely cause: a reader opened with a lower limit.
    with pytest.raises(StateIntegrityError, match=r"max_state_bytes.*higher limit wrote it"):
        codec.decode(encoded.frame, encoded.checksum, max_bytes=1_000_000)


def test_a_frame_lying_about_its_length_is_refused() -> None:
    encoded = codec.encode({"data": "0" * 5000}, CompressionType.ZLIB)
    header = bytearray(encoded.frame[:7])
    header[3:7] = (100).to_bytes(4, "big")  # claims 100 bytes; the stream inflates to 5 KB
    with pytest.raises(StateIntegrityError):
        codec.decode(bytes(header) + encoded.frame[7:], encoded.checksum)


def test_truncated_and_foreign_frames_are_refused() -> None:
    encoded = codec.encode({"data": "abc" * 100}, CompressionType.LZ4)
    for bad in (b"", encoded.frame[:5], encoded.frame[:-3], b"{" + encoded.frame[1:]):
        with pytest.raises(StateIntegrityError):
            codec.decode(bad, encoded.checksum)


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"a": {"b": [1, math.nan]}}, "state['a']['b'][1]"),
        ({"a": (1,)}, "state['a']"),
        ({"a": {1: 2}}, "state['a']"),
        ({"s": {1, 2}}, "state['s']"),
    ],
)
def test_serialization_errors_name_the_path(value: object, where: str) -> None:
    with pytest.raises(StateSerializationError) as info:
        codec.dumps(value)
    assert where in str(info.value)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)


def nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def test_deep_nesting_is_refused_with_a_clear_error() -> None:
    with pytest.raises(StateSerializationError) as info:
        codec.dumps({"deep": nested(10_000)})
    message = str(info.value)
    assert message.startswith(f"state is nested deeper than {codec.MAX_NESTING} levels (at ")
    assert len(message) < 200  # the path to the deep end is shortened


def test_the_deepest_nesting_the_message_names_is_accepted() -> None:
    deepest = nested(codec.MAX_NESTING - 1)  # inside the state dict: MAX_NESTING levels
    assert codec.loads(codec.dumps({"deep": deepest})) == {"deep": deepest}
    with pytest.raises(StateSerializationError, match=f"deeper than {codec.MAX_NESTING}"):
        codec.dumps({"deep": [deepest]})


def test_a_state_larger_than_the_cap_is_refused_on_save() -> None:
    with pytest.raises(ValueError, match="max_state_bytes"):
        codec.encode({"data": "x" * 2000}, CompressionType.LZ4, max_bytes=1000)
