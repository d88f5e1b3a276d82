"""`storesync` command line. Each command is a thin call into one part of the package.

What the stores and the database hold (titles, SKUs, shop domains, error text) is never read as
rich markup: table cells go through `terminal.cells()`, printed lines through `markup=False` or
`escape()` (a product titled `[/x]` would otherwise crash the command).

Conventions every command keeps: a command's own output (its report, tables, JSON) is stdout;
logs, progress bars and errors are stderr, so `storesync reconcile --dry-run > drift.txt` keeps
just the report. The same option means the same thing everywhere: `--merchant ID`, `--store
SHOP`, `--child SHOP`, `--kind KIND`, `--lane inventory|catalog|backfill`, `--limit N` (50,
newest first), `--dry-run` (report, change nothing), `--json`. Exit codes: 0 done, 1 done but
something needs a look (the report says what), 2 bad input or configuration."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from storesync.config import ConfigError, Settings
from storesync.console import console, err_console, fail, load_network, load_settings
from storesync.terminal import cells, escape

app = typer.Typer(help="storesync: sync a network of Shopify storefronts.", no_args_is_help=True)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        from storesync.api_version import ADMIN_API_VERSION

        try:
            mine = version("storesync")
        except PackageNotFoundError:
            mine = "unknown (not installed)"
        print(f"storesync {mine} (Shopify Admin API {ADMIN_API_VERSION})")
        raise typer.Exit(0)


@app.callback()
def main(
    show_version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="print the version and exit"),
    ] = False,
) -> None:
    """storesync: sync a network of Shopify storefronts (docs/getting-started.md)."""


db_app = typer.Typer(help="Manage the embedded PostgreSQL server (used when DATABASE_URL is unset).")
network_app = typer.Typer(help="The configured merchants and stores.")
app.add_typer(db_app, name="db")
app.add_typer(network_app, name="network")


# --------------------------------------------------------------------------- db


def _embedded(settings: Settings):
    from storesync.db.embedded import EmbeddedPostgres

    if settings.pooled_dsn:
        fail("DATABASE_URL is set: storesync uses that server and starts nothing embedded")
    return EmbeddedPostgres(settings.pgdata, settings.embedded_database)


@db_app.command("start")
def db_start() -> None:
    """Start the embedded server in the background; it runs until `storesync db stop`."""
    dsn = _embedded(load_settings()).start(detached=True)
    console.print(dsn, highlight=False)


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded server (fast shutdown: open sessions are disconnected)."""
    stopped = _embedded(load_settings()).stop()
    console.print("stopped" if stopped else "not running")


@db_app.command("status")
def db_status() -> None:
    """Whether the embedded server runs, where, and which processes use it."""
    st = _embedded(load_settings()).status()
    console.print(f"pgdata:      {st.pgdata}", highlight=False, markup=False)
    console.print(f"initialized: {st.initialized}")
    console.print(f"running:     {st.running}" + (f" (pid {st.pid})" if st.pid else ""))
    if st.socket_dir:
        console.print(f"socket dir:  {st.socket_dir}", highlight=False, markup=False)
    console.print(f"users:       {st.handles or 'none'}")
    raise typer.Exit(0 if st.running else 1)


@db_app.command("url")
def db_url() -> None:
    """Print a DSN for the running embedded server (psql accepts it)."""
    url = _embedded(load_settings()).url()
    if url is None:
        fail("the embedded server is not running: `storesync db start`", code=1)
    print(url)


# --------------------------------------------------------------------------- schema


@app.command("migrate")
def migrate_cmd() -> None:
    """Apply pending migrations (safe to run from several processes at once)."""
    from storesync.db import database_settings
    from storesync.db.migrate import MigrationError, head_version, migrate
    from storesync.db.pools import connect_direct

    with database_settings(load_settings()) as settings, connect_direct(settings) as conn:
        try:
            ran = migrate(conn)
        except MigrationError as err:
            fail(str(err))
    for mig in ran:
        console.print(f"applied {mig.version:04d}_{mig.name}")
    console.print(f"schema at version {head_version()} (head)")


# --------------------------------------------------------------------------- network


@network_app.command("check")
def network_check(
    config: Annotated[Path | None, typer.Option(help="storesync.toml to check")] = None,
) -> None:
    """Validate storesync.toml and summarise the network (secrets are never printed); refuse
    placeholder secrets left from the example and children without a location map."""
    from storesync.config import network_problems

    settings = load_settings()
    if config is not None:
        settings = settings.model_copy(update={"config_file": config})
    if not settings.config_file.exists():
        fail(f"{settings.config_file} does not exist")
    network = load_network(settings)
    for m in network.merchants:
        console.print(
            f"[bold]{escape(m.id)}[/] parent {escape(m.parent.shop)}, {len(m.children)} children",
            highlight=False,
        )
    problems = network_problems(network)
    for problem in problems:
        err_console.print(f"[bold red]error:[/] {escape(problem)}", highlight=False)
    if problems:
        fail(f"{settings.config_file}: {len(problems)} problems (above)", code=1)
    console.print(
        f"{settings.config_file}: valid ({len(network.merchants)} merchants)", highlight=False, markup=False
    )


@network_app.command("apply")
def network_apply() -> None:
    """Mirror storesync.toml's merchants and stores into the database."""
    from storesync.db import database_settings
    from storesync.db.credentials import load_cipher
    from storesync.db.network_sql import apply_network
    from storesync.db.pools import connect_direct

    settings = load_settings()
    network = load_network(settings)
    try:
        cipher = load_cipher()
    except ConfigError as err:
        fail(str(err))
    with database_settings(settings) as settings, connect_direct(settings, autocommit=False) as conn:
        apply_network(conn, network, cipher)
        conn.commit()
    console.print(f"applied {len(network.merchants)} merchants (access tokens stored encrypted)")


