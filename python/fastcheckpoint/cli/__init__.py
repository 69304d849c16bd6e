"""The ``fastcheckpoint`` command: see what is stored, move it, check it, bound it.

Every subcommand takes a SQLite path or a ``postgresql://`` URI. Exit status:
0 done, 1 damage or differences found (``verify``, ``migrate``), 2 a problem
with the arguments or the target (wrong path, unknown thread, not our
database), 3 the database failed (locked, corrupt beyond reading, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

from fastcheckpoint._sql import CheckpointRow
from fastcheckpoint._storage import checkpoint_row, full_record, loads
from fastcheckpoint.cli import _render as render
from fastcheckpoint.cli._check import compare, query_op, verify
from fastcheckpoint.cli._db import CliError, Database
from fastcheckpoint.encryption import KEY_ENV
from fastcheckpoint.errors import CheckpointError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration(text: str) -> float:
    """``90s``, ``15m``, ``12h``, ``30d``, ``2w`` -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 90s, 15m, 12h, 30d, 2w)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


# -- reading helpers ------------------------------------------------------------------


def _thread_rows(db: Database, thread_id: str, ns: str, *, hidden: bool = False) -> list[CheckpointRow]:
    """A thread's checkpoint rows in ``ns`` (visible ones, or all), newest
    first; CliError if it has none."""
    saver = db.ours()
    rows = [CheckpointRow(*r) for r in db.run(query_op(saver.sql.THREAD_ROWS, (thread_id,)))]
    if not rows:
        raise CliError(f"{db.name}: no thread {thread_id!r}")
    rows = [r for r in rows if r.checkpoint_ns == ns and (hidden or not r.hidden)]
    if not rows:
        raise CliError(f"{db.name}: thread {thread_id!r} has no checkpoints in namespace {ns!r}")
    return sorted(rows, key=lambda r: r.checkpoint_id, reverse=True)


def _resolve(rows: list[CheckpointRow], ref: str | None) -> str:
    """A checkpoint id from an id, a unique prefix of one, ``latest`` or
    ``latest~N`` (N checkpoints before the latest)."""
    if ref in (None, "latest"):
        return str(rows[0].checkpoint_id)
    if m := re.fullmatch(r"latest~(\d+)", ref):
        if int(m.group(1)) >= len(rows):
            raise CliError(f"{ref}: this thread has only {len(rows)} checkpoints")
        return str(rows[int(m.group(1))].checkpoint_id)
    ids = [r.checkpoint_id for r in rows]
    matches = [i for i in ids if i == ref] or [i for i in ids if str(i).startswith(ref)]
    if len(matches) == 1:
        return str(matches[0])
    if not matches:
        raise CliError(f"no checkpoint {ref!r} in this thread (see `fastcheckpoint history`)")
    raise CliError(f"{ref!r} matches {len(matches)} checkpoints: give more of the id")


def _tuple(db: Database, thread_id: str, ns: str, ref: str | None) -> Any:
    checkpoint_id = _resolve(_thread_rows(db, thread_id, ns), ref)
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}}
    return db.saver.get_tuple(config)  # type: ignore[arg-type]


def _all_threads(db: Database) -> list[str]:
    from fastcheckpoint._copy import keys_op

    return sorted({key[0] for key in db.run(keys_op(db.ours()))})


# -- commands ---------------------------------------------------------------------------


def cmd_threads(db: Database, args: argparse.Namespace) -> int:
    rows = db.run(query_op(db.ours().sql.THREAD_STATS))
    key = {"updated": 2, "checkpoints": 1, "bytes": 3, "thread": 0}[args.sort]
    rows = sorted(rows, key=lambda r: (r[key] is not None, r[key]), reverse=args.sort != "thread")[: args.limit]
    data = [{"thread_id": r[0], "checkpoints": r[1], "bytes": r[3], "updated_at": r[2]} for r in rows]
    if args.json:
        _out(render.dumps(data))
    else:
        body = [(d["thread_id"], d["checkpoints"], render.size(d["bytes"]), render.when(d["updated_at"])) for d in data]
        _out(render.table(("thread", "checkpoints", "bytes", "last update"), body, right=(1, 2)))
    return 0


