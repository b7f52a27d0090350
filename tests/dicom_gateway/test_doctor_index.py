"""`doctor` checks the spool index a node is configured with, changing nothing there: a shared
PostgreSQL must answer, its schema must not be newer than this version's; a password is never
printed."""

from __future__ import annotations

import psycopg
import pytest

from dicom_gateway.engines import open_index
from dicom_gateway.index import MIGRATIONS
from tests.peers import free_port
from tests.support import run_cli


def _doctor(tmp_path, monkeypatch, database: str, row_with: str = "│ index database"):
    """`doctor` on a node configured with this index database; its output and the one table
    row holding `row_with`."""
    monkeypatch.setenv("COLUMNS", "400")  # one table row per check, however long
    config = tmp_path / "edge-agent.toml"
    config.write_text(f'[gateway]\nport = {free_port()}\ndatabase = "{database}"\n')
    done = run_cli("doctor", "--out", tmp_path, "--config", config)
    [row] = [line for line in done.stdout.splitlines() if row_with in line]
    return done, row


def test_doctor_names_the_postgresql_index_and_its_schema_without_changing_it(
    tmp_path, monkeypatch, postgres
):
    url = postgres.database()
    _, row = _doctor(tmp_path, monkeypatch, url)
    assert "FAIL" not in row and "PostgreSQL 1" in row and f"on 127.0.0.1:{postgres.port}" in row
    assert f"schema 0 of {len(MIGRATIONS)} (serve migrates it)" in row
    with psycopg.connect(url) as db:  # nothing was created by the check
        assert db.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None
    open_index(url, tmp_path).close()  # as `serve` opens it: migrated
    _, row = _doctor(tmp_path, monkeypatch, url)
    assert "schema up to date" in row and "FAIL" not in row


def test_doctor_is_red_on_an_index_database_that_does_not_answer_and_hides_its_password(
    tmp_path, monkeypatch
):
    url = f"postgresql://edge:s3cret-pw@127.0.0.1:{free_port()}/spool"
    done, row = _doctor(tmp_path, monkeypatch, url)
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr
    assert "FAIL" in row and "spool on 127.0.0.1" in row and "cannot be used" in row
    assert "s3cret-pw" not in done.stdout + done.stderr
    assert "index database" in done.stdout.splitlines()[-1]  # named in "not ready: ..."


def test_doctor_is_red_on_a_schema_newer_than_this_version(tmp_path, monkeypatch, postgres):
    url = postgres.database()
    open_index(url, tmp_path).close()
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("UPDATE schema_version SET version = version + 1")
    done, row = _doctor(tmp_path, monkeypatch, url)
    assert done.returncode == 1 and "FAIL" in row and "upgrade this node" in row


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://edge:s3cret-pw@[::1/spool",  # cannot be parsed
        "postgressql://edge:s3cret-pw@db.example.org/spool",  # a mistyped scheme
    ],
)
def test_a_database_url_that_cannot_be_used_is_one_red_line_without_its_password(
    tmp_path, monkeypatch, url
):
    done, red = _doctor(tmp_path, monkeypatch, url, row_with="FAIL")  # the only red line
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr
    assert "s3cret-pw" not in done.stdout + done.stderr
    assert "database" in red