@network_app.command("keygen")
def network_keygen() -> None:
    """Print a new key for STORESYNC_ENCRYPTION_KEY (keep it in your secret store)."""
    from storesync.db.credentials import generate_key

    print(generate_key())


@network_app.command("resume")
def network_resume(shop: Annotated[str, typer.Argument(help="the paused store's domain")]) -> None:
    """Make a paused store active again (after reinstalling the app or fixing its token); its
    parked jobs run at once."""
    from storesync.db import database_settings
    from storesync.db.pools import connect_direct
    from storesync.sync.services.stores import resume_store

    with database_settings(load_settings()) as settings, connect_direct(settings) as conn:
        n = resume_store(conn, shop)
    if n is None:
        fail(f"no store {shop!r} (storesync network apply?)", code=1)
    console.print(f"{shop} active again; {n} parked jobs due now", highlight=False, markup=False)


@network_app.command("locations")
def network_locations(
    merchant: Annotated[str | None, typer.Option(help="only this merchant id")] = None,
    write: Annotated[
        bool,
        typer.Option("--write", help="add each unmapped child's proposed location_map to storesync.toml"),
    ] = False,
) -> None:
    """List each store's locations and propose each child's location_map by name (TOML to paste
    under its [[merchants.children]], or --write it there for the children that have none); a
    mapped location gone or deactivated is reported (exit 1)."""
    from storesync.config import with_location_maps
    from storesync.sync.services.locations import network_locations as read_locations
    from storesync.sync.services.stores import merchants

    settings = load_settings()
    to_write: dict[str, dict[str, str]] = {}

    async def run(rt):
        return [(net, await read_locations(rt, net)) for net in merchants(rt, merchant)]

    problems = 0
    for net, found in _run_sync(run):
        for store in net.stores:
            if store.shop in found.errors:
                console.print(
                    f"{store.shop}: not read: {found.errors[store.shop]}", highlight=False, markup=False
                )
                continue
            table = Table(title=f"{found.merchant_id} {store.role} {store.shop}")
            for col in ("location", "id", "active", "online orders", "mapped to"):
                table.add_column(col)
            mapping = {c: p for p, c in net.location_maps.get(store.shop, {}).items()}
            for loc in found.locations[store.shop]:
                if store.role == "parent":
                    mirrored = [c for c, m in net.location_maps.items() if loc.id in m]
                    target = ", ".join(mirrored) or "-"
                else:
                    target = found.names.get(mapping[loc.id], mapping[loc.id]) if loc.id in mapping else "-"
                table.add_row(
                    *cells(
                        loc.name,
                        loc.id,
                        "yes" if loc.active else "NO",
                        "yes" if loc.fulfills_online_orders else "no",
                        target,
                    )
                )
            console.print(table)
        for proposal in found.proposals:
            console.print(
                f"# proposed for {proposal.child_shop} (stock_changes = {net.stock_policy(proposal.child_shop)}):",
                highlight=False,
                markup=False,
            )
            for line in proposal.toml(found.names):
                console.print(line, highlight=False, markup=False, soft_wrap=True)
            configured = dict(net.location_maps.get(proposal.child_shop, {}))
            if not configured and proposal.pairs:
                to_write[proposal.child_shop] = dict(proposal.pairs)
            elif configured != proposal.pairs:
                console.print("# (storesync.toml maps it otherwise today)", highlight=False, markup=False)
        for problem in found.problems:
            problems += 1
            console.print(f"PROBLEM {problem.describe()}", highlight=False, markup=False, soft_wrap=True)
    if write and to_write:
        path = settings.config_file
        text, not_placed = with_location_maps(path.read_text(encoding="utf-8"), to_write)
        if not_placed:
            fail(
                f"could not find the [[merchants.children]] table of {', '.join(not_placed)}: add the lines above by hand"
            )
        scratch = path.with_name(path.name + ".new")
        scratch.write_text(text, encoding="utf-8")
        try:
            written = load_network(settings.model_copy(update={"config_file": scratch}))
            for shop, mapping in to_write.items():
                entry = written.store(shop)
                if entry is None or entry[1].location_map != mapping:
                    fail(
                        f"{path}: the edited file does not map {shop} as intended; add the lines above by hand"
                    )
            scratch.replace(path)
        finally:
            scratch.unlink(missing_ok=True)
        console.print(
            f"wrote the location_map of {', '.join(to_write)} to {path}", highlight=False, markup=False
        )
    raise typer.Exit(1 if problems else 0)


# --------------------------------------------------------------------------- stores

stores_app = typer.Typer(help="Connecting stores to storesync.")
app.add_typer(stores_app, name="stores")


@stores_app.command("connect")
def stores_connect(shop: Annotated[str, typer.Argument(help="the store's myshopify.com domain")]) -> None:
    """Print the install URL of a store that connects by the authorization code grant: the
    merchant opens it, approves the app, and storesync stores its tokens."""
    from storesync.web.auth import install_url

    network = load_network(load_settings())
    found = network.store(shop.strip().lower())
    if found is None:
        fail(f'{shop} is not a store of storesync.toml (add it with credentials.kind = "authorization_code")')
    store = found[1]
    if store.credential_kind != "authorization_code":
        fail(
            f"{store.shop} connects with {store.credential_kind}: nothing to install "
            "(`storesync api check` shows its token and scopes)",
            code=1,
        )
    app_cfg = network.app_of(store)
    assert app_cfg is not None and app_cfg.redirect_uri is not None
    console.print(f"Open this link as the merchant of {store.shop} and approve the app:", highlight=False)
    print(install_url(app_cfg.redirect_uri, store.shop))


# --------------------------------------------------------------------------- emulator