def cmd_history(db: Database, args: argparse.Namespace) -> int:
    every = _thread_rows(db, args.thread, args.ns, hidden=True)
    rows = [r for r in every if not r.hidden]
    serde = db.saver.serde
    types = db.run(query_op(db.saver.sql.THREAD_BLOB_TYPES, (args.thread,)))
    version_of = db.saver.sql.version_of
    stored = {(ch, version_of(ver)) for ns, ch, ver, type_ in types if ns == args.ns and type_ != "empty"}
    # Hidden rows too: a listed checkpoint's parent may be one.
    decoded = {
        r.checkpoint_id: full_record(
            loads(
                serde,
                (r.type, bytes(r.checkpoint)),
                checkpoint_row(args.thread, args.ns, r.checkpoint_id),
                lambda r=r: f"checkpoint {r.checkpoint_id!r}",
            ),
            r.checkpoint_id,
            lambda r=r: db.saver._channels(r.channels),
        )
        for r in every
    }
    data = []
    for r in rows[: args.limit]:
        c = decoded[r.checkpoint_id]
        meta = json.loads(r.metadata) if isinstance(r.metadata, (str, bytes)) else r.metadata
        data.append(
            {
                "checkpoint_id": r.checkpoint_id,
                "step": meta.get("step"),
                "source": meta.get("source"),
                "nodes": render.writers(c, decoded.get(r.parent_checkpoint_id)),
                "next": render.next_nodes(c, lambda ch, ver: (ch, str(ver)) in stored),
                "ts": c.get("ts"),
                "parent_checkpoint_id": r.parent_checkpoint_id,
            }
        )
    if args.json:
        _out(render.dumps(data))
        return 0
    body = [
        (d["checkpoint_id"], d["step"], d["source"], ",".join(d["nodes"]) or "-", ",".join(d["next"]) or "-",
         render.when(d["ts"]))
        for d in data
    ]  # fmt: skip
    _out(render.table(("checkpoint", "step", "source", "node", "next", "time"), body, right=(1,)))
    return 0


def cmd_show(db: Database, args: argparse.Namespace) -> int:
    t = _tuple(db, args.thread, args.ns, args.checkpoint)
    values = render.user_channels(t.checkpoint["channel_values"], args.all_channels)
    following = render.next_nodes(t.checkpoint, lambda ch, ver: ch in t.checkpoint["channel_values"])
    if args.json:
        _out(
            render.dumps(
                {
                    "thread_id": args.thread,
                    "checkpoint_ns": args.ns,
                    "checkpoint_id": t.config["configurable"]["checkpoint_id"],
                    "parent_checkpoint_id": (t.parent_config or {}).get("configurable", {}).get("checkpoint_id"),
                    "ts": t.checkpoint.get("ts"),
                    "metadata": t.metadata,
                    "next": following,
                    "values": values,
                    "pending_writes": [{"task_id": w[0], "channel": w[1], "value": w[2]} for w in t.pending_writes],
                }
            )
        )
        return 0
    width = None if args.full else 160
    meta = t.metadata or {}
    _out(f"checkpoint {t.config['configurable']['checkpoint_id']}  step {meta.get('step')}  {meta.get('source')}")
    _out(f"time {render.when(t.checkpoint.get('ts'))}  next: {', '.join(following) or '-'}")
    for ch, value in values.items():
        _out(f"{ch}:")
        for line in render.value_lines(value, width):
            _out(f"  {line}")
    if t.pending_writes:
        _out(f"pending writes: {len(t.pending_writes)}")
        for task_id, ch, value in t.pending_writes:
            _out(f"  {ch} ({task_id[:8]}): {render.value_lines(value, width)[0]}")
    return 0


