"""The storage model on InMemorySaver: O(k) appends, never stale, checksummed."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import empty_checkpoint

from fastcheckpoint._native import ENVELOPE_TYPE, DeltaWriter, delta_base
from fastcheckpoint.errors import ConfigError, CorruptDataError
from fastcheckpoint.memory import InMemorySaver
from tests.graphs import react_turn_messages


def put_history(saver: InMemorySaver, messages: list, parent: str | None = None, thread: str = "t") -> dict:
    cp = empty_checkpoint()
    version = saver.get_next_version(None, None) if parent is None else None
    cp["channel_values"] = {"messages": messages}
    cp["channel_versions"] = {"messages": version or saver.get_next_version(put_history.last, None)}
    put_history.last = cp["channel_versions"]["messages"]
    config = {"configurable": {"thread_id": thread, "checkpoint_ns": "", "checkpoint_id": parent}}
    return saver.put(config, cp, {"step": 0}, {"messages": cp["channel_versions"]["messages"]})


put_history.last = None


def stored(saver: InMemorySaver, config: dict) -> bytes:
    tup = saver.get_tuple(config)
    ver = tup.checkpoint["channel_versions"]["messages"]
    return saver.blobs[("t", "", "messages", ver)][1]


def test_appending_k_messages_stores_o_k_bytes() -> None:
    saver = InMemorySaver()
    history = [m for turn in range(250) for m in react_turn_messages(turn)]  # 1,000 messages
    cfg = put_history(saver, history)
    full = len(stored(saver, cfg))
    extra = react_turn_messages(999)[:2]
    cfg2 = put_history(saver, history + extra, parent=cfg["configurable"]["checkpoint_id"])
    delta = stored(saver, cfg2)
    assert delta_base(delta) is not None
    one_message_bytes = len(saver.serde.codec.dumps(extra))
    assert len(delta) < one_message_bytes + 200, (len(delta), one_message_bytes, full)
    assert saver.get_tuple(cfg2).checkpoint["channel_values"]["messages"] == history + extra


def test_in_place_mutation_at_any_depth_is_never_stale() -> None:
    saver = InMemorySaver()
    msgs = [HumanMessage(f"m{i}", id=str(i)) for i in range(20)]
    msgs.append(AIMessage("x", id="ai", response_metadata={"deep": {"list": [1, 2, {"k": "v"}]}}))
    cfg = put_history(saver, msgs)
    msgs[3].content = "edited top-level"
    msgs[-1].response_metadata["deep"]["list"][2]["k"] = "edited deep"
    cfg2 = put_history(saver, [*msgs, HumanMessage("new")], parent=cfg["configurable"]["checkpoint_id"])
    loaded = saver.get_tuple(cfg2).checkpoint["channel_values"]["messages"]
    assert loaded[3].content == "edited top-level"
    assert loaded[-2].response_metadata["deep"]["list"][2]["k"] == "edited deep"
    # The earlier checkpoint keeps what it saw.
    old = saver.get_tuple(cfg).checkpoint["channel_values"]["messages"]
    assert old[3].content == "m3"


def test_replacement_and_removal_rebuild_exactly() -> None:
    saver = InMemorySaver()
    base = [HumanMessage(f"m{i}", id=str(i)) for i in range(30)]
    cfg = put_history(saver, base)
    for variant in (base[:20], [*base[:10], AIMessage("swap"), *base[11:]], base + base[:5]):
        cfg = put_history(saver, variant, parent=cfg["configurable"]["checkpoint_id"])
        assert saver.get_tuple(cfg).checkpoint["channel_values"]["messages"] == variant


def test_keyframes_bound_the_chain() -> None:
    saver = InMemorySaver()
    msgs = [HumanMessage("seed", id="s")] * 4
    cfg = None
    depths = []
    for i in range(150):
        msgs = [*msgs, HumanMessage(f"m{i}")]
        cfg = put_history(saver, msgs, parent=cfg and cfg["configurable"]["checkpoint_id"])
        blob = stored(saver, cfg)
        depth = 0
        while (b := delta_base(blob)) is not None:
            depth += 1
            blob = saver.blobs[("t", "", "messages", b)][1]
        depths.append(depth)
    assert max(depths) <= 64
    assert saver.get_tuple(cfg).checkpoint["channel_values"]["messages"] == msgs


@pytest.mark.parametrize("offset", [0, 3, 9, -1, -20])
def test_corrupted_blob_is_a_typed_error_naming_the_thread(offset) -> None:
    saver = InMemorySaver()
    cfg = put_history(saver, [HumanMessage("x" * 5000)] * 6)
    key = next(k for k in saver.blobs if k[2] == "messages")
    typ, data = saver.blobs[key]
    assert typ == ENVELOPE_TYPE
    bad = bytearray(data)
    bad[offset] ^= 0x40
    saver.blobs[key] = (typ, bytes(bad))
    with pytest.raises(CorruptDataError, match=r"thread 't'.*(checksum|envelope)"):
        saver.get_tuple(cfg)


def test_missing_delta_base_is_a_typed_error() -> None:
    saver = InMemorySaver()
    msgs = [HumanMessage(f"m{i}") for i in range(10)]
    cfg = put_history(saver, msgs)
    cfg2 = put_history(saver, [*msgs, HumanMessage("n")], parent=cfg["configurable"]["checkpoint_id"])
    first_ver = saver.get_tuple(cfg).checkpoint["channel_versions"]["messages"]
    del saver.blobs[("t", "", "messages", first_ver)]
    with pytest.raises(CorruptDataError, match="missing"):
        saver.get_tuple(cfg2)


def test_missing_thread_id_is_a_clear_config_error() -> None:
    saver = InMemorySaver()
    with pytest.raises(ConfigError, match="thread_id"):
        saver.get_tuple({"configurable": {}})
    with pytest.raises(KeyError):
        saver.put({"configurable": {}}, empty_checkpoint(), {}, {})


def test_other_serializers_are_used_as_upstream_uses_them() -> None:
    from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

    saver = InMemorySaver()
    saver.serde = EncryptedSerializer.from_pycryptodome_aes(key=b"k" * 16) if _has_crypto() else saver.serde
    cfg = put_history(saver, [HumanMessage(f"m{i}") for i in range(5)])
    assert len(saver.get_tuple(cfg).checkpoint["channel_values"]["messages"]) == 5
    if _has_crypto():
        assert all(t != ENVELOPE_TYPE for t, _ in saver.blobs.values())


def _has_crypto() -> bool:
    try:
        import Crypto  # noqa: F401
    except ImportError:
        return False
    return True


def test_a_keyframe_read_before_is_checked_again_once_its_bytes_change() -> None:
    # Large keyframes' decompressed bodies are kept by their exact stored bytes:
    # a row changed after a read must not be served from what was read before.
    saver = InMemorySaver()
    history = [m for turn in range(60) for m in react_turn_messages(turn)]
    cfg = put_history(saver, history)
    assert saver.get_tuple(cfg).checkpoint["channel_values"]["messages"] == history
    key = next(k for k in saver.blobs if k[2] == "messages")
    typ, data = saver.blobs[key]
    assert delta_base(data) is None and len(data) > 1000
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0x01
    saver.blobs[key] = (typ, bytes(bad))
    with pytest.raises(CorruptDataError):
        saver.get_tuple(cfg)
    saver.blobs[key] = (typ, data)
    assert saver.get_tuple(cfg).checkpoint["channel_values"]["messages"] == history


def test_a_chain_decoded_at_once_equals_one_step_at_a_time_and_checks_each_link() -> None:
    saver = InMemorySaver()
    saver._writer = DeltaWriter(ratio=100)  # one chain of deltas, however heavy
    msgs: list = [HumanMessage(f"m{i}", id=str(i)) for i in range(8)]
    cfg = put_history(saver, msgs)
    for i in range(6):  # appends, then a cut to 5 plus a new one
        msgs = [*msgs[:5], AIMessage("cut")] if i == 3 else [*msgs, AIMessage(f"a{i}", id=f"a{i}")]
        cfg = put_history(saver, msgs, parent=cfg["configurable"]["checkpoint_id"])
    ver = saver.get_tuple(cfg).checkpoint["channel_versions"]["messages"]
    chain = []
    while ver is not None:
        blob = saver.blobs[("t", "", "messages", ver)][1]
        chain.append((blob, delta_base(blob)))
        ver = chain[-1][1]
    steps = list(reversed(chain))
    assert len(steps) == 7 and steps[0][1] is None
    codec = saver.serde.codec
    value = None
    for blob, base in steps:
        value = codec.loads_step(blob, value, base)
    assert codec.loads_steps(steps) == value == msgs
    # A delta whose row names another base, or a delta without a list under it.
    wrong = [*steps[:3], (steps[3][0], "not-its-base"), *steps[4:]]
    with pytest.raises(CorruptDataError, match="applies to version"):
        codec.loads_steps(wrong)
    with pytest.raises(CorruptDataError, match="base is not a list"):
        codec.loads_steps(steps[1:], {"not": "a list"})