# The command's signature only; the emulator is imported when it runs.
from storesync.emulator.cli import emulator_cmd  # noqa: E402

app.command("emulator")(emulator_cmd)


# --------------------------------------------------------------------------- admin api

api_app = typer.Typer(help="The stores' Admin API: reachability and the shared rate-limit budgets.")
app.add_typer(api_app, name="api")


def _check_stores(*, pause_missing: bool):
    """Every store's credentials, scopes and locations, as the workers would reach them
    (`commerce.tools.check_stores`); with `pause_missing`, a store lacking a scope is paused
    (when its database is at hand). (checks, {paused shop: reason})."""
    import asyncio

    from storesync.commerce.tools import check_stores
    from storesync.db import database_settings

    settings = load_settings()
    network = load_network(settings)
    if not network.merchants:
        fail("no stores configured (storesync.toml)")
    issued = any(s.credential_kind != "static" for m in network.merchants for s in m.stores)

    async def main(settings: Settings):
        if not (issued or settings.pooled_dsn):
            return await check_stores(network), {}
        from storesync.commerce.credentials import PgTokenStore
        from storesync.db.credentials import load_cipher
        from storesync.db.pools import async_pooled_pool
        from storesync.sync.adapters.postgres import pause_store

        pool = async_pooled_pool(settings, name="storesync-api-check", min_size=1, max_size=4)
        await pool.open(wait=True, timeout=settings.connect_timeout * 2)
        try:
            checks = await check_stores(
                network, token_store=PgTokenStore(pool, load_cipher()) if issued else None
            )
            paused = {}
            if pause_missing:
                async with pool.connection() as conn:
                    await conn.set_autocommit(True)
                    for c in checks:
                        if c.missing:
                            reason = f"missing access scopes {', '.join(c.missing)} (storesync api check)"
                            if await pause_store(conn, c.shop, reason):
                                paused[c.shop] = reason
            return checks, paused
        finally:
            await pool.close()

    try:
        if issued or settings.pooled_dsn:
            with database_settings(settings) as settings:
                return asyncio.run(main(settings))
        return asyncio.run(main(settings))
    except ConfigError as err:
        fail(str(err))


@api_app.command("check")
def api_check() -> None:
    """Per store: its credentials (kind, when the token expires), a token obtained as the
    workers would, the access scopes granted against the ones storesync needs, the shop and its
    bucket. A store missing a scope is paused with that reason (when its database is at hand:
    DATABASE_URL, or any store whose tokens live there); exit code 1 if any store fails."""
    from storesync.commerce.scopes import NEEDED_SCOPES

    checks, paused = _check_stores(pause_missing=True)
    table = Table(title="Admin API")
    for col in ("merchant", "shop", "credentials", "token expires", "scopes", "ok", "detail"):
        table.add_column(col)
    for c in checks:
        if c.scopes is None:
            scopes: str | Text = "?"
        elif c.missing:
            scopes = Text("missing " + ", ".join(c.missing), style="red")
        else:
            scopes = "all needed"
        expires = (
            c.token_expires_at.isoformat(timespec="seconds")
            if c.token_expires_at
            else ("never" if c.kind == "static" else "-")
        )
        ok = "yes" if c.ok else Text("no", style="red")
        table.add_row(*cells(c.merchant, c.shop, c.kind, expires, scopes, ok, c.detail))
    console.print(table)
    console.print("needed: " + ", ".join(NEEDED_SCOPES), highlight=False)
    for shop, reason in paused.items():
        console.print(f"[yellow]paused[/] {escape(shop)}: {escape(reason)}", highlight=False)
    raise typer.Exit(0 if all(c.ok for c in checks) else 1)


@api_app.command("budget")
def api_budget() -> None:
    """The rate-limit bucket each store shares across worker processes (Postgres)."""
    from storesync.commerce.tools import list_budgets
    from storesync.db import database_settings
    from storesync.db.pools import connect_direct

    with database_settings(load_settings()) as settings, connect_direct(settings) as conn:
        rows = list_budgets(conn)
    table = Table(title=f"Admin API budgets ({len(rows)} stores)")
    for col in ("shop", "available now", "bucket", "restore/s", "in flight", "corrected at"):
        table.add_column(col)
    for shop, capacity, rate, available, observed_at, in_flight in rows:
        table.add_row(
            *cells(
                shop,
                f"{available:.0f}",
                f"{capacity:.0f}",
                f"{rate:.0f}",
                in_flight,
                observed_at.isoformat(timespec="seconds"),
            )
        )
    console.print(table)


# --------------------------------------------------------------------------- web tier

deliveries_app = typer.Typer(help="Webhook deliveries recorded by the web tier.")
app.add_typer(deliveries_app, name="deliveries")


@app.command("serve")
def serve_cmd(
    host: Annotated[
        str | None, typer.Option(help="address to bind [env STORESYNC_WEB_HOST, 127.0.0.1]")
    ] = None,
    port: Annotated[int | None, typer.Option(help="port [env STORESYNC_WEB_PORT, 8080]")] = None,
    workers: Annotated[
        int | None, typer.Option(help="uvicorn worker processes [env STORESYNC_WEB_WORKERS, 1]")
    ] = None,
    ops_host: Annotated[
        str | None,
        typer.Option(help="address of /metrics and detailed /readyz [env STORESYNC_WEB_OPS_HOST, 127.0.0.1]"),
    ] = None,
    ops_port: Annotated[
        int | None, typer.Option(help="their port, 0: off [env STORESYNC_WEB_OPS_PORT, 9464]")
    ] = None,
) -> None:
    """Serve POST /webhooks/shopify, /healthz, /readyz and the dashboard; /metrics and detailed
    /readyz on the operations listener (refuses if the schema is behind)."""
    from storesync.db import database_settings
    from storesync.web.serve import NotServing, serve
    from storesync.web.settings import WebSettings

    settings = load_settings()
    network = load_network(settings)
    try:
        given = {"host": host, "port": port, "workers": workers, "ops_host": ops_host, "ops_port": ops_port}
        overrides = {k: v for k, v in given.items() if v is not None}
        web = WebSettings.load(**overrides)
    except ConfigError as err:
        fail(str(err))
    with database_settings(settings) as settings:
        try:
            serve(settings, network, web)
        except NotServing as err:
            fail(str(err))


