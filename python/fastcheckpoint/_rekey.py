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

from fastcheckpoint._copy import OurTables
from fastcheckpoint._native import ENVELOPE_TYPE, seal
from fastcheckpoint._ops import Op, Stmt, Write
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


def _rebody(vault: Vault, row: Row, type_: str, data: Any, was: Row | None) -> tuple[str, bytes] | None:
    """The row's body encrypted with the first key for ``row``, or None if
    that is what it holds. ``was``: the row it may still be bound to (a row
    ``copy_thread`` copied from another thread); a body not encrypted for
    either is an error."""
    if data is None or type_ in CLEAR_TYPES:
        return None
    data = bytes(data)
    if is_sealed(type_):
        index, which, type_, data = vault.open_for((row,) if was is None else (row, was), type_, data)
        if index == 0 and which == 0:
            return None
    elif was is not None:
        return None  # not bound to a row: copied as it is
    elif "+" in type_:  # upstream's format, as an earlier release stored it
        type_, _, name = type_.partition("+")
        data = vault.decrypt(name, data)[1]
    if type_ == "msgpack":
        type_, data = ENVELOPE_TYPE, seal(data)
    return vault.seal(row, type_, data)


def thread_vault(saver: StoreSaver) -> Vault:
    """The vault of the saver's serializer; a ``ConfigError`` if it encrypts nothing."""
    vault = layout_of(saver.serde).vault
    if vault is None:
        raise ConfigError("re-encrypting needs a saver whose serde is an EncryptedSerializer over our storage")
    return vault


def rebody_op(
    saver: StoreSaver, thread_id: str, read_from: str | None = None, copied_from: str | None = None
) -> Op[tuple[list[Stmt], Rekeyed]]:
    """Statements that leave each of the thread's bodies encrypted with the
    first key for its row. The rows are read from ``read_from`` (default: the
    thread itself), as the statements of ``copy_thread`` that run before them
    in one transaction copy them; ``copied_from``: the thread its rows may
    still be bound to. Each statement replaces a body only if it is still the
    one read."""
    vault = thread_vault(saver)
    sql = saver.sql
    rows, blob_rows, write_rows = yield from OurTables(saver).rows_op(read_from or thread_id)
    was_thread = read_from or copied_from
    done = Rekeyed()
    batch: list[Stmt] = []

    def add(query: str, row: Row, type_: str, data: Any, key: tuple[Any, ...], where: str) -> None:
        mine = (row[0], thread_id, *row[2:])
        was = None if was_thread is None else (row[0], was_thread, *row[2:])
        with located(lambda: f"thread {thread_id!r} {where}"):
            new = _rebody(vault, mine, type_, data, was)
        if new is None:
            done.current += data is not None and type_ not in CLEAR_TYPES
        else:
            batch.append((query, (*new, thread_id, *key, data), False))

    for r in rows:
        key = (r.checkpoint_ns, r.checkpoint_id)
        add(sql.REBODY_CHECKPOINT, checkpoint_row("", *key), r.type, r.checkpoint, key, f"checkpoint {key[1]!r}")
    for _, ns, ch, ver, type_, data, _ in blob_rows:
        row = ("blob", "", ns, ch, sql.version_of(ver))
        add(sql.REBODY_BLOB, row, type_, data, (ns, ch, ver), f"channel {ch!r} version {row[-1]}")
    for _, ns, cid, task, ch, type_, value, _, idx in write_rows:
        row = write_row("", ns, cid, task, idx)
        add(sql.REBODY_WRITE, row, type_, value, (ns, cid, task, idx), f"checkpoint {cid!r} write {ch!r}")
    return batch, done


def rekey_thread_op(saver: StoreSaver, thread_id: str) -> Op[Rekeyed]:
    """Re-encrypts one thread's bodies under the first key of ``saver.serde``'s cipher."""
    batch, done = yield from rebody_op(saver, thread_id)
    if batch:
        counts = yield Write(batch)
        done.rewritten = sum(1 for n in counts if n)
        done.changed = len(batch) - done.rewritten
    return done
