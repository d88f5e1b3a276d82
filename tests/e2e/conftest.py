"""End-to-end fixtures: the whole system (emulator, web tier, worker processes, real Postgres)
through the demo harness (`storesync.demo.harness.running_system`).

`module_db` is a fresh migrated database per test module, so one running system can serve the
module's tests; each test works on its own products (SKUs), which keeps them independent of
order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from pytest_postgresql.janitor import DatabaseJanitor

from tests.conftest import PgServer, ScratchDatabase


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