@deliveries_app.command("list")
def deliveries_list(
    status: Annotated[
        str | None,
        typer.Option(
            help="accepted, unparseable, ignored, or judged at ingest without a job: echo, stale, unlinked"
        ),
    ] = None,
    store: Annotated[str | None, typer.Option(help="only those this store sent (shop domain)")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many, newest first")] = 50,
) -> None:
    """List recent webhook deliveries (the payload stays in the database: `deliveries show`)."""
    from storesync.db import database_settings
    from storesync.db.pools import connect_direct
    from storesync.web import deliveries_sql as sql
    from storesync.web.ingest import DELIVERY_STATUSES

    if status is not None and status not in DELIVERY_STATUSES:
        fail(f"--status must be one of {', '.join(DELIVERY_STATUSES)}, not {status!r}")
    with database_settings(load_settings()) as settings, connect_direct(settings) as conn:
        rows = conn.execute(sql.LIST_DELIVERIES, {"status": status, "shop": store, "limit": limit}).fetchall()
    table = Table(title=f"{len(rows)} deliveries" + (f" ({status})" if status else ""))
    for col in ("received", "shop", "topic", "status", "webhook id", "event id", "bytes"):
        table.add_column(col)
    for _id, webhook_id, shop, _merchant, topic, event_id, _trig, _api, received_at, st, size in rows:
        table.add_row(
            *cells(
                received_at.isoformat(timespec="seconds"), shop, topic, st, webhook_id, event_id or "-", size
            )
        )
    console.print(table)


@deliveries_app.command("show")
def deliveries_show(webhook_id: str) -> None:
    """Print one delivery's payload as stored: as the store sent it, except order bodies cut to what
    sync needs and ignored topics kept without a body (docs/reliability.md)."""
    from storesync.db import database_settings
    from storesync.db.pools import connect_direct
    from storesync.web import deliveries_sql as sql

    with database_settings(load_settings()) as settings, connect_direct(settings) as conn:
        row = conn.execute(sql.GET_DELIVERY_PAYLOAD, {"webhook_id": webhook_id}).fetchone()
    if row is None:
        fail(f"no delivery with webhook id {webhook_id!r}", code=1)
    sys.stdout.buffer.write(bytes(row[0]) + b"\n")


# --------------------------------------------------------------------------- queue

jobs_app = typer.Typer(help="Jobs in the queue: list, inspect, replay dead letters, cancel.")
app.add_typer(jobs_app, name="jobs")


@app.command("worker")
def worker_cmd(
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="jobs run at once [env STORESYNC_QUEUE_CONCURRENCY, 10]")
    ] = None,
    handlers: Annotated[
        str | None,
        typer.Option(
            help="module:attr of another HandlerRegistry (tests, benchmarks) [default: the sync engine's]"
        ),
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="most jobs per claim [100]")] = None,
    lease: Annotated[
        float | None, typer.Option(help="lease seconds; a dead worker's job reruns after it [30]")
    ] = None,
    poll_interval: Annotated[
        float | None, typer.Option(help="seconds between polls without NOTIFY [1]")
    ] = None,
    drain_timeout: Annotated[
        float | None, typer.Option(help="SIGTERM: seconds in-flight jobs may finish [30]")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="serve this worker's /metrics on 127.0.0.1:PORT")
    ] = None,
    health_file: Annotated[
        Path | None,
        typer.Option(
            help="write each heartbeat here too, for `python -m storesync.healthcheck worker` "
            "[env STORESYNC_QUEUE_HEALTH_FILE]"
        ),
    ] = None,
) -> None:
    """Run jobs until SIGTERM (drains: stops claiming, finishes in-flight jobs, releases the rest)."""
    import psycopg

    from storesync.db import database_settings
    from storesync.db.migrate import SchemaBehindError, ensure_at_head
    from storesync.db.pools import connect_pooled
    from storesync.queue.config import QueueSettings
    from storesync.queue.worker import HandlersLoadError, load_registry, run_worker
    from storesync.retention import job_registry as retention_registry
    from storesync.sync.runtime import worker_registry

    try:
        qs = QueueSettings.load(
            concurrency=concurrency,
            batch_size=batch_size,
            lease_seconds=lease,
            poll_interval=poll_interval,
            drain_timeout=drain_timeout,
            metrics_port=metrics_port,
            health_file=health_file,
        )
        registry = load_registry(handlers) if handlers else None
    except (ConfigError, HandlersLoadError) as err:
        fail(str(err))
    with database_settings(load_settings()) as settings:
        try:
            with connect_pooled(settings, autocommit=False) as conn:
                ensure_at_head(conn)
        except SchemaBehindError as err:
            fail(str(err))
        except psycopg.OperationalError as err:
            fail(f"cannot reach the database: {err}")
        if registry is None:  # the sync engine's handlers (the default)
            try:
                registry = worker_registry(settings).merged(retention_registry())
            except ConfigError as err:
                fail(str(err))
            _sync_worker_start(settings)
        raise typer.Exit(run_worker(settings, qs, registry))


