"""`storesync demo`: the story a new user watches. It grows as the parts land."""

from __future__ import annotations

import time

from rich.console import Console

from storesync.config import Settings


def run_demo(settings: Settings, console: Console) -> int:
    """Start the database (embedded unless DATABASE_URL), migrate, show the system, stop."""
    from storesync.cli import render_status
    from storesync.db import database_settings
    from storesync.db.migrate import migrate
    from storesync.db.pools import connect_direct

    t0 = time.monotonic()
    where = "DATABASE_URL" if settings.pooled_dsn else f"embedded Postgres in {settings.pgdata}"
    console.rule("storesync demo")
    console.print(f"1. database: {where}", highlight=False)
    with database_settings(settings) as settings:
        console.print(f"   ready in {time.monotonic() - t0:.1f}s")
        with connect_direct(settings) as conn:
            ran = migrate(conn)
        console.print(f"2. migrations: {len(ran)} applied" + (f" ({', '.join(m.name for m in ran)})" if ran else ""))
        console.print("3. the system now:")
        console.print(render_status(settings))
    console.print(f"done in {time.monotonic() - t0:.1f}s; the embedded server stops with this process")
    return 0
