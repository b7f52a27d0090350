"""Which engine holds the spool index: SQLite in the spool (one machine), or a shared PostgreSQL
(several). Kept apart from both engines so neither imports the other."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dicom_gateway.index import Index, SqliteIndex, index_path
from dicom_gateway.settings import uses_postgres
from imaging.errors import ConfigError


def open_index(
    database: str,
    spool_dir: str | Path,
    clock: Callable[[], float] | None = None,
    connect_timeout_s: float = 30.0,
) -> Index:
    """`database` empty: SQLite in the spool; postgresql://…: the shared PostgreSQL index, which
    must answer within `connect_timeout_s`."""
    if uses_postgres(database):
        from dicom_gateway.postgres_index import PostgresIndex  # psycopg only where it is used

        return PostgresIndex(database, clock, connect_timeout_s=connect_timeout_s)
    return SqliteIndex(index_path(spool_dir), clock)


def describe_index(database: str, spool_dir: str | Path, timeout_s: float = 10.0) -> str:
    """Where the index is and whether it can be used, changing nothing (ConfigError if not)."""
    try:
        shared = uses_postgres(database)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if shared:
        try:
            from dicom_gateway.postgres_index import describe
        except ImportError as exc:
            raise ConfigError(
                f"the index database is PostgreSQL but {exc.name} is missing: "
                "pip install 'edge-agent[postgres]'"
            ) from None
        return describe(database, timeout_s)
    return f"SQLite in the spool ({index_path(spool_dir)})"
