"""The spool index on PostgreSQL, for many machines: a connection pool (psycopg_pool) that
checks each connection before handing it out, so a restarted server is reconnected to."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from dicom_gateway.dialect import POSTGRES
from dicom_gateway.index import MIGRATIONS, Index, Transaction
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
        where = _where(url)  # a URL that cannot be parsed is refused before anything prints it
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
            raise ConfigError(
                f"the index database {where} did not answer within {connect_timeout_s:g} s"
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


def describe(url: str, timeout_s: float = 10.0) -> str:
    """What answers at `url`, changing nothing there: the server's version and how many of this
    version's migrations its schema has. ConfigError when it cannot be used as the index."""
    where = _where(url)
    try:
        with psycopg.connect(url, connect_timeout=max(1, round(timeout_s)), autocommit=True) as db:
            server = db.info.server_version  # e.g. 150008 for 15.8
            if db.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
                applied = 0
            else:
                applied = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
                applied = applied.fetchone()[0]
    except psycopg.Error as exc:
        reason = _without_password(
            str(exc).strip().splitlines()[0] if str(exc).strip() else "", url
        )
        reason = reason or type(exc).__name__
        raise ConfigError(f"the index database {where} cannot be used: {reason}") from None
    if applied > len(MIGRATIONS):
        raise ConfigError(
            f"the index database {where} has schema {applied}, newer than this version's "
            f"{len(MIGRATIONS)}: upgrade this node"
        )
    schema = (
        "schema up to date"
        if applied == len(MIGRATIONS)
        else f"schema {applied} of {len(MIGRATIONS)} (serve migrates it)"
    )
    return f"PostgreSQL {_version(server)} at {where}, {schema}"


def _version(server: int) -> str:
    """libpq's number as PostgreSQL names it: 150008 -> 15.8 (from 10 on), 90624 -> 9.6.24."""
    if server >= 100000:
        return f"{server // 10000}.{server % 10000}"
    return f"{server // 10000}.{server // 100 % 100}.{server % 100}"


def _where(url: str) -> str:
    """The database, host and port of `url`, never the password it may hold; ConfigError, which
    does not quote the URL either, when it cannot be parsed."""
    try:
        where = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise ConfigError(
            "the index database URL cannot be parsed: check its host, port and %-escaping"
        ) from None
    return f"{where.get('dbname', '')} on {where.get('host', '')}:{where.get('port', 5432)}"


def _without_password(text: str, url: str) -> str:
    """`text` with the URL's password, as written and as decoded, blanked out."""
    password = conninfo_to_dict(url).get("password")
    for form in {password, quote(password or "", safe="")} - {None, ""}:
        text = text.replace(form, "***")
    return text