def _sync_worker_start(settings: Settings) -> None:
    """Fail now if the stored tokens cannot be decrypted; resume unfinished sagas (as jobs)."""
    import asyncio

    from storesync.db.pools import connect_pooled
    from storesync.sync.runtime import network_with_credentials, resume_sagas_at_start

    network = load_network(settings)
    with connect_pooled(settings) as conn:
        try:
            network = network_with_credentials(network, conn)
        except ConfigError as err:
            fail(str(err))
    n = asyncio.run(resume_sagas_at_start(settings, network))
    if n:
        err_console.print(f"resuming {n} unfinished sagas", highlight=False)


@jobs_app.command("list")
def jobs_list(
    state: Annotated[str | None, typer.Option(help="queued, running, succeeded, dead or cancelled")] = None,
    merchant: Annotated[
        str | None, typer.Option("--merchant", "--group", help="only this merchant's jobs (its id)")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="only this job kind")] = None,
    lane: Annotated[str | None, typer.Option(help="only this lane: inventory, catalog or backfill")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many, newest first")] = 50,
) -> None:
    """List jobs, newest first, with each one's last error."""
    from storesync.db import database_settings
    from storesync.db.pools import connect_direct
    from storesync.queue.enqueue import Lane
    from storesync.queue.ops import list_jobs

    lanes = {lane.name.lower(): lane for lane in Lane}
    if state is not None and state not in ("queued", "running", "succeeded", "dead", "cancelled"):
        fail(f"--state must be queued, running, succeeded, dead or cancelled, not {state!r}")
    if lane is not None and lane not in lanes:
        fail(f"--lane must be {', '.join(lanes)}, not {lane!r}")
    with database_settings(load_settings()) as settings, connect_direct(settings) as conn:
        lane_no = int(lanes[lane]) if lane else None
        rows = list_jobs(conn, state=state, group=merchant, kind=kind, lane=lane_no, limit=limit)
    table = Table(title=f"{len(rows)} jobs" + (f" ({state})" if state else ""))
    for col in ("id", "kind", "merchant", "lane", "state", "attempt", "run at", "last error"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            *cells(
                r["id"],
                r["kind"],
                r["group_key"],
                Lane(r["lane"]).name.lower(),
                r["state"],
                f"{r['attempt']}/{r['max_attempts']}",
                r["run_at"].isoformat(timespec="seconds"),
                (r["last_error"] or "")[:80],
            )
        )
    console.print(table)


@jobs_app.command("show")
def jobs_show(job_id: int) -> None:
    """Print one job as JSON, error history included."""
    import json

    from storesync.db import database_settings
    from storesync.db.pools import connect_direct
    from storesync.queue.ops import show_job

    with database_settings(load_settings()) as settings, connect_direct(settings) as conn:
        row = show_job(conn, job_id)
    if row is None:
        fail(f"no job {job_id}", code=1)
    print(json.dumps(row, default=str, indent=2))


def _apply_to_jobs(job_ids: list[int], operation, done: str, refused: str) -> None:
    """Run a queue operation on each job id; fail listing the ids it refused."""
    from storesync.db import database_settings
    from storesync.db.pools import connect_direct

    failed = []
    with database_settings(load_settings()) as settings, connect_direct(settings) as conn:
        for job_id in job_ids:
            if operation(conn, job_id):
                console.print(f"job {job_id} {done}")
            else:
                failed.append(job_id)
    if failed:
        fail(f"{refused}: {failed}", code=1)


@jobs_app.command("retry")
def jobs_retry(
    job_ids: Annotated[list[int] | None, typer.Argument(help="dead or cancelled job ids")] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="every dead job (of --kind)")] = False,
    kind: Annotated[str | None, typer.Option(help="with --all-dead: only jobs of this kind")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="replay even a job whose store is still paused")
    ] = False,
) -> None:
    """Replay dead-lettered (or cancelled) jobs: back in the queue with fresh attempts. A job
    that would fail again says why first; one whose store is still paused is skipped (resume
    the store, or --force)."""
    from storesync.db import database_settings
    from storesync.db.pools import connect_direct
    from storesync.queue.ops import dead_job_ids, replay_job, show_job
    from storesync.sync.adapters.postgres import stores_status_sync
    from storesync.sync.services.health import why_replay_fails

    if all_dead == bool(job_ids):
        fail("name the jobs to replay, or pass --all-dead (with --kind to pick one kind)")
    if kind and not all_dead:
        fail("--kind goes with --all-dead")
    replayed, skipped, refused = [], [], []
    with database_settings(load_settings()) as settings, connect_direct(settings) as conn:
        ids = dead_job_ids(conn, kind=kind) if all_dead else list(job_ids or [])
        stores = stores_status_sync(conn)
        for job_id in ids:
            job = show_job(conn, job_id)
            warning = why_replay_fails(job, stores) if job else None
            if warning:
                err_console.print(f"[yellow]job {job_id}:[/] {escape(warning)}", highlight=False)
                if "paused" in warning and not force:
                    skipped.append(job_id)
                    continue
            if replay_job(conn, job_id):
                replayed.append(job_id)
            else:
                refused.append(job_id)
    if all_dead and not ids:
        console.print("no dead jobs" + (f" of kind {kind}" if kind else ""), highlight=False)
    if replayed:
        console.print(f"queued again: {len(replayed)} jobs ({_ids(replayed)})", highlight=False)
    if skipped:
        console.print(
            f"skipped {len(skipped)} whose store is still paused ({_ids(skipped)}): resume it first, or --force",
            highlight=False,
        )
    if refused:
        fail(
            f"not replayed (unknown, not dead/cancelled, or its singleton key is already queued): {refused}",
            code=1,
        )
    raise typer.Exit(1 if skipped else 0)


def _ids(ids: list[int], shown: int = 20) -> str:
    return ", ".join(map(str, ids[:shown])) + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


