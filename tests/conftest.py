import pytest
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from fastcheckpoint.serde import RustSerializer


@pytest.fixture
def upstream() -> JsonPlusSerializer:
    return JsonPlusSerializer(allowed_msgpack_modules=True)


@pytest.fixture
def ours() -> RustSerializer:
    return RustSerializer(allowed_msgpack_modules=True)


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL server for the whole run (never skipped: a
    missing server fails the tests that need it)."""
    from tests.pgserver import cluster

    with cluster() as uri:
        yield uri


@pytest.fixture
def pg_uri(pg_server):
    """A fresh empty database on the test server."""
    from tests.pgserver import database

    with database(pg_server) as uri:
        yield uri


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def each_saver(request, tmp_path):
    """Our InMemorySaver, SqliteSaver (a file) and PostgresSaver, in turn."""
    from fastcheckpoint.memory import InMemorySaver
    from fastcheckpoint.postgres import PostgresSaver
    from fastcheckpoint.sqlite import SqliteSaver

    if request.param == "memory":
        yield InMemorySaver()
    elif request.param == "sqlite":
        with SqliteSaver.from_conn_string(str(tmp_path / "c.db")) as s:
            yield s
    else:
        with PostgresSaver.from_conn_string(request.getfixturevalue("pg_uri")) as s:
            s.setup()
            yield s


def pytest_report_header() -> str:
    import fastcheckpoint
    import fastcheckpoint._native

    return f"fastcheckpoint under test: {fastcheckpoint._native.__file__}"
