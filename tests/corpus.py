"""Values of every kind the seed features put in LangGraph state (shared by tests and benches)."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import ipaddress
import pathlib
import re
import sys
import typing
import uuid
import zoneinfo

import pydantic
import pydantic.v1
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    ChatMessage,
    ChatMessageChunk,
    FunctionMessage,
    FunctionMessageChunk,
    HumanMessage,
    HumanMessageChunk,
    RemoveMessage,
    SystemMessage,
    SystemMessageChunk,
    ToolMessage,
    ToolMessageChunk,
)
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from langgraph.store.base import Item
from langgraph.types import Command, Interrupt, Send


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


if sys.version_info >= (3, 11):

    class Mode(enum.StrEnum):
        FAST = "fast"
else:  # StrEnum is 3.11+; a str-mixin Enum is what it was before

    class Mode(str, enum.Enum):  # type: ignore[no-redef]
        FAST = "fast"


class Point(typing.NamedTuple):
    x: int
    y: float = 0.5


@dataclasses.dataclass
class Plain:
    a: int
    b: list


@dataclasses.dataclass(frozen=True, slots=True)
class FrozenSlots:
    name: str
    tags: tuple = ()


@dataclasses.dataclass
class Nested:
    inner: Plain
    when: datetime.datetime


class Profile(pydantic.BaseModel):
    name: str
    age: int = 3
    tags: list[str] = []


class Team(pydantic.BaseModel):
    lead: Profile
    members: list[Profile]


class Loose(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    a: int


class LegacyV1(pydantic.v1.BaseModel):
    a: int
    b: str = "x"


def messages() -> list:
    tool_call = {"name": "search", "args": {"q": "weather"}, "id": "call_1", "type": "tool_call"}
    return [
        HumanMessage("hello ✓", id="h1"),
        HumanMessage("x" * 70_000, id="big"),  # a payload past 64 KiB: an ext32 header
        HumanMessage([{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": "data:x"}}]),
        AIMessage(
            "",
            tool_calls=[tool_call],
            usage_metadata={"input_tokens": 10, "output_tokens": 3, "total_tokens": 13},
            response_metadata={"model": "m"},
            id="a1",
        ),
        AIMessage("final", name="bot"),
        SystemMessage("be nice"),
        ToolMessage("sunny", tool_call_id="call_1", artifact={"raw": [1, 2]}),
        FunctionMessage("out", name="fn"),
        ChatMessage("hi", role="critic"),
        RemoveMessage(id="h1"),
        AIMessageChunk("par", id="c1"),
        HumanMessageChunk("h"),
        SystemMessageChunk("s"),
        ToolMessageChunk("t", tool_call_id="x"),
        FunctionMessageChunk("f", name="fn"),
        ChatMessageChunk("c", role="r"),
    ]


def corpus() -> list:
    tz = datetime.timezone(datetime.timedelta(hours=-3, minutes=-30), "X")
    return [
        True,
        False,
        0,
        -1,
        127,
        128,
        -33,
        2**63 - 1,
        2**64 - 1,
        -(2**63),
        1.5,
        float("inf"),
        float("-inf"),
        -0.0,
        "",
        "héllo wörld ✓ 🎉",
        "nul\x00inside",
        "x" * 70_000,
        b"",
        b"\x00\xff" * 40,
        [],
        [1, [2, [3, [4]]]],
        (1, "a", None),
        {"a": 1, "b": [1, 2]},
        {1: "int key", None: "none key", 2.5: "float key", (1, "t"): "tuple key", b"k": "bytes key"},
        {Color.RED: 1},
        {uuid.UUID(int=5): 1},
        {datetime.date(2024, 1, 2): 1},
        {1, 2, 3},
        frozenset({"a"}),
        collections.deque([1, 2]),
        collections.OrderedDict(a=1),
        collections.defaultdict(list, a=[1]),
        datetime.datetime(2024, 5, 6, 7, 8, 9, 10),
        datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc),
        datetime.datetime(2024, 5, 6, tzinfo=zoneinfo.ZoneInfo("Asia/Tokyo")),
        datetime.date(1999, 12, 31),
        datetime.time(23, 59, 1, 5),
        datetime.time(1, 2, tzinfo=tz),
        datetime.timedelta(days=-2, seconds=5, microseconds=7),
        datetime.timezone.utc,
        tz,
        zoneinfo.ZoneInfo("Europe/Paris"),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        decimal.Decimal("3.14159"),
        decimal.Decimal("-Infinity"),
        Color.RED,
        Level.HIGH,
        Mode.FAST,
        pathlib.Path("/tmp/x.txt"),
        pathlib.PosixPath("rel/y"),
        ipaddress.IPv4Address("10.0.0.1"),
        ipaddress.IPv6Address("::1"),
        ipaddress.IPv4Network("10.0.0.0/8"),
        ipaddress.IPv6Interface("fe80::1/64"),
        re.compile(r"a+b", re.IGNORECASE | re.MULTILINE),
        Point(1),
        Plain(1, [Point(2, 3.0)]),
        FrozenSlots("n", ("a",)),
        Nested(Plain(2, []), datetime.datetime(2020, 1, 1)),
        Profile(name="ann"),
        Team(lead=Profile(name="a"), members=[Profile(name="b", tags=["x"])]),
        Loose(a=1, extra_field="kept"),
        LegacyV1(a=2),
        *messages(),
        Send("node", {"arg": 1}),
        Interrupt(value={"question": "approve?"}, id="int-1"),
        Command(resume="yes"),
        Command(goto="n", update={"a": 1}),
        _DeltaSnapshot([1, 2, 3]),
        Item(
            value={"v": 1},
            key="k",
            namespace=("a", "b"),
            created_at=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
            updated_at=datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc),
        ),
        ValueError("boom"),
        {"messages": messages(), "meta": {"n": 1}},
    ]
