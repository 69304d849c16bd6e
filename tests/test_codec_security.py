"""Hostile and corrupt input: typed errors, no side effects, no crash."""

from __future__ import annotations

import json
import os
import random
import typing

import ormsgpack
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from fastcheckpoint.errors import CheckpointError, DeserializationError, DisallowedTypeError
from fastcheckpoint.serde import RustSerializer
from tests.corpus import Point, Profile, corpus


def ext(code: int, payload) -> bytes:
    return ormsgpack.packb(ormsgpack.Ext(code, ormsgpack.packb(payload)))


CALLABLES = [
    ("os", "system"),
    ("subprocess", "Popen"),
    ("subprocess", "check_output"),
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("os", "remove"),
]


@pytest.fixture
def canary(tmp_path):
    path = tmp_path / "canary"
    yield path
    assert not path.exists(), "a hostile payload ran a command"


@pytest.mark.parametrize("raise_refused", [False, True], ids=["as-upstream", "raise"])
@pytest.mark.parametrize("strict", [True, False], ids=["strict", "default"])
@pytest.mark.parametrize("target", CALLABLES, ids=lambda t: ".".join(t))
@pytest.mark.parametrize("code", [0, 1, 2, 3, 4, 5])
def test_callables_named_by_a_blob_are_refused(code, target, strict, raise_refused, canary) -> None:
    cmd = f"touch {canary}"
    arg = {0: cmd, 1: [cmd], 2: {"args": cmd}, 3: cmd, 4: {"args": cmd}, 5: {"args": cmd}}[code]
    payload = [*target, arg] + (["fromisoformat"] if code == 3 else ["model_validate_json"] if code == 5 else [])
    serde = RustSerializer(allowed_msgpack_modules=None if strict else True, raise_refused=raise_refused)
    if raise_refused:
        with pytest.raises(DisallowedTypeError):
            serde.loads_typed(("msgpack", ext(code, payload)))
    else:  # the stored arguments, as upstream returns a refused value: inert data
        assert serde.loads_typed(("msgpack", ext(code, payload))) == arg


def test_upstream_default_mode_would_have_run_it(tmp_path) -> None:
    """Why the refusal above matters: upstream's default imports and calls."""
    canary = tmp_path / "ran"
    JsonPlusSerializer(allowed_msgpack_modules=True).loads_typed(
        ("msgpack", ext(0, ["os", "system", f"touch {canary}"]))
    )
    assert canary.exists()


def test_strict_mode_refuses_user_types_but_allowlist_admits_them(caplog) -> None:
    typed = RustSerializer().dumps_typed(Profile(name="x"))
    with pytest.raises(DisallowedTypeError, match="allowed_msgpack_modules"):
        RustSerializer(allowed_msgpack_modules=None, raise_refused=True).loads_typed(typed)
    # By default as upstream: the field dict, with its warning and event.
    from langgraph.checkpoint.serde.event_hooks import register_serde_event_listener

    events: list = []
    unregister = register_serde_event_listener(events.append)
    try:
        for serde in (RustSerializer(allowed_msgpack_modules=None), JsonPlusSerializer(allowed_msgpack_modules=None)):
            assert serde.loads_typed(typed) == Profile(name="x").model_dump()
    finally:
        unregister()
    assert [e["kind"] for e in events] == ["msgpack_blocked", "msgpack_blocked"]
    assert "Blocked deserialization of tests.corpus.Profile" in caplog.text
    allowed = RustSerializer(allowed_msgpack_modules=None).with_msgpack_allowlist([Profile])
    assert allowed.loads_typed(typed) == Profile(name="x")


def test_strict_env_var_is_honoured() -> None:
    code = (
        "from fastcheckpoint.serde import RustSerializer;"
        "from tests.corpus import Profile;"
        "from fastcheckpoint.errors import DisallowedTypeError\n"
        "s = RustSerializer(raise_refused=True); t = s.dumps_typed(Profile(name='x'))\n"
        "try:\n s.loads_typed(t)\nexcept DisallowedTypeError:\n print('refused')"
    )
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "LANGGRAPH_STRICT_MSGPACK": "true"},
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    assert out.stdout.strip() == "refused"


def test_safe_types_load_in_strict_mode() -> None:
    strict = RustSerializer(allowed_msgpack_modules=None)
    from tests.corpus import messages

    for m in messages():
        assert strict.loads_typed(strict.dumps_typed(m)) == m


def test_pickle_refused_without_fallback() -> None:
    import pickle

    with pytest.raises(DisallowedTypeError):
        RustSerializer().loads_typed(("pickle", pickle.dumps(os.getcwd)))


