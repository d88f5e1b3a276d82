"""End-to-end fixtures: the whole system (emulator, web tier, worker processes, real Postgres)
through the demo harness (`storesync.demo.harness.running_system`).

`module_db` is a fresh migrated database per test module, so one running system can serve the
module's tests; each test works on its own products (SKUs), which keeps them independent of
order. `module_layout` is how that system reaches it: by default the production layout of
docs/operations.md (`DATABASE_URL` through a real PgBouncer in transaction mode,
`DATABASE_DIRECT_URL` straight to Postgres); `--e2e-layout direct` runs them on one URL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from pytest_postgresql.janitor import DatabaseJanitor

from tests.conftest import ScratchDatabase
from tests.support.postgres import DatabaseLayout, PgServer, database_layout


@pytest.fixture(scope="module")
def module_db(pg_server: PgServer, template_db: str) -> Iterator[ScratchDatabase]:
    name = f"m_{uuid.uuid4().hex[:16]}"
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


@pytest.fixture(scope="module")
def module_layout(request: pytest.FixtureRequest, module_db: ScratchDatabase) -> Iterator[DatabaseLayout]:
    with database_layout(
        request.config.getoption("--e2e-layout"), module_db.server, module_db.name
    ) as layout:
        yield layout
