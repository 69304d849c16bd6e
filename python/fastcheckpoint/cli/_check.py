"""``verify`` (every checkpoint rebuilds, checksums hold, delta chains are
whole) and the check that ends ``migrate`` (the copy equals its source)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

from fastcheckpoint._copy import OurTables, Record, Source, decode_thread
from fastcheckpoint._native import ENVELOPE_TYPE, blob_info
from fastcheckpoint._ops import Op, Read
from fastcheckpoint._saver import StoreSaver
from fastcheckpoint._sql import CheckpointRow
from fastcheckpoint._storage import INLINE, reveal_blob
from fastcheckpoint.errors import CheckpointError


def query_op(sql: str, params: Iterable[Any] = ()) -> Op[list[Any]]:
    (rows,) = yield Read([(sql, tuple(params))])
    return rows


def verify_thread(
    saver: StoreSaver, rows: list[CheckpointRow], blob_rows: list[Any], write_rows: list[Any]
) -> dict[str, Any]:
    """Damage and warnings found in one thread's rows."""
    damage: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    version_of = saver.sql.version_of
    blobs = {
        (b[1], b[2], version_of(b[3])): (b[4], bytes(b[5]) if b[5] is not None else b"", b[6] and version_of(b[6]))
        for b in blob_rows
    }
    thread_id = blob_rows[0][0] if blob_rows else None
    for (ns, ch, ver), (type_, data, base) in blobs.items():
        where = {"checkpoint_ns": ns, "channel": ch, "version": ver}
        try:
            type_, data = reveal_blob(saver.serde, ("blob", thread_id, ns, ch, ver), (type_, data))
        except CheckpointError as e:
            damage.append({**where, "error": f"{type(e).__name__}: {e}"})
            continue
        if type_ != ENVELOPE_TYPE:
            continue
        try:
            header_base = blob_info(data)[0]
        except Exception as e:
            damage.append({**where, "error": f"{type(e).__name__}: {e}"})
            continue
        if header_base != base:
            damage.append({**where, "error": f"blob names delta base {header_base!r}, its row {base!r}"})
        elif base is not None and (ns, ch, base) not in blobs:
            damage.append({**where, "error": f"delta base version {base} is missing (incomplete chain)"})
    keys = set()
    for r, result in zip(rows, decode_thread(saver, rows, blob_rows, write_rows), strict=True):
        where = {"checkpoint_ns": r.checkpoint_ns, "checkpoint_id": r.checkpoint_id}
        keys.add((r.checkpoint_ns, r.checkpoint_id))
        if not isinstance(result, Record):
            e = result[1]
            damage.append({**where, "error": f"{type(e).__name__}: {e}"})
            continue
        for ch, ver in saver._channels(r.channels).items():
            if ver != INLINE and (r.checkpoint_ns, ch, str(ver)) not in blobs:
                warnings.append({**where, "channel": ch, "warning": f"no stored value for version {ver}"})
    for w in write_rows:
        if (w[1], w[2]) not in keys:
            warnings.append({"checkpoint_ns": w[1], "checkpoint_id": w[2], "warning": "pending write of no checkpoint"})
    return {"checkpoints": len(rows), "blobs": len(blobs), "damage": damage, "warnings": warnings}


def verify(saver: StoreSaver, threads: list[str], integrity_sql: str | None) -> dict[str, Any]:
    """Checks every thread in ``threads``; the report says what is damaged where."""
    report: dict[str, Any] = {"threads": 0, "checkpoints": 0, "blobs": 0, "damage": [], "warnings": []}
    if integrity_sql:
        result = [r[0] for r in saver._run(query_op(integrity_sql))]
        if result != ["ok"]:
            report["damage"].append({"database": "; ".join(map(str, result[:20]))})
    source = OurTables(saver)
    for thread_id in tqdm(threads, desc="verifying", unit="thread", disable=None):
        try:
            found = verify_thread(saver, *saver._run(source.rows_op(thread_id)))
        except Exception as e:  # a thread whose rows cannot even be read
            found = {"checkpoints": 0, "blobs": 0, "damage": [{"error": f"{type(e).__name__}: {e}"}], "warnings": []}
        report["threads"] += 1
        report["checkpoints"] += found["checkpoints"]
        report["blobs"] += found["blobs"]
        report["damage"] += [{"thread_id": thread_id, **d} for d in found["damage"]]
        report["warnings"] += [{"thread_id": thread_id, **w} for w in found["warnings"]]
    return report


def _comparable(record: Record, serde: Any) -> tuple[Any, ...]:
    writes = sorted(
        ((w[0], w[1], w[2], w[3], serde.loads_typed((w[4], w[5]))) for w in record.writes), key=lambda w: w[:3]
    )
    return (record.parent_id, record.checkpoint, json.loads(record.metadata or "{}"), writes, record.hidden)


def _by_version(record: Record, seen: dict[tuple[str, str, str], Any]) -> Record:
    """``record`` with the values its source left out filled in from an
    earlier checkpoint at the same channel version (``seen``).

    Upstream SQLite stores values per checkpoint: a DeltaChannel snapshot
    appears only in the checkpoint of its step, and a later checkpoint at the
    same version omits it. We store one value per (channel, version), as
    upstream Postgres does, so that later checkpoint reads back with the
    snapshot: the same state once the channel is rebuilt."""
    ns = record.key[1]
    values = dict(record.checkpoint.get("channel_values") or {})
    for ch, ver in (record.checkpoint.get("channel_versions") or {}).items():
        k = (ns, ch, str(ver))
        if ch in values:
            seen.setdefault(k, values[ch])
        elif k in seen:
            values[ch] = seen[k]
    return dataclasses.replace(record, checkpoint={**record.checkpoint, "channel_values": values})


def compare(source: Source, read: Any, source_serde: Any, dest: StoreSaver) -> dict[str, Any]:
    """Every checkpoint of ``source`` read back from ``dest`` and compared
    (values, metadata, parent, pending writes); returns what differs."""
    ours = OurTables(dest)
    todo = read(source.pending_op(set()))
    differences: list[dict[str, Any]] = []
    checked = 0
    with tqdm(total=sum(n for _, n in todo), desc="checking the copy", unit="checkpoint", disable=None) as bar:
        for thread_id, _ in todo:
            copied = {r.key: r for r in dest._run(ours.records_op(thread_id))}
            seen: dict[tuple[str, str, str], Any] = {}
            for record in map(lambda r: _by_version(r, seen), read(source.records_op(thread_id))):
                checked += 1
                bar.update(1)
                other = copied.get(record.key)
                if other is None:
                    differences.append({"key": record.key, "difference": "missing from the copy"})
                    continue
                a, b = _comparable(record, source_serde), _comparable(other, dest.serde)
                for name, x, y in zip(
                    ("parent", "checkpoint", "metadata", "pending writes", "hidden"), a, b, strict=True
                ):
                    if x != y:
                        differences.append({"key": record.key, "difference": f"{name} differs"})
    return {"checked": checked, "differences": differences}
