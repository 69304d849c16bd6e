"""``stats``: where the bytes go (per channel), what compression and list
deltas save, and a plot of size over one thread's history."""

from __future__ import annotations

import json
from typing import Any

from tqdm import tqdm

from fastcheckpoint._copy import OurTables
from fastcheckpoint._native import ENVELOPE_TYPE, assemble_chain, blob_info
from fastcheckpoint._saver import StoreSaver
from fastcheckpoint._storage import reveal_blob


def _logical_sizes(
    blobs: dict[tuple[str, str, str], tuple[str, bytes, str | None]], body: dict[tuple[str, str, str], int]
) -> dict[tuple[str, str, str], int]:
    """Bytes of each version's whole value (a delta rebuilt with its chain);
    ``body``: each blob's decompressed body size."""
    out: dict[tuple[str, str, str], int] = {}
    for key, (type_, data, base) in blobs.items():
        if type_ != ENVELOPE_TYPE or base is None:
            out[key] = body[key]
            continue
        chain, k = [data], key
        while base is not None:
            k = (k[0], k[1], base)
            found = blobs.get(k)
            if found is None:
                break
            chain.append(found[1])
            base = found[2]
        out[key] = len(assemble_chain(chain)) if base is None else 0
    return out


def thread_stats(saver: StoreSaver, thread_id: str, channels: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Adds one thread's blobs to the per-channel totals; returns its
    checkpoints oldest first with the bytes each stored and the size of the
    whole state it stands for."""
    rows, blob_rows, _ = saver._run(OurTables(saver).rows_op(thread_id))
    version_of = saver.sql.version_of
    stored = {(b[1], b[2], b[3]): len(b[5] or b"") for b in blob_rows}
    blobs = {
        (b[1], b[2], b[3]): (
            *reveal_blob(saver.serde, ("blob", b[0], b[1], b[2], version_of(b[3])), (b[4], bytes(b[5] or b""))),
            b[6],
        )
        for b in blob_rows
    }
    body = {k: blob_info(b[1])[3] if b[0] == ENVELOPE_TYPE else len(b[1]) for k, b in blobs.items()}
    logical = _logical_sizes(blobs, body)
    for key, (type_, _, base) in blobs.items():
        c = channels.setdefault(
            key[1], {"versions": 0, "keyframes": 0, "deltas": 0, "stored": 0, "body": 0, "logical": 0}
        )
        c["versions"] += 1
        c["stored"] += stored[key]
        c["logical"] += logical[key]
        c["body"] += body[key]
        if type_ == ENVELOPE_TYPE:
            c["deltas" if base is not None else "keyframes"] += 1
    history = []
    seen: set[tuple[str, str, str]] = set()
    for r in rows:
        if r.hidden:
            continue
        versions = json.loads(r.channels) if isinstance(r.channels, (str, bytes)) else r.channels
        ns = r.checkpoint_ns
        refs = [(ns, ch, str(v)) for ch, v in versions.items() if (ns, ch, str(v)) in blobs]
        new = [k for k in refs if k not in seen]
        seen.update(new)
        history.append(
            {
                "checkpoint_id": r.checkpoint_id,
                "stored": len(r.checkpoint) + sum(stored[k] for k in new),
                "state": sum(logical[k] for k in refs),
            }
        )
    return history


def stats(saver: StoreSaver, threads: list[str]) -> dict[str, Any]:
    channels: dict[str, dict[str, float]] = {}
    histories = {}
    for thread_id in tqdm(threads, desc="reading", unit="thread", disable=None):
        histories[thread_id] = thread_stats(saver, thread_id, channels)
    return {"channels": channels, "histories": histories}


def plot(thread_id: str, history: list[dict[str, Any]], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the install
        from fastcheckpoint.cli._db import CliError

        raise CliError("--plot needs matplotlib: pip install matplotlib") from e
    fig, ax = plt.subplots(figsize=(8, 4.5))
    x = range(1, len(history) + 1)
    ax.plot(x, [h["state"] for h in history], label="whole state (what a full re-store writes)")
    ax.plot(x, [h["stored"] for h in history], label="bytes stored by this checkpoint")
    ax.set_yscale("log")
    ax.set_xlabel("checkpoint (oldest first)")
    ax.set_ylabel("bytes")
    ax.set_title(f"thread {thread_id}: size over its history")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
