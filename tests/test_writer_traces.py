"""The writer reuses the bytes of list elements it proves unchanged (identity traces).

Whatever happens to a history between puts (edits at any depth, reordered
keys, swapped classes, extras, removed or copied messages, values no trace can
cover), every stored version must rebuild to exactly the bytes a fresh encoding
of the list gives at that put.
"""

from __future__ import annotations

import datetime
import gc
import sys
import weakref

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from fastcheckpoint._native import DeltaWriter, assemble_chain, delta_base, traces_read_dict_tags
from fastcheckpoint.serde import RustSerializer

CODEC = RustSerializer().codec


class Tagged(dict):
    """A dict subclass: encoded like a dict, never traced."""


def _edit_content(msgs, i, step):
    msgs[i].content = f"{msgs[i].content}!"


def _equal_new_string(msgs, i, step):
    msgs[i].content = "".join(list(msgs[i].content))


def _add_key(msgs, i, step):
    msgs[i].additional_kwargs[f"k{step}"] = step


def _deep_value(msgs, i, step):
    deep = msgs[i].response_metadata.setdefault("deep", {"l": [1, {"x": "y"}]})
    deep["l"][-1]["x"] = f"v{step}"


def _deep_append(msgs, i, step):
    msgs[i].response_metadata.setdefault("grow", {"l": [{"x": "y"}]})["l"].append(step)


def _reorder_keys(msgs, i, step):
    d = msgs[i].additional_kwargs
    if d:
        k = next(iter(d))
        d[k] = d.pop(k)


def _tuple_inner(msgs, i, step):
    t = msgs[i].additional_kwargs.setdefault("t", (1, []))
    t[1].append(step)


def _copy_message(msgs, i, step):
    msgs[i] = msgs[i].model_copy(deep=True)


def _scalars(msgs, i, step):
    msgs[i].name = None if step % 2 else f"n{step}"
    msgs[i].id = f"id{step}"


def _extra(msgs, i, step):
    msgs[i].custom_extra = [step, {"s": str(step)}]


def _swap_class(msgs, i, step):
    m = msgs[i]
    if type(m) in (HumanMessage, SystemMessage):
        object.__setattr__(m, "__class__", SystemMessage if type(m) is HumanMessage else HumanMessage)


def _untraceable(msgs, i, step):
    meta = msgs[i].response_metadata
    meta["when"] = datetime.datetime(2024, 1, 1) + datetime.timedelta(seconds=step)
    meta.setdefault("tagged", Tagged(a=1))["a"] = step


def _remove(msgs, i, step):
    if len(msgs) > 5:
        del msgs[i]


def _float_and_int(msgs, i, step):
    msgs[i].additional_kwargs["n"] = step * 1.5 if step % 2 else 10**18 + step


def _dict_methods(msgs, i, step):
    """Every way to change a dict in place (a version tag must see each)."""
    d = msgs[i].additional_kwargs
    d.setdefault("base", 0)
    match step % 8:
        case 0:
            d.update(u=step)
        case 1:
            d.popitem()
        case 2:
            d.clear()
        case 3:
            d |= {"o": step}
        case 4:
            del d["base"]
        case 5:
            d.pop("base")
        case 6:
            d["base"] = d["base"] + 1
        case _:
            d.__init__(i=step)


def _field_dict_direct(msgs, i, step):
    msgs[i].__dict__["content"] = f"direct {step}"


MUTATIONS = [
    _dict_methods,
    _field_dict_direct,
    _edit_content,
    _equal_new_string,
    _add_key,
    _deep_value,
    _deep_append,
    _reorder_keys,
    _tuple_inner,
    _copy_message,
    _scalars,
    _extra,
    _swap_class,
    _untraceable,
    _remove,
    _float_and_int,
]


def message(i: int):
    kind = i % 3
    if kind == 0:
        return HumanMessage(f"question {i}", id=f"h{i}")
    if kind == 1:
        return SystemMessage(f"note {i}", id=f"s{i}")
    return AIMessage(
        f"answer {i}",
        id=f"a{i}",
        tool_calls=[{"name": "search", "args": {"q": str(i)}, "id": f"c{i}", "type": "tool_call"}],
        usage_metadata={"input_tokens": i, "output_tokens": 1, "total_tokens": i + 1},
    )


def chain_of(blobs: dict[str, bytes], version: str) -> list[bytes]:
    """The stored chain of ``version``, newest first."""
    chain = [blobs[version]]
    while (base := delta_base(chain[-1])) is not None:
        chain.append(blobs[base])
    return chain


def rebuilt(blobs: dict[str, bytes], version: str) -> bytes:
    return bytes(assemble_chain(chain_of(blobs, version)))