def cmd_diff(db: Database, args: argparse.Namespace) -> int:
    a = _tuple(db, args.thread, args.ns, args.a)
    b = _tuple(db, args.thread, args.ns, args.b)
    changes = render.diff(
        render.user_channels(a.checkpoint["channel_values"], args.all_channels),
        render.user_channels(b.checkpoint["channel_values"], args.all_channels),
    )
    if args.json:
        _out(render.dumps(changes))
        return 0
    width = None if args.full else 160
    ids = (a.config["configurable"]["checkpoint_id"], b.config["configurable"]["checkpoint_id"])
    _out(f"--- {ids[0]}\n+++ {ids[1]}")
    if not changes:
        _out("(no differences)")
    for ch, change in changes.items():
        if "kept" in change:
            _out(f"{ch}: {change['kept']} elements in common")
            for line in render.element_lines(change["removed"], width):
                _out(f"- {line}")
            for line in render.element_lines(change["added"], width):
                _out(f"+ {line}")
        else:
            _out(f"{ch}:")
            for line in render.value_lines(change["from"], width):
                _out(f"- {line}")
            for line in render.value_lines(change["to"], width):
                _out(f"+ {line}")
    return 0


def _print_verify(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _out(render.dumps(report))
        return
    _out(
        f"checked {report['threads']} threads, {report['checkpoints']} checkpoints, {report['blobs']} blobs: "
        + ("ok" if not report["damage"] else f"{len(report['damage'])} DAMAGED")
    )
    for d in report["damage"]:
        where = " ".join(f"{k}={v!r}" for k, v in d.items() if k != "error")
        _out(f"  damaged: {where}: {d.get('error', '')}")
    for name, n in report.get("refused", {}).items():
        _out(
            f"  refused type: {name} ({n} values, read as their stored arguments; "
            "allow it with allowed_msgpack_modules to read it as the type)"
        )
    for w in report["warnings"][:50]:
        where = " ".join(f"{k}={v!r}" for k, v in w.items() if k != "warning")
        _out(f"  warning: {where}: {w['warning']}")
    if len(report["warnings"]) > 50:
        _out(f"  ... {len(report['warnings']) - 50} more warnings (--json lists all)")


def _verify_db(db: Database, threads: list[str] | None) -> dict[str, Any]:
    """Checks every stored value decodes; types the serializer's policy refuses
    (read back as their stored arguments, as a saver would) are reported, not damage."""
    from collections import Counter

    from langgraph.checkpoint.serde.event_hooks import register_serde_event_listener

    refused: Counter[str] = Counter()

    def on_event(event: Any) -> None:
        if event.get("kind") in ("msgpack_blocked", "msgpack_method_blocked"):
            refused[".".join(str(event[k]) for k in ("module", "name", "method") if k in event)] += 1

    saver = db.ours()
    unregister = register_serde_event_listener(on_event)
    try:
        report = verify(saver, threads or _all_threads(db), None if db.pg else "PRAGMA integrity_check")
    finally:
        unregister()
    report["refused"] = dict(sorted(refused.items()))
    return report


def cmd_verify(db: Database, args: argparse.Namespace) -> int:
    report = _verify_db(db, args.thread)
    _print_verify(report, args.json)
    return 1 if report["damage"] else 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from fastcheckpoint._copy import copy_op, keys_op, run_elsewhere

    if os.path.abspath(args.src) == os.path.abspath(args.dst) or args.src == args.dst:
        raise CliError("SRC and DST are the same database")
    src = Database(args.src, prepare_threshold=args.prepare_threshold)
    try:
        dst = Database(args.dst, create=True, prepare_threshold=args.prepare_threshold)
        try:
            source, what = src.source()
            setup = what == "fastcheckpoint"
            dst.saver._ready()
            dst.kind = "fastcheckpoint"
            done = dst.run(keys_op(dst.saver))
            before = len(done)

            def via(op: Any) -> Any:
                return run_elsewhere(lambda o: src.run(o, setup=setup), op)

            copied = dst.run(copy_op(source, dst.saver, done, f"copying from {src.name}", via=via))
            _out(f"copied {copied} checkpoints from {src.name} ({what}) to {dst.name} ({before} were already there)")
            if args.no_verify:
                return 0
            result = compare(source, lambda op: src.run(op, setup=setup), src.saver.serde, dst.saver)
            report = _verify_db(dst, None)
            for d in result["differences"][:50]:
                _out(f"  differs: {d['key']}: {d['difference']}")
            _print_verify(report, False)
            ok = not result["differences"] and not report["damage"]
            _out(
                f"{result['checked']} checkpoints compared with the source: "
                + ("all equal" if not result["differences"] else f"{len(result['differences'])} DIFFER")
            )
            return 0 if ok else 1
        finally:
            dst.close()
    finally:
        src.close()


def cmd_prune(db: Database, args: argparse.Namespace) -> int:
    saver = db.ours()
    keep = 0 if args.delete else 1 if args.keep_latest else args.keep_last
    if keep is not None and keep < 0:
        raise CliError("--keep-last needs a number >= 0")
    idle_since = time.time() - args.older_than if args.older_than is not None else None
    if args.delete and not args.thread and idle_since is None:
        raise CliError("--delete needs --thread or --older-than (refusing to delete every thread)")
    known = {r[0]: r[1] for r in db.run(query_op(saver.sql.THREAD_STATS))}
    if args.thread:
        missing = [t for t in args.thread if t not in known]
        if missing:
            raise CliError(f"{db.name}: no thread {missing[0]!r}")
        threads = list(args.thread)
    else:
        threads = sorted(known)
    if idle_since is not None:
        idle = set(db.run(saver._expired_op(idle_since, keep)))
        threads = [t for t in threads if t in idle]
    removed, touched = 0, 0
    for thread_id in threads:
        if args.dry_run:
            n = max(0, known[thread_id] - keep) if keep else known[thread_id]
        elif args.delete and idle_since is None:
            db.run(saver._delete_thread_op(thread_id))
            n = known[thread_id]
        else:
            n = db.run(saver._retain_op(thread_id, keep, idle_since))
        removed += n
        touched += 1 if n else 0
    verb = "would remove" if args.dry_run else "removed"
    _out(f"{verb} {removed} checkpoints from {touched} threads")
    return 0


def cmd_reencrypt(db: Database, args: argparse.Namespace) -> int:
    from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
    from tqdm import tqdm

    from fastcheckpoint._rekey import Rekeyed, rekey_thread_op
    from fastcheckpoint.encryption import AesCipher

    saver = db.ours()
    try:
        saver.serde = EncryptedSerializer(AesCipher.from_env(*(args.previous_key_env or ())))
    except CheckpointError as e:
        raise CliError(
            f"{e} (the new key goes in {KEY_ENV}, each previous one in a variable --previous-key-env names)"
        ) from e
    total = Rekeyed()
    for thread_id in tqdm(_all_threads(db), desc="re-encrypting", unit="thread", disable=None):
        done = db.run(rekey_thread_op(saver, thread_id))
        total.rewritten += done.rewritten
        total.current += done.current
        total.changed += done.changed
    _out(
        f"re-encrypted {total.rewritten} rows; {total.current} already were under the new key"
        + (f"; {total.changed} changed while this ran: run again to finish" if total.changed else "")
    )
    return 1 if total.changed else 0


def cmd_vacuum(db: Database, args: argparse.Namespace) -> int:
    db.ours()
    if db.pg:
        sizes = "SELECT sum(pg_total_relation_size(t)) FROM unnest(ARRAY['fc_checkpoints', 'fc_blobs', 'fc_writes']) t"
        before = db.conn.execute(sizes).fetchone()
        db.conn.execute(
            ("VACUUM (FULL, ANALYZE) " if args.full else "VACUUM (ANALYZE) ") + "fc_checkpoints, fc_blobs, fc_writes"
        )
        after = db.conn.execute(sizes).fetchone()
        first, last = (next(iter(row.values())) for row in (before, after))
        _out(f"tables: {render.size(first or 0)} -> {render.size(last or 0)}")
        if not args.full:
            _out("(space is reusable by new rows; --full returns it to the system and locks the tables meanwhile)")
        return 0
    store = db.saver._ready()

    def on_disk() -> int:
        return sum(os.path.getsize(p) for p in (db.target, db.target + "-wal") if os.path.exists(p))

    before = on_disk()
    store.execute_script("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
    _out(f"file: {render.size(before)} -> {render.size(on_disk())}")
    return 0


def cmd_stats(db: Database, args: argparse.Namespace) -> int:
    from fastcheckpoint.cli import _stats

    saver = db.ours()
    known = _all_threads(db)
    if args.thread and args.thread not in known:
        raise CliError(f"{db.name}: no thread {args.thread!r}")
    result = _stats.stats(saver, [args.thread] if args.thread else known)
    channels = result["channels"]
    total = {k: sum(c[k] for c in channels.values()) for k in ("versions", "stored", "body", "logical")}
    summary = {
        "threads": len(result["histories"]),
        "checkpoints": sum(len(h) for h in result["histories"].values()),
        "channels": channels,
        "stored_bytes": total["stored"],
        "compression_ratio": total["body"] / total["stored"] if total["stored"] else None,
        "delta_ratio": total["logical"] / total["body"] if total["body"] else None,
    }
    if args.plot:
        thread = args.thread or max(result["histories"], key=lambda t: len(result["histories"][t]), default=None)
        if thread is None:
            raise CliError(f"{db.name}: no threads to plot")
        _stats.plot(thread, result["histories"][thread], args.plot)
    if args.json:
        _out(render.dumps(summary))
        return 0
    body = [
        (ch, c["versions"], c["keyframes"], c["deltas"], render.size(c["stored"]), render.size(c["logical"]),
         f"{c['body'] / c['stored']:.1f}x" if c["stored"] else "-",
         f"{c['logical'] / c['body']:.1f}x" if c["body"] else "-")
        for ch, c in sorted(channels.items(), key=lambda kv: -kv[1]["stored"])
    ]  # fmt: skip
    header = ("channel", "versions", "whole", "deltas", "stored", "whole values", "zstd", "delta")
    _out(render.table(header, body, right=(1, 2, 3, 4, 5, 6, 7)))
    comp, delta = summary["compression_ratio"], summary["delta_ratio"]
    _out(
        f"{summary['threads']} threads, {summary['checkpoints']} checkpoints, {render.size(total['stored'])} of "
        f"channel values standing for {render.size(total['logical'])}"
        + (f" (compression {comp:.1f}x, list deltas {delta:.1f}x)" if comp and delta else "")
    )
    if args.plot:
        _out(f"plot written to {args.plot}")
    return 0


# -- the parser ----------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fastcheckpoint",
        description="Inspect, migrate, verify and prune fastcheckpoint databases (SQLite path or postgresql:// URI).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, **kw: Any) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help, **kw)
        if name != "migrate":
            c.add_argument("db", metavar="DB", help="SQLite file or postgresql:// URI")
        c.add_argument(
            "--prepare-threshold",
            type=int,
            default=None,
            metavar="N",
            help="Postgres: psycopg's prepare_threshold (default: none prepared, as poolers need)",
        )
        return c

    def thread_args(c: argparse.ArgumentParser) -> None:
        c.add_argument("thread", metavar="THREAD", help="thread_id")
        c.add_argument("--ns", default="", help="checkpoint namespace (default: the root graph's)")

    def output_args(c: argparse.ArgumentParser, full: bool = True) -> None:
        c.add_argument("--json", action="store_true", help="print JSON for scripts")
        if full:
            c.add_argument("--full", action="store_true", help="do not shorten long texts")
            c.add_argument("--all-channels", action="store_true", help="include LangGraph's internal channels")

    c = command("threads", "threads with checkpoint count, bytes stored and last update")
    c.add_argument("--sort", choices=("updated", "checkpoints", "bytes", "thread"), default="updated")
    c.add_argument("--limit", type=int, default=50, help="show at most this many (default 50)")
    output_args(c, full=False)

    c = command("history", "a thread's checkpoints, newest first: step, source, node, next nodes, time")
    thread_args(c)
    c.add_argument("--limit", type=int, default=None)
    output_args(c, full=False)

    c = command("show", "the state at a checkpoint (default: the latest)")
    thread_args(c)
    c.add_argument("checkpoint", metavar="CHECKPOINT", nargs="?", help="id, unique prefix, 'latest' or 'latest~N'")
    output_args(c)

    c = command("diff", "what changed between two checkpoints of a thread")
    thread_args(c)
    c.add_argument("a", metavar="A", help="checkpoint id, unique prefix, or 'latest'")
    c.add_argument("b", metavar="B", help="checkpoint id, unique prefix, or 'latest'")
    output_args(c)

    c = command("migrate", "copy every checkpoint from SRC to DST (resumable, verified at the end)")
    c.add_argument("src", metavar="SRC", help="ours or upstream LangGraph's: SQLite file or postgresql:// URI")
    c.add_argument("dst", metavar="DST", help="SQLite file (created if missing) or postgresql:// URI")
    c.add_argument("--no-verify", action="store_true", help="skip comparing the copy with the source")

    c = command("verify", "check that every checkpoint rebuilds, checksums hold and delta chains are complete")
    c.add_argument("--thread", action="append", help="only this thread (repeatable)")
    c.add_argument("--json", action="store_true", help="print the report as JSON")

    c = command("prune", "remove old checkpoints (DeltaChannel-safe; what remains still rebuilds)")
    what = c.add_mutually_exclusive_group(required=True)
    what.add_argument("--keep-latest", action="store_true", help="keep the newest checkpoint per namespace")
    what.add_argument("--keep-last", type=int, metavar="N", help="keep the newest N per namespace")
    what.add_argument("--delete", action="store_true", help="delete the threads")
    c.add_argument("--thread", action="append", help="only this thread (repeatable; default: every thread)")
    c.add_argument("--older-than", type=duration, metavar="DURATION", help="only threads idle this long (e.g. 30d)")
    c.add_argument("--dry-run", action="store_true", help="say what would be removed")

    c = command(
        "reencrypt",
        f"encrypt every stored body under the key in {KEY_ENV} (resumable): rows under previous keys "
        "and rows stored unencrypted",
    )
    c.add_argument(
        "--previous-key-env",
        action="append",
        metavar="NAME",
        help="an environment variable holding a key rows may be encrypted under now (repeatable)",
    )

    c = command("vacuum", "give the space of removed rows back")
    c.add_argument("--full", action="store_true", help="Postgres: VACUUM FULL (returns space to the system)")

    c = command("stats", "bytes per channel, compression and delta ratios")
    c.add_argument("--thread", help="only this thread")
    c.add_argument("--plot", metavar="FILE.png", help="plot size over a thread's history (default: the longest)")
    c.add_argument("--json", action="store_true", help="print JSON for scripts")
    return p


_COMMANDS = {
    "threads": cmd_threads,
    "history": cmd_history,
    "show": cmd_show,
    "diff": cmd_diff,
    "verify": cmd_verify,
    "prune": cmd_prune,
    "reencrypt": cmd_reencrypt,
    "vacuum": cmd_vacuum,
    "stats": cmd_stats,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "migrate":
            return cmd_migrate(args)
        db = Database(args.db, prepare_threshold=args.prepare_threshold)
        try:
            return _COMMANDS[args.command](db, args)
        finally:
            db.close()
    except CliError as e:
        sys.stderr.write(f"fastcheckpoint: {e}\n")
        return 2
    except CheckpointError as e:
        sys.stderr.write(f"fastcheckpoint: {type(e).__name__}: {e}\n")
        return 3
    except BrokenPipeError:  # output piped into `head`
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
