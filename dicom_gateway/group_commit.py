"""Group commit: what concurrent callers submit while a commit runs is committed together next.

Each caller waits until the group holding its own item is committed, so an association is
answered only once its own instance is durable; several associations share one directory fsync
and one index transaction. No thread of its own: the first caller to find no commit running
commits everything waiting, itself included (one association pays nothing extra)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Slot(Generic[Item, Result]):
    def __init__(self, item: Item) -> None:
        self.item = item
        self.done = False
        self.result: Result | None = None
        self.error: BaseException | None = None

    def outcome(self) -> Result:
        if self.error is not None:
            raise self.error
        return self.result


class GroupCommit(Generic[Item, Result]):
    """`commit(items) -> results`, called with every item waiting, one group at a time. A
    result that is an exception is raised to that item's caller alone; an exception raised by
    `commit` goes to every caller of the group."""

    def __init__(self, commit: Callable[[list[Item]], list[Result]]) -> None:
        self._commit = commit
        self._changed = threading.Condition()
        self._waiting: list[_Slot[Item, Result]] = []
        self._busy = False
        self.groups = 0  # committed so far; how many items each carried is items / groups
        self.items = 0

    def __call__(self, item: Item) -> Result:
        slot: _Slot[Item, Result] = _Slot(item)
        with self._changed:
            self._waiting.append(slot)
            while self._busy and not slot.done:
                self._changed.wait()
            if slot.done:  # committed by another caller's group
                return slot.outcome()
            self._busy = True
            group, self._waiting = self._waiting, []
        results: list[Result | None] = [None] * len(group)
        error = None
        try:
            results = list(self._commit([s.item for s in group]))
        except BaseException as exc:  # every caller of the group hears of it
            error = exc
        with self._changed:
            for waiting, result in zip(group, results, strict=True):
                if isinstance(result, BaseException):  # this item alone failed
                    waiting.error, waiting.done = result, True
                else:
                    waiting.result, waiting.error, waiting.done = result, error, True
            self._busy = False
            self.groups += 1
            self.items += len(group)
            self._changed.notify_all()
        return slot.outcome()
