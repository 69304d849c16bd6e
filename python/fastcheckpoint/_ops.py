"""The sans-I/O vocabulary every saver operation is written in, and the
drivers that run operations on a store.

An operation is a generator that yields its I/O and gets the results back:
``Read([(sql, params), ...])`` asks for the rows of several queries from one
consistent snapshot, ``Write([(sql, params, require_row), ...])`` for one
transaction (the row counts come back; a store error is thrown into the
generator), ``Page([...])`` hands a page of listed checkpoints out. A store
answers reads and writes; the drivers below feed its answers back, the same
way for a sync store (``iter_op`` / ``run_op``) and an async one
(``aiter_op`` / ``arun_op``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Generator, Sequence
from typing import Any, Protocol, TypeVar

# One statement of a write: SQL, its parameters, and whether it must change a row.
Stmt = tuple[str, Sequence[Any], bool]
T = TypeVar("T")


class Read(list):  # type: ignore[type-arg]
    """Queries answered from one snapshot: ``[(sql, params), ...]`` -> list of row lists."""


class Write(list):  # type: ignore[type-arg]
    """Statements run in one transaction: ``[(sql, params, require_row), ...]`` -> row counts."""


class Page(list):  # type: ignore[type-arg]
    """Checkpoint tuples an operation hands out (listing)."""


Op = Generator[Any, Any, T]


class Store(Protocol):
    def read(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[tuple[Any, ...]]]: ...
    def write(self, statements: Sequence[Stmt]) -> list[int]: ...


class AsyncStore(Protocol):
    def read(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> Awaitable[list[list[tuple[Any, ...]]]]: ...
    def write(self, statements: Sequence[Stmt]) -> Awaitable[list[int]]: ...


def _advance(op: Op[Any], result: Any, error: BaseException | None) -> Any:
    """Hands ``op`` the answer to its last request (or throws its error into
    it); returns its next request. ``StopIteration`` carries its result."""
    return op.throw(error) if error is not None else op.send(result)


def iter_op(op: Op[T], store: Store) -> Generator[Page, None, T]:
    """Runs ``op`` on a sync store, yielding its pages; returns its result."""
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            request = _advance(op, result, error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        result, error = None, None
        if isinstance(request, Page):
            yield request
            continue
        try:
            result = store.read(request) if isinstance(request, Read) else store.write(request)
        except Exception as e:
            error = e


def run_op(op: Op[T], store: Store) -> T:
    """Runs ``op`` (which yields no pages) on a sync store; returns its result."""
    try:
        next(iter_op(op, store))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    raise AssertionError("an operation run for its result yielded a page")


async def aiter_op(op: Op[Any], store: AsyncStore, result_to: list[Any] | None = None) -> AsyncIterator[Page]:
    """``iter_op`` for an async store (an async generator returns no value:
    the operation's result is appended to ``result_to``)."""
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            request = _advance(op, result, error)
        except StopIteration as stop:
            if result_to is not None:
                result_to.append(stop.value)
            return
        result, error = None, None
        if isinstance(request, Page):
            yield request
            continue
        try:
            result = await (store.read(request) if isinstance(request, Read) else store.write(request))
        except Exception as e:
            error = e


async def arun_op(op: Op[T], store: AsyncStore) -> T:
    """``run_op`` for an async store."""
    result: list[Any] = []
    async for _ in aiter_op(op, store, result):
        raise AssertionError("an operation run for its result yielded a page")
    return result[0]  # type: ignore[no-any-return]