@jobs_app.command("cancel")
def jobs_cancel(job_ids: Annotated[list[int], typer.Argument(help="queued job ids")]) -> None:
    """Cancel queued jobs (a running job cannot be cancelled; it finishes or fails)."""
    from storesync.queue.ops import cancel_job

    _apply_to_jobs(job_ids, cancel_job, "cancelled", "not cancelled (unknown or not queued)")


# --------------------------------------------------------------------------- sync operations

webhooks_app = typer.Typer(help="The stores' webhook subscriptions.")
app.add_typer(webhooks_app, name="webhooks")


def _run_sync(command, *, background: bool = False):
    """Run `command(runtime)` (a coroutine function) with a command runtime on the database.
    `background` (backfill, reconcile): its Admin API calls leave the bottom of each store's
    bucket to live sync (`commerce.client.CallPolicy`)."""
    import asyncio

    from storesync.commerce.client import CallPolicy, call_policy
    from storesync.commerce.errors import StoreUnauthorized
    from storesync.db import database_settings
    from storesync.sync.runtime import cli_runtime

    settings = load_settings()
    if not settings.config_file.exists():
        fail(f"{settings.config_file} does not exist")

    async def main():
        async with cli_runtime(settings) as rt:
            with call_policy(CallPolicy(background=background)):
                return await command(rt)

    with database_settings(settings) as settings:
        try:
            return asyncio.run(main())
        except ConfigError as err:
            fail(str(err))
        except StoreUnauthorized as err:
            fail(f"{err.shop} refuses the app: {err.pause_reason}", code=1)


@webhooks_app.command("sync")
def webhooks_sync_cmd(
    url: Annotated[
        str | None, typer.Option(help="our public webhook URL [env STORESYNC_PUBLIC_WEBHOOK_URL]")
    ] = None,
    keep_others: Annotated[bool, typer.Option(help="keep subscriptions to other URLs or topics")] = False,
) -> None:
    """Register, idempotently, every subscription each store needs (to URL); remove stale ones."""
    from storesync.sync.services.stores import webhooks_sync

    url = url or load_settings().public_webhook_url
    if not url:
        fail("no webhook URL: pass --url or set STORESYNC_PUBLIC_WEBHOOK_URL")
    failed = False
    for store in _run_sync(lambda rt: webhooks_sync(rt, url, keep_others=keep_others)):
        ch = store.changes
        console.print(
            f"[bold]{escape(store.shop)}[/]: kept {len(ch.kept)}, created {len(ch.created)}, "
            f"deleted {len(ch.deleted)}",
            highlight=False,
        )
        for what in ch.deleted:
            console.print(f"  deleted {what}", highlight=False, markup=False)
        if store.not_offered:
            console.print(
                f"  [yellow]not offered by this store[/]: {escape(', '.join(store.not_offered))}",
                highlight=False,
            )
        for t, why in store.failed.items():
            failed = True
            console.print(f"  [red]not subscribed[/] {escape(t)}: {escape(str(why))}", highlight=False)
    raise typer.Exit(1 if failed else 0)


@app.command("link")
def link_cmd(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="report only; store no links")] = False,
    merchant: Annotated[str | None, typer.Option(help="only this merchant id")] = None,
    details: Annotated[
        bool, typer.Option("--details", help="also every duplicate, conflict and missing SKU")
    ] = False,
) -> None:
    """Match the products and variants each child already sells to the parent's (same SKU, then
    barcode, then handle and options); say what is matched, what the backfill will copy, what
    stays the child's own and what needs a person; store the links (unless --dry-run)."""
    from storesync.sync.services.stores import link

    problems = 0
    for _merchant, report in _run_sync(lambda rt: link(rt, dry_run=dry_run, merchant=merchant)):
        for line in report.summary():
            console.print(line, highlight=False, markup=False)
        if details:
            for line in report.lines()[1:]:
                console.print(line, highlight=False, markup=False)
        problems += len(report.duplicates) + len(report.missing_sku) + len(report.conflicts)
    console.print("dry run: nothing stored" if dry_run else "links stored", highlight=False)
    if problems and not details:
        console.print("each problem: storesync link --dry-run --details", highlight=False)
    raise typer.Exit(1 if problems else 0)


