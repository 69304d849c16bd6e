"""Byte compatibility with JsonPlusSerializer's "msgpack" type, both directions."""

from __future__ import annotations

import datetime
import enum
import gc
import math
import sys
import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer, _msgpack_enc

from fastcheckpoint.errors import CheckpointError, DeserializationError, SerializationError
from fastcheckpoint.serde import RustSerializer
from tests.corpus import corpus


def same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype and (a == b).all()
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, BaseException) or isinstance(b, BaseException):
        return repr(a) == repr(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=False))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


CORPUS = [*corpus(), float("nan"), np.arange(12, dtype=np.int32).reshape(3, 4), np.ones((2, 3), order="F")]


@pytest.mark.parametrize("value", CORPUS, ids=lambda v: type(v).__name__)
def test_both_directions(value, upstream: JsonPlusSerializer, ours: RustSerializer) -> None:
    up_typed = upstream.dumps_typed(value)
    our_typed = ours.dumps_typed(value)
    assert our_typed[0] == up_typed[0]
    baseline = upstream.loads_typed(up_typed)
    # What we write, upstream reads back to what its own round trip gives...
    assert same(upstream.loads_typed(our_typed), baseline)
    # ...and what upstream wrote, we read back to the same.
    assert same(ours.loads_typed(up_typed), baseline)
    assert same(ours.loads_typed(our_typed), baseline)


@pytest.mark.parametrize("value", CORPUS, ids=lambda v: type(v).__name__)
def test_bytes_identical(value) -> None:
    """Stronger than required: the bytes themselves are ormsgpack's (a model
    nested in a model included: written as its ``model_dump()`` holds it)."""
    if isinstance(value, (bytes, bytearray)):
        return
    assert RustSerializer().codec.dumps(value) == _msgpack_enc(value)


class _Uuid(uuid.UUID):
    pass


class _Date(datetime.date):
    pass


class _Str(str):
    pass


class _TupleEnum(tuple, enum.Enum):
    A = (1, "a")


class _Num(enum.IntEnum):
    ONE = 1


KEY_CASES = [
    {uuid.UUID(int=0): 1, uuid.UUID(int=2**128 - 1): 2, uuid.uuid4(): 3},
    {datetime.date(1, 1, 1): 1, datetime.date(9999, 12, 31): 2},
    {datetime.datetime(2024, 5, 6, 7, 8, 9): 1, datetime.time(1, 2, 3): 2},
    {_Num.ONE: 1, _TupleEnum.A: 2, _Str("s"): 3, True: 4, b"b": 5},
    {(1, (uuid.UUID(int=9), datetime.date(2020, 1, 1)), "t"): 1},
]


@pytest.mark.parametrize("value", KEY_CASES, ids=range(len(KEY_CASES)))
def test_non_str_dict_keys_written_as_ormsgpack_writes_them(value) -> None:
    assert RustSerializer().codec.dumps(value) == _msgpack_enc(value)


def test_subclassed_uuid_and_date_keys_written_as_text(upstream, ours) -> None:
    # ormsgpack refuses these keys (so upstream cannot save such a state at all);
    # we write the text their base class would give, which upstream reads back.
    value = {_Uuid(int=7): 1, _Date(2024, 2, 29): 2}
    with pytest.raises(TypeError):
        _msgpack_enc(value)
    expected = {str(uuid.UUID(int=7)): 1, "2024-02-29": 2}
    assert upstream.loads_typed(ours.dumps_typed(value)) == expected


def test_lone_surrogates_replaced_like_upstream(upstream, ours) -> None:
    v = "a\ud800b\udfff"
    assert ours.dumps_typed(v) == upstream.dumps_typed(v)
    assert ours.loads_typed(ours.dumps_typed(v)) == "a?b?"


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, [2**70], {"k": 10**30}])
def test_ints_beyond_64_bits_are_a_clear_error(value, upstream, ours) -> None:
    with pytest.raises(TypeError):
        upstream.dumps_typed(value)
    with pytest.raises(SerializationError, match="64-bit"):
        ours.dumps_typed(value)


@pytest.mark.parametrize(
    "value",
    [object(), np.array([1, "a"], dtype=object), {frozenset([1]): 2}, type("Sub", (tuple,), {})((1,))],
    ids=["object", "numpy-object", "frozenset-key", "tuple-subclass"],
)
def test_unserializable_values_raise_typed_type_errors(value, ours) -> None:
    with pytest.raises(SerializationError) as info:
        ours.dumps_typed(value)
    assert isinstance(info.value, TypeError) and isinstance(info.value, CheckpointError)


