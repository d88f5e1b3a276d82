"""Migrations: ordered, transactional, recorded, safe under concurrency, enforced at startup."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from storesync.db.migrate import (
    Migration,
    MigrationError,
    SchemaBehindError,
    ensure_at_head,
    head_version,
    load_migrations,
    migrate,
)


def test_migrate_applies_everything_once_and_records_it(empty_db) -> None:
    with empty_db.connect(autocommit=True) as conn:
        ran = migrate(conn)
        assert [m.version for m in ran] == [m.version for m in load_migrations()]
        assert migrate(conn) == []
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        assert [r[0] for r in rows] == [m.version for m in load_migrations()]
        ensure_at_head(conn)


def test_concurrent_migrate_from_four_processes_applies_each_migration_once(empty_db) -> None:
    script = "import sys; from storesync.cli import app; sys.argv=['storesync','migrate']; app()"
    env = {"DATABASE_URL": empty_db.dsn, "PATH": "/usr/bin:/bin", "STORESYNC_LOG_FORMAT": "json"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    applied_lines = sum(out.decode().count("applied ") for out, _ in outputs)
    assert applied_lines == len(load_migrations())  # each migration applied by exactly one process
    with empty_db.connect() as conn:
        count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0]
    assert count == len(load_migrations())


def test_schema_behind_head_refuses_with_instructions(empty_db) -> None:
    with empty_db.connect(autocommit=True) as conn:
        with pytest.raises(SchemaBehindError, match=r"schema is at version 0 .* run `storesync migrate`"):
            ensure_at_head(conn)
        migrate(conn)
        conn.execute("DELETE FROM schema_migrations WHERE version = %s", (head_version(),))
        with pytest.raises(SchemaBehindError, match=f"needs {head_version()}"):
            ensure_at_head(conn)
        # One missing below newer ones (a migration numbered before one already applied): behind
        # at the one before it, until migrate applies it.
        head, middle, before = load_migrations()[-1], load_migrations()[-3], load_migrations()[-4]
        record(conn, head)
        ensure_at_head(conn)
        conn.execute("DELETE FROM schema_migrations WHERE version = %s", (middle.version,))
        with pytest.raises(SchemaBehindError, match=f"schema is at version {before.version} "):
            ensure_at_head(conn)
        record(conn, middle)
        ensure_at_head(conn)


def record(conn: psycopg.Connection, mig: Migration) -> None:
    """Put back a migration's row as migrate writes it (its SQL already ran here)."""
    conn.execute(
        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
        (mig.version, mig.name, mig.checksum),
    )


def test_edited_applied_migration_is_reported(db, monkeypatch: pytest.MonkeyPatch) -> None:
    original = load_migrations()
    edited = [Migration(m.version, m.name, m.sql + "\n-- edited") for m in original]
    monkeypatch.setattr("storesync.db.migrate.load_migrations", lambda: edited)
    with (
        db.connect(autocommit=True) as conn,
        pytest.raises(MigrationError, match="was changed after it was applied"),
    ):
        migrate(conn)


def test_failed_migration_rolls_back_and_records_nothing(empty_db, monkeypatch: pytest.MonkeyPatch) -> None:
    good = load_migrations()
    broken = [*good, Migration(9999, "broken", "CREATE TABLE half_done (id int); SELECT 1/0;")]
    monkeypatch.setattr("storesync.db.migrate.load_migrations", lambda: broken)
    with empty_db.connect(autocommit=True) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            migrate(conn)
        assert conn.execute("SELECT to_regclass('half_done')").fetchone()[0] is None
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] == good[-1].version


def test_migrate_requires_autocommit_direct_connection(empty_db) -> None:
    with empty_db.connect() as conn, pytest.raises(MigrationError, match="autocommit"):
        migrate(conn)
