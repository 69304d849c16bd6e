"""The LangGraph Agent Server plug-in: our saver as the server's checkpointer.

Name it in ``langgraph.json``::

    {
      "graphs": {"agent": "./agent.py:graph"},
      "checkpointer": {
        "path": "fastcheckpoint.server.checkpointer",
        "ttl": {"strategy": "delete", "default_ttl": 43200, "sweep_interval_minutes": 60}
      }
    }

The server calls ``checkpointer()`` with no arguments and enters the async
context manager it returns once, for its lifetime. The database comes from
``FASTCHECKPOINT_URI``: a ``postgresql://`` URI (an ``AsyncPostgresSaver`` on
a connection pool with no server-side prepared statements, so PgBouncer in
transaction mode works) or a SQLite path (an ``AsyncSqliteSaver``); unset, a
SQLite file in the server's own ``.langgraph_api`` folder.

The server hands its ``"checkpointer"`` block to the process only as the
``LANGGRAPH_CHECKPOINTER`` environment variable (JSON), and its thread TTL as
``LANGGRAPH_THREAD_TTL``, which wins, as on the server. Their ``ttl`` settings
(``strategy``, ``default_ttl``, ``sweep_interval_minutes``, ``sweep_limit``)
become the saver's ``ttl=``, so expired threads are pruned or deleted by the
saver. ``FASTCHECKPOINT_TTL=off`` leaves TTL to the server alone (see the
README's Deploying: a server that deletes threads itself and a saver that
deletes their checkpoints should not both run).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from fastcheckpoint._retention import Retention
from fastcheckpoint.errors import ConfigError

URI_VARIABLE = "FASTCHECKPOINT_URI"
DEFAULT_URI = os.path.join(".langgraph_api", "fastcheckpoint.sqlite")
POOL_MAX_VARIABLE = "FASTCHECKPOINT_POOL_MAX_SIZE"
DEFAULT_POOL_MAX = 10
_PG_SCHEMES = ("postgres://", "postgresql://")


def _json_variable(environ: Mapping[str, str], name: str) -> Any:
    text = environ.get(name)
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{name} is not JSON: {e}") from None


def server_ttl(environ: Mapping[str, str] = os.environ) -> Retention | None:
    """The TTL the Agent Server was configured with, as our saver applies it.

    Args:
        environ: Where the server put its configuration (``LANGGRAPH_THREAD_TTL``,
            else the ``"ttl"`` of ``LANGGRAPH_CHECKPOINTER``).

    Returns:
        The settings, or None when none are configured, the block has no
        ``default_ttl``, or ``FASTCHECKPOINT_TTL`` is ``off``.

    Raises:
        ConfigError: a setting we cannot honour, named.
    """
    if environ.get("FASTCHECKPOINT_TTL", "").strip().lower() == "off":
        return None
    ttl = _json_variable(environ, "LANGGRAPH_THREAD_TTL")
    if ttl is None:
        block = _json_variable(environ, "LANGGRAPH_CHECKPOINTER") or {}
        ttl = block.get("ttl") if isinstance(block, Mapping) else None
    if not ttl or (isinstance(ttl, Mapping) and "default_ttl" not in ttl and "ttl" not in ttl):
        return None  # per-thread TTLs only: the server's own business
    return Retention.of(ttl)


@asynccontextmanager
async def checkpointer() -> AsyncIterator[BaseCheckpointSaver]:
    """Yields the saver the server uses for its lifetime (see the module docs).

    Returns:
        An async context manager yielding an ``AsyncPostgresSaver`` or an
        ``AsyncSqliteSaver``, set up and with the server's TTL applied.
    """
    uri = os.environ.get(URI_VARIABLE) or DEFAULT_URI
    ttl = server_ttl()
    if uri.startswith(_PG_SCHEMES):
        from fastcheckpoint.postgres.aio import AsyncPostgresSaver

        max_size = int(os.environ.get(POOL_MAX_VARIABLE) or DEFAULT_POOL_MAX)
        pool = {"min_size": 1, "max_size": max_size}
        async with AsyncPostgresSaver.from_conn_string(uri, ttl=ttl, pool_config=pool) as saver:
            await saver.setup()
            yield saver
        return
    from fastcheckpoint.sqlite.aio import AsyncSqliteSaver

    path = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else uri
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    async with AsyncSqliteSaver.from_conn_string(path, ttl=ttl) as saver:
        await saver.setup()
        yield saver


__all__ = ["checkpointer", "server_ttl"]
