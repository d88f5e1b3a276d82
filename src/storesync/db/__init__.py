"""Database access: embedded server, the pooled and direct paths, migrations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import SecretStr

from storesync.config import Settings


@contextmanager
def database_settings(settings: Settings) -> Iterator[Settings]:
    """Settings with a usable `DATABASE_URL`: the configured one, or an embedded server's.

    With `DATABASE_URL` set nothing embedded starts. Otherwise this process joins (or starts)
    the embedded server in `settings.pgdata`; it stops when its last user exits, including on
    SIGTERM/SIGINT.
    """
    if settings.pooled_dsn:
        yield settings
        return
    from storesync.db.embedded import EmbeddedPostgres, own_signals

    with own_signals():
        dsn = EmbeddedPostgres(settings.pgdata, settings.embedded_database).start()
        yield settings.model_copy(update={"database_url": SecretStr(dsn), "database_direct_url": None})
