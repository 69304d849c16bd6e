import pytest
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from fastcheckpoint.serde import RustSerializer


@pytest.fixture
def upstream() -> JsonPlusSerializer:
    return JsonPlusSerializer(allowed_msgpack_modules=True)


@pytest.fixture
def ours() -> RustSerializer:
    return RustSerializer(allowed_msgpack_modules=True)
