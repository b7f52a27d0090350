"""The spool index on both engines: the store-level tests run once on SQLite and once on a real
PostgreSQL server (one per test session, a fresh database per test)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dicom_gateway.engines import open_index
from dicom_gateway.index import Index, SqliteIndex
from tests.postgres import Postgres


class Clock:
    """An index's clock that moves only when a test sets `t`."""

    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="session")
def postgres():
    server = Postgres()
    yield server
    server.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def open_store(request, tmp_path: Path) -> Callable[..., Index]:
    """Opens the index of one engine; a second call opens the same index again."""
    opened: list[Index] = []
    if request.param == "sqlite":
        path = tmp_path / "index.sqlite"

        def make(**options) -> Index:
            opened.append(SqliteIndex(path, **options))
            return opened[-1]
    else:
        url = request.getfixturevalue("postgres").database()

        def make(**options) -> Index:
            opened.append(open_index(url, tmp_path, **options))
            return opened[-1]

    yield make
    for index in opened:
        index.close()
