"""Test harness: one real PostgreSQL per test session, a fresh database per test.

The server is `DATABASE_URL`'s when set, else the embedded one in `.storesync/test-pgdata`
(shared by concurrent test sessions, stopped when the last one exits). Each test that asks for
`db` gets its own database cloned from a template that was migrated once; the template's name
carries a hash of the migrations, so editing them rebuilds it. Tests are independent of order.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr
from pytest_postgresql.janitor import DatabaseJanitor

from storesync.config import Settings
from storesync.db.migrate import load_migrations, migrate
from tests.support.postgres import PgServer

ROOT = Path(__file__).resolve().parent.parent
TEST_PGDATA = ROOT / ".storesync" / "test-pgdata"
TEMPLATE_LOCK_KEY = 0x7E57_0001


@dataclass(frozen=True)
class ScratchDatabase:
    """A migrated database of a test's own, with settings that point both paths at it."""

    name: str
    dsn: str
    server: PgServer

    @property
    def settings(self) -> Settings:
        return Settings.load(database_url=SecretStr(self.dsn), pool_min_size=0)

    def connect(self, **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.dsn, **kwargs)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--e2e-layout",
        choices=("production", "direct"),
        default=os.environ.get("STORESYNC_TEST_E2E_LAYOUT", "production"),
        help="where the end-to-end systems connect: production (DATABASE_URL through PgBouncer in "
        "transaction mode, DATABASE_DIRECT_URL straight to Postgres; the default) or direct (one "
        "URL straight to Postgres). Env: STORESYNC_TEST_E2E_LAYOUT.",
    )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield PgServer.from_dsn(url)
        return
    from storesync.db.embedded import EmbeddedPostgres

    # Durability against an OS crash is not what tests exercise (they kill processes, not the
    # machine), so the test server skips fsync: commits are several times cheaper.
    dsn = EmbeddedPostgres(
        TEST_PGDATA,
        database="postgres",
        server_settings={"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"},
    ).start()
    yield PgServer.from_dsn(dsn)
    # The embedded server stops at interpreter exit once no other test session uses it.


def _template_name() -> str:
    digest = hashlib.sha256("".join(m.checksum for m in load_migrations()).encode()).hexdigest()[:12]
    return f"storesync_tmpl_{digest}"


@pytest.fixture(scope="session")
def template_db(pg_server: PgServer) -> str:
    """A migrated template database, built once per set of migrations."""
    name = _template_name()
    with psycopg.connect(pg_server.dsn("postgres"), autocommit=True) as admin:
        # Concurrent test sessions share the server: one builds, the others wait and reuse.
        admin.execute("SELECT pg_advisory_lock(%s)", (TEMPLATE_LOCK_KEY,))
        try:
            ready = admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s AND datistemplate", (name,)
            ).fetchone()
            if not ready:
                janitor = DatabaseJanitor(
                    user=pg_server.user,
                    host=pg_server.host,
                    port=pg_server.port,
                    password=pg_server.password,
                    dbname=name,
                )
                janitor.drop()
                janitor.init()
                with psycopg.connect(pg_server.dsn(name), autocommit=True) as conn:
                    migrate(conn)
                admin.execute(f'ALTER DATABASE "{name}" WITH is_template true')
        finally:
            admin.execute("SELECT pg_advisory_unlock(%s)", (TEMPLATE_LOCK_KEY,))
    return name


@pytest.fixture
def db(pg_server: PgServer, template_db: str) -> Iterator[ScratchDatabase]:
    """A fresh, migrated database for this test alone, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    janitor = DatabaseJanitor(
        user=pg_server.user,
        host=pg_server.host,
        port=pg_server.port,
        password=pg_server.password,
        dbname=name,
        template_dbname=template_db,
    )
    with janitor:
        yield ScratchDatabase(name=name, dsn=pg_server.dsn(name), server=pg_server)


@pytest.fixture
def empty_db(pg_server: PgServer) -> Iterator[ScratchDatabase]:
    """A fresh database with no migrations applied (for migration tests)."""
    name = f"e_{uuid.uuid4().hex[:16]}"
    janitor = DatabaseJanitor(
        user=pg_server.user,
        host=pg_server.host,
        port=pg_server.port,
        password=pg_server.password,
        dbname=name,
    )
    with janitor:
        yield ScratchDatabase(name=name, dsn=pg_server.dsn(name), server=pg_server)


@pytest.fixture
def pgbouncer_dsn(db: ScratchDatabase) -> Iterator[str]:
    """A DSN for the test's database through a real PgBouncer in transaction mode."""
    from tests.support.pgbouncer import run_pgbouncer

    s = db.server
    with run_pgbouncer(s.host, s.port, s.user, s.password, db.name) as dsn:
        yield dsn


@pytest.fixture
def emulator():
    """A fresh commerce emulator serving parent.myshopify.com and child-a/b/c.myshopify.com on
    127.0.0.1:<ephemeral> (see tests/support/emulator.py for the handle's API)."""
    from tests.support.emulator import running_emulator

    with running_emulator() as emu:
        yield emu