def test_unknown_ext_code_is_an_error() -> None:
    with pytest.raises(DeserializationError):
        RustSerializer().loads_typed(("msgpack", ormsgpack.packb(ormsgpack.Ext(42, b"\x01"))))


def test_numpy_object_dtype_refused() -> None:
    payload = ("|O", [2], "C", b"\x00" * 16)
    with pytest.raises(DisallowedTypeError):
        RustSerializer().loads_typed(("msgpack", ext(6, list(payload))))


def test_deep_nesting_is_bounded_both_ways() -> None:
    s = RustSerializer()
    with pytest.raises(DeserializationError, match="deeper"):
        s.loads_typed(("msgpack", b"\x91" * 100_000 + b"\x01"))
    v: list = []
    for _ in range(5000):
        v = [v]
    with pytest.raises(TypeError, match="deeper"):
        s.dumps_typed(v)
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(TypeError):
        s.dumps_typed(cyclic)


@pytest.mark.parametrize(
    "data",
    [
        b"\xdd\xff\xff\xff\xff",
        b"\xdf\xff\xff\xff\xff",
        b"\xdb\xff\xff\xff\xff",
        b"\xc6\x7f\xff\xff\xff",
        b"\xc9\xff\xff\xff\xff\x01",
    ],
    ids=["array", "map", "str", "bin", "ext"],
)
def test_huge_declared_sizes_fail_fast(data) -> None:
    with pytest.raises(DeserializationError):
        RustSerializer().loads_typed(("msgpack", data))


def test_every_truncation_of_every_corpus_value_is_typed() -> None:
    s = RustSerializer()
    for value in corpus():
        typ, data = s.dumps_typed(value)
        if typ != "msgpack":
            continue
        for cut in range(len(data)) if len(data) < 400 else range(0, len(data), max(1, len(data) // 50)):
            with pytest.raises(CheckpointError):
                s.loads_typed(("msgpack", data[:cut]))


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_never_crash(data: bytes) -> None:
    try:
        RustSerializer().loads_typed(("msgpack", data))
    except CheckpointError:
        pass


def test_fuzz_byte_flips_of_real_payloads_never_crash() -> None:
    rng = random.Random(1234)
    s = RustSerializer(allowed_msgpack_modules=None)
    blobs = [s.dumps_typed(v)[1] for v in corpus() if s.dumps_typed(v)[0] == "msgpack"]
    for _ in range(int(os.environ.get("FC_FUZZ_ITERATIONS", "5000"))):
        data = bytearray(rng.choice(blobs))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            s.loads_typed(("msgpack", bytes(data)))
        except CheckpointError:
            pass
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError):
            # Constructors of safe types may reject a mutated argument; that is
            # an ordinary exception, never a crash.
            pass


@pytest.mark.parametrize("data", [b"\xd4\x06\x00", b"\xd5\x06\x93\x00\x00"])
def test_malformed_numpy_payloads_are_typed_errors(data: bytes) -> None:
    # Found by the random-bytes fuzzer: ext 6 (numpy) whose payload is not the
    # (dtype, shape, order, buffer) tuple.
    with pytest.raises(DeserializationError):
        RustSerializer().loads_typed(("msgpack", data))


def lc_json(lc: int, target: tuple[str, str], cmd: str) -> bytes:
    args = {"kwargs": {"args": cmd}} if lc == 1 else {"args": [cmd]}
    return json.dumps({"lc": lc, "type": "constructor", "id": list(target), **args}).encode()


@pytest.mark.parametrize("target", CALLABLES, ids=lambda t: ".".join(t))
@pytest.mark.parametrize("lc", [1, 2])
def test_json_tags_naming_callables_are_refused_in_strict_mode(lc, target, canary) -> None:
    payload = lc_json(lc, target, f"touch {canary}")
    with pytest.raises(DisallowedTypeError):
        RustSerializer(allowed_msgpack_modules=None, raise_refused=True).loads_typed(("json", payload))
    if lc == 2:  # as upstream: the raw dict (lc 1 is langchain-core's refusal, an error upstream too)
        assert RustSerializer(allowed_msgpack_modules=None).loads_typed(("json", payload)) == json.loads(payload)


@pytest.mark.parametrize("target", CALLABLES, ids=lambda t: ".".join(t))
def test_json_tags_never_call_functions_even_when_json_modules_are_allowed(target, tmp_path, canary) -> None:
    payload = lc_json(2, target, f"touch {canary}")
    with pytest.raises(DisallowedTypeError, match="not a data type"):
        RustSerializer(allowed_json_modules=True, raise_refused=True).loads_typed(("json", payload))
    assert RustSerializer(allowed_json_modules=True).loads_typed(("json", payload)) == json.loads(payload)
    # Upstream's default leaves the dict inert, and so do we.
    assert RustSerializer().loads_typed(("json", payload)) == json.loads(payload)
    if target == ("os", "system"):  # what upstream does once the modules are allowed
        ran = tmp_path / "ran"
        JsonPlusSerializer(allowed_json_modules=True).loads_typed(("json", lc_json(2, target, f"touch {ran}")))
        assert ran.exists()


def test_json_data_types_still_revive() -> None:
    payload = json.dumps(
        {"lc": 2, "type": "constructor", "id": ["tests", "corpus", "Point"], "kwargs": {"x": 1, "y": 2}}
    ).encode()
    assert RustSerializer(allowed_json_modules=True).loads_typed(("json", payload)) == Point(x=1, y=2)


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "default"])
def test_delta_snapshots_wrapping_callables_are_refused(strict, canary) -> None:
    inner = ormsgpack.Ext(0, ormsgpack.packb(["os", "system", f"touch {canary}"]))
    blob = ormsgpack.packb(ormsgpack.Ext(7, ormsgpack.packb([inner])))
    allowed = None if strict else True
    with pytest.raises(DisallowedTypeError):
        RustSerializer(allowed_msgpack_modules=allowed, raise_refused=True).loads_typed(("msgpack", blob))
    snapshot = RustSerializer(allowed_msgpack_modules=allowed).loads_typed(("msgpack", blob))
    assert snapshot.value == [f"touch {canary}"]


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "default"])
def test_unencrypted_rows_under_encryption_are_still_refused(strict, canary) -> None:
    """EncryptedSerializer reads a row without the "+aes" suffix with its inner
    serializer: a crafted plain row meets our refusals, not a call."""
    from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

    inner = RustSerializer(allowed_msgpack_modules=None if strict else True, raise_refused=True)
    serde = EncryptedSerializer.from_pycryptodome_aes(serde=inner, key=b"k" * 16)
    with pytest.raises(DisallowedTypeError):
        serde.loads_typed(("msgpack", ext(0, ["os", "system", f"touch {canary}"])))
    hostile = lc_json(2, ("os", "system"), f"touch {canary}")
    if strict:
        with pytest.raises(DisallowedTypeError):
            serde.loads_typed(("json", hostile))
    else:  # inert, as upstream's default leaves it
        assert serde.loads_typed(("json", hostile)) == json.loads(hostile)
    as_upstream = EncryptedSerializer.from_pycryptodome_aes(
        serde=RustSerializer(allowed_msgpack_modules=None if strict else True), key=b"k" * 16
    )
    assert as_upstream.loads_typed(("msgpack", ext(0, ["os", "system", f"touch {canary}"]))) == f"touch {canary}"


