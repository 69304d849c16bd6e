"""Group commit: the writes of concurrent callers on one event loop share
transactions (the async savers' ``aput`` / ``aput_writes``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastcheckpoint._ops import Stmt

# A caller's statements and the future its answer goes to.
Waiting = tuple[list[Stmt], "asyncio.Future[list[int]]"]


class GroupCommit:
    """An async store whose writes from concurrent callers on one event loop
    share transactions (group commit), for ``aput`` / ``aput_writes``.

    Statements that arrive while groups are being committed wait for the next
    one; ``commit(batches)`` runs a group and answers each batch with its row
    counts or its own error (a failure of the transaction itself is raised:
    nothing of the group was stored). A caller returns once the transaction
    holding its statements has committed: the same guarantee as alone, for
    one round of locking, committing (and on a server, one round trip) per
    group. A group is taken once every caller ready to run has added its
    statements (starting each write at once made groups smaller and the rate
    lower: a commit costs more than the encoding it would overlap).

    With ``depth`` 2, two groups may be in flight: when none is, the callers
    waiting are split in two groups, so that from then on one half encodes its
    next puts while the other half's group commits (worth it only where a
    commit does not hold up the event loop, see ``sqlite._base._Commits``)."""

    def __init__(
        self,
        owner: object,
        read: Callable[[Sequence[tuple[str, Sequence[Any]]]], Awaitable[list[list[tuple[Any, ...]]]]],
        commit: Callable[[list[list[Stmt]]], Awaitable[list[Any]]],
        depth: int = 1,
    ) -> None:
        self.owner = owner  # what the group was made for (a store that may be replaced)
        self.read = read
        self.commit = commit
        self.depth = depth
        self.pending: list[Waiting] = []
        self.in_flight: set[asyncio.Future[Any]] = set()  # the groups committing
        self.taking = False  # a take is scheduled

    async def write(self, statements: Sequence[Stmt]) -> list[int]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[int]] = loop.create_future()
        self.pending.append((list(statements), done))
        self._schedule(loop)
        return await done

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        # Scheduled after the callbacks already ready to run: the callers just
        # woken add their statements first.
        if not self.taking and self.pending and len(self.in_flight) < self.depth:
            self.taking = True
            loop.call_soon(self._take, loop)

    def _take(self, loop: asyncio.AbstractEventLoop) -> None:
        self.taking = False
        while self.pending and len(self.in_flight) < self.depth:
            group, self.pending = self.pending, []
            if not self.in_flight and self.depth > 1 and len(group) > 1:
                half = (len(group) + 1) // 2
                group, self.pending = group[:half], group[half:]
            try:
                commit = self.commit([batch for batch, _ in group])
            except Exception as e:  # refused before it started: nothing stored
                self._settle(group, [e] * len(group))
                continue
            # Held until answered (a task nobody holds may be collected).
            self.in_flight.add(answer := asyncio.ensure_future(commit))
            answer.add_done_callback(lambda answer, group=group: self._answered(loop, group, answer))

    def _answered(self, loop: asyncio.AbstractEventLoop, group: list[Waiting], answer: asyncio.Future[Any]) -> None:
        self.in_flight.discard(answer)
        if answer.cancelled():  # the loop is shutting down
            results: list[Any] = [asyncio.CancelledError()] * len(group)
        elif (e := answer.exception()) is not None:  # the transaction as a whole failed: nothing stored
            results = [e] * len(group)
        else:
            results = answer.result()
        self._settle(group, results)
        self._schedule(loop)

    @staticmethod
    def _settle(group: list[Waiting], results: list[Any]) -> None:
        for (_, done), result in zip(group, results, strict=True):
            if done.done():  # its caller was cancelled (what it wrote is stored all the same)
                continue
            if isinstance(result, Exception):
                done.set_exception(result)
            elif isinstance(result, BaseException):  # the commit was cancelled or interrupted
                done.cancel()
            else:
                done.set_result(result)


def on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the caller runs on ``loop`` (where an async saver's sync methods
    would deadlock waiting for it)."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
