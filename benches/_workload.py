"""The puts a chat thread makes: one checkpoint per message, each holding the
history so far (as ``add_messages`` builds it) and the child of the one before."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from langgraph.checkpoint.base import empty_checkpoint

# The chat-agent workload (tests.graphs.react_turn_messages) repeats phrases:
# its text compresses ~30x where real text compresses ~3x, which flatters sizes.
REPEATED_TEXT = "chat-agent workload (repeated-phrase text, compresses ~30x: flatters sizes)"

# The thread every bench writes, named as the LangGraph Agent Server names threads (a
# UUID): each row's key holds it, so a one-letter name would flatter every size.
THREAD = "5f0c6f3e-2b8a-4d1e-9c47-a1e3b2d4c6f8"
CONFIG = {"configurable": {"thread_id": THREAD}}


def thread_checkpoints(saver: Any, messages: Iterable[Any], thread: str = THREAD) -> Iterator[tuple]:
    """``(config, checkpoint, metadata, new_versions)`` per message, as ``put`` takes them."""
    msgs: list = []
    parent = version = None
    for m in messages:
        msgs = [*msgs, m]
        cp = empty_checkpoint()
        version = saver.get_next_version(version, None)
        cp["channel_values"] = {"messages": msgs}
        cp["channel_versions"] = {"messages": version}
        cfg = {"configurable": {"thread_id": thread, "checkpoint_ns": "", "checkpoint_id": parent}}
        yield cfg, cp, {"source": "loop", "step": len(msgs)}, {"messages": version}
        parent = cp["id"]  # what put returns as the new checkpoint_id
