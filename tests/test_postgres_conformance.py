"""The langgraph-checkpoint-conformance suite, every capability, on both
Postgres savers: a plain connection, a pool, and pipeline mode."""

from __future__ import annotations

from contextlib import asynccontextmanager

import pytest
from langgraph.checkpoint.conformance import checkpointer_test
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from psycopg import AsyncConnection, Connection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from fastcheckpoint.encryption import AesCipher
from fastcheckpoint.postgres import PostgresSaver
from fastcheckpoint.postgres.aio import AsyncPostgresSaver
from tests.pgserver import database
from tests.test_conformance import AES_KEY, check_full_conformance

SERVER: list[str] = []  # set by the fixture below: the factories are module level
KWARGS = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}


@asynccontextmanager
async def fresh_db():
    with database(SERVER[0]) as uri:
        yield uri


@checkpointer_test(name="fastcheckpoint.PostgresSaver[connection]")
async def pg_conn():
    async with fresh_db() as uri:
        with Connection.connect(uri, **KWARGS) as conn:
            saver = PostgresSaver(conn)
            saver.setup()
            yield saver


@checkpointer_test(name="fastcheckpoint.PostgresSaver[pool]")
async def pg_pool():
    async with fresh_db() as uri:
        with ConnectionPool(uri, min_size=1, max_size=4, kwargs=KWARGS) as pool:
            saver = PostgresSaver(pool)
            saver.setup()
            yield saver


@checkpointer_test(name="fastcheckpoint.PostgresSaver[pipeline]")
async def pg_pipeline():
    async with fresh_db() as uri:
        with PostgresSaver.from_conn_string(uri, pipeline=True) as saver:
            saver.setup()
            yield saver


@checkpointer_test(name="fastcheckpoint.AsyncPostgresSaver[connection]")
async def apg_conn():
    async with fresh_db() as uri:
        async with await AsyncConnection.connect(uri, **KWARGS) as conn:
            saver = AsyncPostgresSaver(conn)
            await saver.setup()
            yield saver


@checkpointer_test(name="fastcheckpoint.AsyncPostgresSaver[pool]")
async def apg_pool():
    async with fresh_db() as uri:
        async with AsyncConnectionPool(uri, min_size=1, max_size=4, kwargs=KWARGS, open=False) as pool:
            saver = AsyncPostgresSaver(pool)
            await saver.setup()
            yield saver


@checkpointer_test(name="fastcheckpoint.AsyncPostgresSaver[pipeline]")
async def apg_pipeline():
    async with fresh_db() as uri:
        async with AsyncPostgresSaver.from_conn_string(uri, pipeline=True) as saver:
            await saver.setup()
            yield saver


@checkpointer_test(name="fastcheckpoint.PostgresSaver[pool, EncryptedSerializer.from_pycryptodome_aes]")
async def pg_pool_encrypted():
    async with fresh_db() as uri:
        with ConnectionPool(uri, min_size=1, max_size=4, kwargs=KWARGS) as pool:
            saver = PostgresSaver(pool, serde=EncryptedSerializer.from_pycryptodome_aes(key=AES_KEY))
            saver.setup()
            yield saver


@checkpointer_test(name="fastcheckpoint.AsyncPostgresSaver[connection, AesCipher]")
async def apg_conn_encrypted():
    async with fresh_db() as uri:
        async with await AsyncConnection.connect(uri, **KWARGS) as conn:
            saver = AsyncPostgresSaver(conn, serde=EncryptedSerializer(AesCipher(AES_KEY)))
            await saver.setup()
            yield saver


@pytest.fixture(autouse=True)
def _server(pg_server):
    SERVER[:] = [pg_server]


@pytest.mark.parametrize(
    "registered",
    [pg_conn, pg_pool, pg_pipeline, apg_conn, apg_pool, apg_pipeline, pg_pool_encrypted, apg_conn_encrypted],
    ids=lambda r: r.name,
)
async def test_conformance_full(registered) -> None:
    await check_full_conformance(registered)