def put(writer: DeltaWriter, blobs: dict[str, bytes], items: list, version: str) -> None:
    """Encodes ``items`` as ``version`` into ``blobs``, as a saver stores it:
    the new blob, and the stored versions a segment turns into pointers."""
    for _, ver, _, blob, _, _ in writer.encode_blobs("t", "", {"messages": items}, {"messages": version}):
        blobs[str(ver)] = bytes(blob)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(MUTATIONS) - 1),
            st.integers(0, 10**6),
            st.booleans(),
            st.sampled_from([None, None, "same writer", "new writer"]),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_every_version_rebuilds_to_a_fresh_encoding(ops) -> None:
    """Also with the history read back between puts, as a graph turn starts
    (``read``: the same writer, or a new one as in another process): the
    objects a read hands out get traces of their own, and every mutation of
    them must still reach the next stored version."""
    writer = DeltaWriter(max_depth=6)
    msgs = [message(i) for i in range(8)]
    blobs: dict[str, bytes] = {}
    expected: dict[str, bytes] = {}
    for step, (op, where, append, read) in enumerate(ops):
        if step and read:
            last = f"{step - 1:05d}"
            if read == "new writer":
                writer = DeltaWriter(max_depth=6)
            msgs = CODEC.loads(assemble_chain(chain_of(blobs, last)))
            writer.seed("t", "", "messages", last, chain_of(blobs, last), True, msgs)
        # Mutate only after the first put, so a trace exists for every element.
        if step:
            MUTATIONS[op](msgs, where % len(msgs), step)
        if append:
            msgs.append(message(100 + step))
        version = f"{step:05d}"
        put(writer, blobs, list(msgs), version)
        expected[version] = bytes(CODEC.dumps(msgs))
        # Every version, the ones a segment rewrote as pointers too.
        for v, value in expected.items():
            assert rebuilt(blobs, v) == value, (MUTATIONS[op].__name__, v)


def test_dict_version_tags_are_read_where_expected() -> None:
    # CPython 3.11-3.13: the hypothesis test above then covers dicts traced by tag.
    assert traces_read_dict_tags() == (sys.implementation.name == "cpython" and (3, 11) <= sys.version_info < (3, 14))


class Attrs:
    """A plain object: CPython 3.13 keeps its attributes inline and writes them
    without changing the version tag of its materialized ``__dict__``."""


def test_an_objects_attribute_dict_is_never_stale() -> None:
    writer = DeltaWriter()
    objs = [Attrs() for _ in range(6)]
    for i, o in enumerate(objs):
        o.n = i
        o.text = f"note {i}"
    items = [vars(o) for o in objs]  # the objects' own dicts, as list elements
    blobs = {}
    for step in range(5):
        if step:
            objs[step].n = 100 + step  # an attribute write, not a dict write
            objs[0].text = f"rewritten {step}"
            object.__setattr__(objs[1], f"added_{step}", step)
        put(writer, blobs, items, str(step))
        assert rebuilt(blobs, str(step)) == bytes(CODEC.dumps([dict(d) for d in items])), step


def test_mutation_between_puts_of_the_same_list_object() -> None:
    writer = DeltaWriter()
    msgs = [message(i) for i in range(12)]
    blobs = {}
    for step in range(6):
        msgs[step].additional_kwargs["seen"] = {"step": [step]}
        msgs[2].additional_kwargs.setdefault("seen", {"step": []})["step"].append(step)
        put(writer, blobs, msgs, str(step))
        assert rebuilt(blobs, str(step)) == bytes(CODEC.dumps(msgs))


def encode_watched(writer: DeltaWriter, thread: str) -> weakref.ref:
    """Encodes a fresh 6-message list for ``thread``; watches its first message
    (which only the writer holds once this returns)."""
    msgs = [message(i) for i in range(6)]
    writer.encode_blobs(thread, "", {"messages": msgs}, {"messages": "1"})
    return weakref.ref(msgs[0])


def test_only_recent_channels_keep_their_elements_alive() -> None:
    writer = DeltaWriter()
    watched = encode_watched(writer, "thread-0")
    gc.collect()
    assert watched() is not None, "the writer keeps the last list of a recent channel"
    for t in range(1, 40):
        writer.encode_blobs(f"thread-{t}", "", {"messages": [message(i) for i in range(6)]}, {"messages": "1"})
    gc.collect()
    assert watched() is None, "older channels are let go"


def test_forget_lets_go_of_a_threads_elements() -> None:
    writer = DeltaWriter()
    watched = encode_watched(writer, "t")
    writer.forget("t")
    gc.collect()
    assert watched() is None
