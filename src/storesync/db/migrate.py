"""Ordered SQL migrations: `migrations/NNNN_name.sql`, each applied in its own transaction.

Applied versions are recorded in `schema_migrations` with a checksum, so an edited migration
that already ran is reported instead of silently diverging. A session advisory lock on the
direct path serialises concurrent migrators (several processes starting at once): the first
applies, the others wait and then find nothing to do.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

# Arbitrary constant; the same for every storesync process so they exclude each other.
MIGRATION_LOCK_KEY = 0x5707E5_0001
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    pass


class SchemaBehindError(MigrationError):
    """The database schema is older than this code; the process must not serve."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    found: list[Migration] = []
    for entry in resources.files("storesync.db.migrations").iterdir():
        m = _FILE_RE.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version number: {versions}")
    return found


def head_version() -> int:
    migrations = load_migrations()
    return migrations[-1].version if migrations else 0


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


def applied_versions(conn: psycopg.Connection) -> dict[int, str]:
    """version -> checksum of what this database has applied ({} if never migrated)."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return {}
    return dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())


def migrate(conn: psycopg.Connection) -> list[Migration]:
    """Apply pending migrations on a direct-path connection (autocommit). Returns what ran."""
    if not conn.autocommit:
        raise MigrationError("migrate() needs an autocommit connection on the direct path")
    migrations = load_migrations()
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
    try:
        conn.execute(_CREATE_TABLE)
        done = applied_versions(conn)
        ran: list[Migration] = []
        for mig in migrations:
            if mig.version in done:
                if done[mig.version] != mig.checksum:
                    raise MigrationError(
                        f"migration {mig.version:04d}_{mig.name} was changed after it was applied; "
                        "add a new migration instead of editing an applied one"
                    )
                continue
            with conn.transaction():
                conn.execute(mig.sql)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (mig.version, mig.name, mig.checksum),
                )
            ran.append(mig)
        unknown = set(done) - {m.version for m in migrations}
        if unknown:
            raise MigrationError(
                f"database has migrations this code does not know ({sorted(unknown)}): "
                "it was migrated by a newer storesync"
            )
        return ran
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


def current_version(conn: psycopg.Connection) -> int:
    """The newest version up to which every known migration is applied. Not the newest applied:
    a migration numbered below one already applied (branches landing together) must still hold
    the schema behind its head until `storesync migrate` applies it."""
    done = applied_versions(conn)
    version = 0
    for mig in load_migrations():
        if mig.version not in done:
            return version
        version = mig.version
    return max([version, *done])


def ensure_at_head(conn: psycopg.Connection) -> None:
    """Raise `SchemaBehindError` with instructions unless the schema is at this code's head."""
    current, head = current_version(conn), head_version()
    if current < head:
        raise SchemaBehindError(
            f"database schema is at version {current} but this storesync needs {head}: "
            "run `storesync migrate` first"
        )
