"""The spool index on PostgreSQL, for many machines: a connection pool (psycopg_pool) that
checks each connection before handing it out, so a restarted server is reconnected to."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from dicom_gateway.dialect import POSTGRES
from dicom_gateway.index import Index, Transaction
from imaging.errors import ConfigError


class Row(tuple):
    """A result row read by position or by column name, as sqlite3.Row is."""

    def __new__(cls, values, names: dict[str, int]):
        row = super().__new__(cls, values)
        row._names = names
        return row

    def __getitem__(self, key):
        return super().__getitem__(self._names[key] if isinstance(key, str) else key)

    def keys(self) -> list[str]:
        return list(self._names)


def _rows(cursor):
    names = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: Row(values, names)


class PostgresIndex(Index):
    dialect = POSTGRES
    transient = (psycopg.OperationalError,)  # the server restarted or cannot be reached

    def __init__(
        self,
        url: str,
        clock: Callable[[], float] | None = None,
        pool_size: int = 8,
        connect_timeout_s: float = 30.0,
    ) -> None:
        super().__init__(clock)
        self.url = url
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"row_factory": _rows},
            check=ConnectionPool.check_connection,
            timeout=connect_timeout_s,
            name="spool-index",
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
        except PoolTimeout:
            self._pool.close()
            where = conninfo_to_dict(url)  # named without the password the URL may hold
            raise ConfigError(
                f"the index database {where.get('dbname', '')} on {where.get('host', '')}:"
                f"{where.get('port', 5432)} did not answer within {connect_timeout_s:g} s"
            ) from None
        self.migrate()

    @contextmanager
    def write(self) -> Iterator[Transaction]:
        with self._pool.connection() as connection, connection.transaction():
            yield Transaction(connection, self.dialect, self._clock)

    def read(self, sql: str, *args) -> list[Row]:
        with self._pool.connection() as connection:
            return connection.execute(self.dialect.sql(sql), args).fetchall()

    def close(self) -> None:
        self._pool.close()