@app.command("backfill")
def backfill_cmd(
    merchant: Annotated[str | None, typer.Option(help="only this merchant id")] = None,
    child: Annotated[str | None, typer.Option(help="only this child store")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=32, help="products copied at once per child")] = 4,
) -> None:
    """Initial sync: link, then copy every missing parent product (with collections and
    inventory) into the children. Resumable: run it again after a crash."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from storesync.sync.services.backfill import backfill

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    ) as bar:
        task = bar.add_task("linking", total=None)
        result = _run_sync(
            lambda rt: backfill(
                rt,
                merchant=merchant,
                child=child,
                concurrency=concurrency,
                on_total=lambda n: bar.update(task, total=n, description="copying products"),
                progress=lambda n: bar.advance(task, n),
            ),
            background=True,
        )
    for report in result.reports:
        console.print(report.summary()[0], highlight=False, markup=False)
    for what in result.collections_created:
        console.print(f"created collection {what}", highlight=False, markup=False)
    console.print(
        f"{len(result.completed)} products copied, {len(result.compensated)} rolled back, "
        f"{len(result.failed)} to retry (run backfill again)",
        highlight=False,
    )
    for saga_id, why in [*result.compensated, *result.failed]:
        console.print(f"  [red]{escape(saga_id)}[/]: {escape(str(why))}", highlight=False)
    if result.conflicts:
        console.print(
            f"{len(result.conflicts)} not copied: a child's own product has the handle "
            "(see storesync status; on_handle_conflict in docs/sync.md)",
            highlight=False,
        )
    for saga_id, why in result.conflicts:
        console.print(f"  [yellow]{escape(saga_id)}[/]: {escape(str(why))}", highlight=False)
    for shop, why in result.paused.items():
        console.print(f"  [yellow]paused[/] {escape(shop)}: {escape(str(why))}", highlight=False)
    raise typer.Exit(0 if result.ok else 1)


@app.command("reconcile")
def reconcile_cmd(
    merchant: Annotated[str | None, typer.Option(help="only this merchant id")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="report the drift; change nothing in any store")
    ] = False,
) -> None:
    """Compare what each child sold (its orders since the last reconciliation) with the ledger and
    apply what it lacks, then compare parent and children (synced fields, collections, inventory
    per linked item) and repair drift (with --dry-run: only report the drift; no orders are
    applied). Needs a running `storesync worker` (the sale jobs run there). Exit 1 when
    something differs that was not repaired."""
    from storesync.sync.services.reconcile import reconcile

    async def run(rt):
        what = "comparing catalog and levels (dry run)" if dry_run else "orders, then catalog and levels"
        with err_console.status(f"reconciling ({what})"):
            cause = "reconcile:cli:dry-run" if dry_run else "reconcile:cli"
            return await reconcile(rt, merchant=merchant, cause=cause, dry_run=dry_run)

    left = 0
    for result in _run_sync(run, background=True):
        for line in result.lines():
            console.print(line, highlight=False, markup=False)
        left += len(result.drift) if dry_run else len(result.left)
    if dry_run:
        console.print("dry run: nothing changed", highlight=False)
    raise typer.Exit(1 if left else 0)


@app.command("audit")
def audit_cmd(
    store: Annotated[str | None, typer.Option(help="only writes to this store (shop domain)")] = None,
    object_id: Annotated[
        str | None, typer.Option("--object", help="only this object (e.g. a product gid)")
    ] = None,
    cause: Annotated[
        str | None, typer.Option(help="only this cause: delivery:<id>, job:<id>, reconcile:...")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="at most this many, newest first")] = 50,
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON object per line, before/after whole")
    ] = False,
) -> None:
    """The audit trail: every write the engine made (store, object, before, after, cause, time)."""
    import asyncio
    import json

    from storesync.db import database_settings
    from storesync.db.pools import async_connect_direct
    from storesync.sync.adapters.postgres import PgAudit

    async def query(settings: Settings):
        async with await async_connect_direct(settings) as conn:
            return await PgAudit(conn).query(shop=store, object_id=object_id, cause=cause, limit=limit)

    with database_settings(load_settings()) as settings:
        records = asyncio.run(query(settings))
    if as_json:
        for r in records:
            sys.stdout.write(
                json.dumps(
                    {
                        "at": r.at.isoformat(),
                        "shop": r.shop,
                        "object_type": r.object_type,
                        "object_id": r.object_id,
                        "action": r.action,
                        "before": r.before,
                        "after": r.after,
                        "cause": r.cause,
                        "detail": r.detail,
                    },
                    default=str,
                )
                + "\n"
            )
        return
    table = Table(title=f"{len(records)} audit entries, newest first")
    for col in ("at", "store", "object", "action", "before -> after", "cause"):
        table.add_column(col, overflow="fold")
    for r in records:
        change = f"{_brief(r.before)} -> {_brief(r.after)}"
        table.add_row(
            *cells(
                r.at.isoformat(timespec="seconds"),
                r.shop,
                f"{r.object_type} {r.object_id}",
                r.action,
                change,
                r.cause,
            )
        )
    console.print(table)


def _brief(value, width: int = 60) -> str:
    """A JSON value on one short line (the whole value: `storesync audit --json`)."""
    import json

    text = "-" if value is None else json.dumps(value, default=str, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


@app.command("prune")
def prune_cmd(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="count what is past its retention; delete nothing")
    ] = False,
) -> None:
    """Delete what is past its retention (deliveries, jobs, audit, finished sagas, ledger, write
    records: STORESYNC_RETENTION_*), in small batches; the worker's `sync.prune` job does the
    same every hour."""
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from storesync.db import database_settings
    from storesync.db.pools import async_connect_direct
    from storesync.queue.config import QueueSettings
    from storesync.retention import RetentionSettings, prune

    try:
        retention, queue = RetentionSettings.load(), QueueSettings.load()
    except ConfigError as err:
        fail(str(err))

    async def run(settings: Settings, bar: Progress | None):
        tasks: dict[str, Any] = {}

        def counted(report) -> None:
            if bar is not None:
                for t in report:
                    tasks[t.table] = bar.add_task(t.table, total=t.old_rows or None, visible=bool(t.old_rows))

        def progress(table: str, deleted: int) -> None:
            if bar is not None:
                bar.update(tasks[table], completed=deleted)

        async with await async_connect_direct(settings) as conn:
            return await prune(
                conn, settings=retention, queue=queue, dry_run=dry_run, on_counted=counted, progress=progress
            )

    with database_settings(load_settings()) as settings:
        if dry_run:
            report = asyncio.run(run(settings, None))
        else:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err_console,
            ) as bar:
                report = asyncio.run(run(settings, bar))
    table = Table(title="retention" + (" (dry run: nothing deleted)" if dry_run else ""))
    for col in ("table", "kept for", "past it", "deleted"):
        table.add_column(col)
    for t in report:
        table.add_row(*cells(t.table, t.kept_for, t.old_rows, "-" if dry_run else t.deleted))
    console.print(table)


# --------------------------------------------------------------------------- status and demo


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return (
        f"{s}s"
        if s < 120
        else f"{s // 60}m"
        if s < 7200
        else f"{s // 3600}h"
        if s < 172800
        else f"{s // 86400}d"
    )


def render_status(settings: Settings) -> tuple[list[Any], int]:
    """What the system holds now, store by store (the dashboard's overview, as text): each
    store's sync state and how far behind it is, its linked products (and copies whose variants
    wait for their ids: docs/sync.md), its last write and last reconcile; then what needs a
    human, with the command that does the next step. (renderables, exit code)."""
    import asyncio

    from storesync.db.migrate import current_version, head_version
    from storesync.db.pools import async_connect_direct, connect_direct
    from storesync.sync.adapters.postgres import (
        attention_by_shop,
        inactive_levels,
        links_by_child,
        open_attention,
    )
    from storesync.sync.services.health import network_health
    from storesync.sync.settings import SyncSettings

    with connect_direct(settings) as conn:
        version, head = current_version(conn), head_version()
        if version < head:
            what = (
                "The database has no storesync schema yet"
                if version == 0
                else f"The database schema is at version {version}; this storesync needs {head}"
            )
            return [Text(f"{what}: run `storesync migrate` (then `storesync network apply`).")], 1
        linked = links_by_child(conn)
        not_written = inactive_levels(conn)
        attention = attention_by_shop(conn)
        attention_items = open_attention(conn, limit=20)
    sync = SyncSettings.load()

    async def read():
        async with await async_connect_direct(settings) as conn:
            return await network_health(
                conn, behind_after_s=sync.behind_after_s, failing_within_s=sync.failing_within_s
            )

    health = asyncio.run(read())
    table = Table(
        title=f"storesync: schema {version} (head), {len(health.stores)} stores, {health.live_workers} workers"
    )
    for col in (
        "merchant",
        "store",
        "role",
        "state",
        "behind",
        "work",
        "products linked",
        "last write",
        "last reconcile",
    ):
        table.add_column(col, overflow="fold")
    for h in health.stores:
        f = h.facts
        products, pending = linked.get(f.shop, (0, 0))
        links = (
            "-"
            if f.role == "parent"
            else f"{products}" + (f" ({pending} copies not linked yet)" if pending else "")
        )
        state = str(h.state) + (f" ({h.why})" if h.why else "")
        work = (
            ", ".join(
                part
                for part in (
                    f"{f.work.active} pending" if f.work.active else "",
                    f"{f.work.parked} parked" if f.work.parked else "",
                    f"{f.work.dead} dead" if f.work.dead else "",
                )
                if part
            )
            or "-"
        )
        written = _age((health.at - f.last_write_at).total_seconds()) + " ago" if f.last_write_at else "never"
        run = f.reconcile
        reconciled = f"{_age((health.at - run.at).total_seconds())} ago: {run.describe()}" if run else "-"
        table.add_row(
            *cells(
                f.merchant_id,
                f.shop,
                f.role,
                state,
                _age(h.lag_s) if h.lag_s else "-",
                work,
                links,
                written,
                reconciled,
            )
        )
    out: list[Any] = [table]
    for shop, levels in not_written.items():  # levels storesync does not write, and why
        out.append(Text(f"{shop} not synced: {'; '.join(levels)}"))
    for shop, kinds in attention.items():  # what the catalog rules left for the merchant
        notes = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in sorted(kinds.items()))
        out.append(Text(f"{shop} needs attention: {notes}"))
    if not health.stores:
        out.append(Text("No stores yet: describe them in storesync.toml, then `storesync network apply`."))
    for a in health.attention:
        line = Text(
            ("! " if a.severity == "error" else "- ") + a.title,
            style="red" if a.severity == "error" else "yellow",
        )
        out.append(line)
        out.append(Text(f"  {a.next_step}" + (f": {a.command}" if a.command else "")))
    if health.stores and not health.attention:
        out.append(Text("every store in step" if health.all_in_step else "nothing needs a human"))
    if attention_items:
        out.append(attention_table(attention_items))
    return out, 0


def attention_table(items: list[Any]) -> Table:
    """What needs the merchant's attention (handle conflicts, products unlinked, media that kept
    failing, copy steps kept after a failure), most recent first."""
    table = Table(title="needs attention (most recent first)")
    for col in ("shop", "what", "about", "detail", "last seen", "times"):
        table.add_column(col)
    for a in items:
        table.add_row(
            *cells(
                a.shop, a.kind.replace("_", " "), a.subject, a.detail, f"{a.last_at:%Y-%m-%d %H:%M}", a.times
            )
        )
    return table


@app.command("status")
def status_cmd() -> None:
    """Every store's sync state (in step, behind, paused, failing), how far behind, its work and
    links, and what needs a human with the next step; on a fresh database, that `storesync
    migrate` comes first."""
    import psycopg

    from storesync.db import database_settings

    with database_settings(load_settings()) as settings:
        try:
            shown, code = render_status(settings)
        except psycopg.OperationalError as err:
            fail(f"cannot reach the database: {err}", code=1)
    for part in shown:
        console.print(part, highlight=False)
    raise typer.Exit(code)


@app.command("demo")
def demo_cmd(
    token_time_scale: Annotated[
        float | None,
        typer.Option(
            min=1e-7,
            help="the emulator's token lifetimes factor (default 0.001: 24 h tokens last 86 s; "
            "5e-5: 4 s, so the story crosses many refreshes)",
        ),
    ] = None,
    keep: Annotated[
        bool,
        typer.Option(
            "--keep", help="leave the system running afterwards, with the dashboard's URL and a sign-in token"
        ),
    ] = False,
) -> None:
    """Play the storesync story end to end on the embedded Postgres (or DATABASE_URL). The stores
    connect by the client credentials grant of one app, as a new merchant's do. With --keep the
    system stays up (Ctrl-C stops it)."""
    from storesync.demo import run_demo

    sys.exit(run_demo(load_settings(), console, token_time_scale=token_time_scale, keep=keep))


if __name__ == "__main__":
    app()