class Unlisted(pydantic.BaseModel):
    y: int


class AnyState(typing.TypedDict, total=False):
    data: dict[str, typing.Any]
    turns: int


def test_a_thread_holding_a_refused_type_stays_resumable(tmp_path) -> None:
    """Strict mode with a state field typed ``Any`` that holds an unlisted model:
    as upstream, the next run reads it back as its field dict and goes on."""
    from langgraph.checkpoint.sqlite import SqliteSaver as UpstreamSqliteSaver
    from langgraph.graph import START, StateGraph

    from fastcheckpoint.sqlite import SqliteSaver

    def step(state: AnyState) -> dict:
        data = state.get("data") or {"u": Unlisted(y=1)}
        return {"data": data, "turns": state.get("turns", 0) + 1}

    graph = StateGraph(AnyState)
    graph.add_node("step", step)
    graph.add_edge(START, "step")
    cfg = {"configurable": {"thread_id": "t"}}
    results = []
    for saver_cls, serde in (
        (UpstreamSqliteSaver, JsonPlusSerializer(allowed_msgpack_modules=None)),
        (SqliteSaver, RustSerializer(allowed_msgpack_modules=None)),
    ):
        with saver_cls.from_conn_string(str(tmp_path / f"{saver_cls.__module__}.db")) as saver:
            saver.serde = serde
            app = graph.compile(checkpointer=saver)
            app.invoke({"turns": 0}, cfg)
            results.append(app.invoke({}, cfg))
            assert app.get_state(cfg).values == results[-1]
    assert results[0] == results[1] == {"data": {"u": {"y": 1}}, "turns": 2}
