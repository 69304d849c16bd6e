"""Lists compacted into segments, on every saver: each message is stored once
(the deltas a segment covers become pointers into it), and every checkpoint
of the thread still reads back exactly what was put."""

from __future__ import annotations

from typing import Any

import psycopg

from benches._workload import THREAD, thread_checkpoints
from fastcheckpoint._native import blob_info, seal
from fastcheckpoint._text import turn_messages
from fastcheckpoint.memory import InMemorySaver
from fastcheckpoint.postgres import PostgresSaver
from fastcheckpoint.serde import RustSerializer

CONFIG: dict[str, Any] = {"configurable": {"thread_id": THREAD, "checkpoint_ns": ""}}


def message_blobs(saver, request) -> list[bytes]:
    """The stored blobs of the thread's ``messages`` channel."""
    if isinstance(saver, InMemorySaver):
        return [data for (_, _, ch, _), (_, data) in saver.blobs.items() if ch == "messages"]
    if isinstance(saver, PostgresSaver):
        with psycopg.connect(request.getfixturevalue("pg_uri")) as conn:
            rows = conn.execute("SELECT blob FROM fc_blobs WHERE channel = 'messages'").fetchall()
    else:
        rows = saver.conn.execute("SELECT blob FROM fc_blobs WHERE channel = 'messages'").fetchall()
    return [bytes(b) for (b,) in rows]


def test_each_message_is_stored_once_and_every_version_reads_back(each_saver, request) -> None:
    saver = each_saver
    put: dict[str, list] = {}
    for args in thread_checkpoints(saver, (m for t in range(40) for m in turn_messages(t))):
        saver.put(*args)
        put[args[1]["id"]] = args[1]["channel_values"]["messages"]
    read = {t.checkpoint["id"]: t.checkpoint["channel_values"]["messages"] for t in saver.list(CONFIG)}
    assert read == put

    blobs = message_blobs(saver, request)
    assert len(blobs) == len(put)
    pointers = [b for b in blobs if (info := blob_info(b))[0] is not None and info[1] == info[2] and info[3] == 0]
    assert len(pointers) > len(blobs) // 2, "the deltas segments cover are pointers"
    # The whole list compressed at once is about what storing each message
    # once costs (here 1.4x, the early segments being small); one-message
    # deltas never compacted cost 2.4x, keyframes now and then more.
    whole = len(seal(RustSerializer().dumps_typed(put[max(put)])[1]))
    stored = sum(map(len, blobs))
    assert stored < 1.6 * whole + 80 * len(pointers), (stored, whole, len(pointers))