def test_pickle_fallback_only_when_asked() -> None:
    class Odd:
        def __eq__(self, other):
            return isinstance(other, Odd)

    globals()["Odd"] = Odd
    Odd.__qualname__ = "Odd"
    Odd.__module__ = __name__
    with pytest.raises(SerializationError):
        RustSerializer().dumps_typed(Odd())
    s = RustSerializer(pickle_fallback=True)
    typed = s.dumps_typed(Odd())
    assert typed[0] == "pickle"
    assert s.loads_typed(typed) == Odd()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=5)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=8) | st.integers(-5, 5), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_hypothesis_round_trip_and_bytes(value) -> None:
    ours = RustSerializer()
    enc = ours.codec.dumps(value)
    assert enc == _msgpack_enc(value)
    up = JsonPlusSerializer()
    assert same(ours.codec.loads(enc), up.loads_typed(("msgpack", enc)))


# Short non-ASCII text is built through a different CPython call than long or
# ASCII text: one, two and four byte-wide characters mixed, around that cut-off.
@settings(max_examples=300)
@given(st.text(alphabet="a\u00e9\u00ff\u0100\u2713\uffff\U0001f389\U0010ffff", max_size=40))
def test_mixed_width_text_decodes_exactly(text) -> None:
    ours = RustSerializer()
    for value in (text, {text: [text]}):
        decoded = ours.codec.loads(_msgpack_enc(value))
        assert decoded == value
        assert all(type(s) is str for s in (decoded if isinstance(decoded, str) else [*decoded, *decoded[text]]))


@pytest.mark.parametrize("bad", [b"\xa2\xc3\x28", b"\xa4\xed\xa0\x80a", b"\xa3\xf4\x90\x80", b"\xa2\xe2\x9c"])
def test_invalid_utf8_in_short_text_is_a_typed_error(bad) -> None:
    with pytest.raises(DeserializationError, match="invalid UTF-8"):
        RustSerializer().codec.loads(bad)


# Keys from a small alphabet share prefixes, suffixes and lengths, so many of
# them land on the same slots of the decoder's key cache (inputs >= 1 KB).
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.dictionaries(st.text(alphabet="ab_\u00e9", max_size=20), st.integers(0, 3), max_size=8),
        min_size=1,
        max_size=60,
    )
)
def test_repeated_keys_of_large_inputs_decode_exactly_and_interned(dicts) -> None:
    ours = RustSerializer()
    value = [dicts, b"\x00" * 1024]
    enc = ours.codec.dumps(value)
    decoded = ours.codec.loads(enc)
    assert decoded == JsonPlusSerializer().loads_typed(("msgpack", enc))
    for d in decoded[0]:
        assert all(k is sys.intern(k) for k in d)


def test_large_decodes_pause_the_gc_and_restore_its_state() -> None:
    ours = RustSerializer()
    typed = ours.dumps_typed([{"k": "v", "n": i, "l": [i]} for i in range(20_000)])
    runs: list[str] = []

    def seen(phase: str, info: dict) -> None:
        if phase == "start":
            runs.append(phase)

    gc.callbacks.append(seen)
    try:
        assert len(ours.loads_typed(typed)) == 20_000
    finally:
        gc.callbacks.remove(seen)
    # 40,000 new containers would set off dozens of collections; paused, at most the
    # one that follows the decode runs.
    assert len(runs) <= 1, runs
    assert gc.isenabled()
    with pytest.raises(CheckpointError):
        ours.loads_typed((typed[0], typed[1][:-1]))
    assert gc.isenabled(), "an error restores the GC too"
    gc.disable()
    try:
        ours.loads_typed(typed)
        assert not gc.isenabled(), "a GC the caller disabled stays disabled"
    finally:
        gc.enable()


def test_decoded_messages_field_sets_match_upstream_and_stay_mutable(upstream, ours) -> None:
    from langchain_core.messages import AIMessage, HumanMessage

    history = [HumanMessage("hi", id="h"), AIMessage("yo", id="a", name="bot")]
    typed = ours.dumps_typed(history)
    mine, theirs = ours.loads_typed(typed), upstream.loads_typed(typed)
    for m, t in zip(mine, theirs, strict=True):
        assert m == t and m.model_fields_set == t.model_fields_set
        # Field names only: the cyclic GC is not asked to walk it (see codec.rs).
        assert not gc.is_tracked(m.__pydantic_fields_set__)
        m.name = "renamed"
        assert "name" in m.model_fields_set and m.model_dump()["name"] == "renamed"
