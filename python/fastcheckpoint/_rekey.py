"""Re-encrypting stored bodies under a saver's current key (``fastcheckpoint
reencrypt``): rows under a previous key, rows stored unencrypted before a
cipher was added, and rows an earlier release stored in upstream's encrypted
format all end encrypted for their row with the cipher's first key.

One transaction per thread; each row is replaced only if it still holds the
bytes read, so a saver writing meanwhile loses nothing (its rows are left for
the next pass). A row the cipher's first key already opens is left as it is,
so a pass interrupted anywhere resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

from fastcheckpoint._copy import OurTables
from fastcheckpoint._native import ENVELOPE_TYPE, seal
from fastcheckpoint._ops import Op, Write
from fastcheckpoint._storage import checkpoint_row, layout_of, located, write_row
from fastcheckpoint.encryption import CLEAR_TYPES, Row, Vault, is_sealed
from fastcheckpoint.errors import ConfigError

if TYPE_CHECKING:
    from fastcheckpoint._saver import StoreSaver


@dataclass
class Rekeyed:
    """What a pass over one thread did."""

    rewritten: int = 0  # rows now under the first key
    current: int = 0  # rows that already were
    changed: int = 0  # rows a saver rewrote meanwhile: left for the next pass


def _rebody(serde: EncryptedSerializer, vault: Vault, row: Row, type_: str, data: Any) -> tuple[str, bytes] | None:
    """The row's body encrypted with the first key, or None if it already is."""
    if data is None or type_ in CLEAR_TYPES:
        return None
    data = bytes(data)
    if is_sealed(type_):
        index, type_, data = vault.open_indexed(row, type_, data)
        if index == 0:
            return None
    elif "+" in type_:  # upstream's format, as an earlier release stored it
        type_, _, name = type_.partition("+")
        data = serde.cipher.decrypt(name, data)
    if type_ == "msgpack":
        type_, data = ENVELOPE_TYPE, seal(data)
    return vault.seal(row, type_, data)


def rekey_thread_op(saver: StoreSaver, thread_id: str) -> Op[Rekeyed]:
    """Re-encrypts one thread's bodies under the first key of ``saver.serde``'s cipher."""
    serde = saver.serde
    vault = layout_of(serde).vault
    if vault is None or not isinstance(serde, EncryptedSerializer):
        raise ConfigError("re-encrypting needs a saver whose serde is an EncryptedSerializer over our storage")
    sql = saver.sql
    rows, blob_rows, write_rows = yield from OurTables(saver).rows_op(thread_id)
    done = Rekeyed()
    batch = []

    def add(query: str, row: Row, type_: str, data: Any, key: tuple[Any, ...], where: str) -> None:
        with located(lambda: f"thread {thread_id!r} {where}"):
            new = _rebody(serde, vault, row, type_, data)
        if new is None:
            done.current += data is not None and type_ not in CLEAR_TYPES
        else:
            batch.append((query, (*new, *key, data), False))

    for r in rows:
        key = (r.thread_id, r.checkpoint_ns, r.checkpoint_id)
        add(sql.REBODY_CHECKPOINT, checkpoint_row(*key), r.type, r.checkpoint, key, f"checkpoint {r.checkpoint_id!r}")
    for t, ns, ch, ver, type_, data, _ in blob_rows:
        row = ("blob", t, ns, ch, sql.version_of(ver))
        add(sql.REBODY_BLOB, row, type_, data, (t, ns, ch, ver), f"channel {ch!r} version {row[-1]}")
    for t, ns, cid, task, ch, type_, value, _, idx in write_rows:
        row = write_row(t, ns, cid, task, idx)
        add(sql.REBODY_WRITE, row, type_, value, (t, ns, cid, task, idx), f"checkpoint {cid!r} write {ch!r}")
    if batch:
        counts = yield Write(batch)
        done.rewritten = sum(1 for n in counts if n)
        done.changed = len(batch) - done.rewritten
    return done
