import pytest
from fastcheckpoint.serde import RustSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer


@pytest.fixture
def upstream() -> JsonPlusSerializer:
    return JsonPlusSerializer(allowed_msgpack_modules=True)


@pytest.fixture
def ours() -> RustSerializer:
    return RustSerializer(allowed_msgpack_modules=True)
