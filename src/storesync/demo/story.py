"""`storesync demo`: the story a new user watches, on the whole system running locally.

One parent and three child stores (the emulator), the web tier and two workers, each its own
OS process (`harness.running_system`). The story: link the children's existing products and
copy the rest (progress bar), a parent edit fans out, child sales flow to the parent and on to
the siblings, a burst of duplicated and reordered webhooks changes nothing it should not. It
ends with a table comparing every store with the parent and exits 0 only if all of them agree.

Every check reads the stores themselves (emulator snapshots), never the engine's own records.
A step that does not converge in time fails the demo with the reason (dead jobs' errors, the
stores that differ): the demo never claims agreement it did not see.
"""

from __future__ import annotations

import logging
import secrets
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from storesync.config import Settings
from storesync.demo.seeding import DEMO_NAMESPACE
from storesync.terminal import cells, escape

CHILDREN = 3
PRODUCTS = 50
WORKERS = 2
CHILD_OVERLAP = 30  # products the children already sell (same SKUs): linking finds them
# Shopify Plus limits (20,000-point bucket, 1,000 points/s): a network of storefronts is a Plus
# merchant's setup, and the story should not wait on the standard plan's 100 points/s.
PLAN = "plus"
DEMO_DATABASE = "storesync_demo"  # on the embedded server, dropped and created at each run
BACKFILL_TIMEOUT_S = 90


class DemoFailed(Exception):
    """A step of the story did not happen; the message says which and why."""


class Story:
    def __init__(self, system, console: Console, t0: float) -> None:
        self.system = system
        self.console = console
        self.t0 = t0

    # ------------------------------------------------------------------ helpers

    def say(self, text: str) -> None:
        # `text` may hold store data (titles, SKUs): never read as markup.
        self.console.print(f"[dim]{time.monotonic() - self.t0:6.1f}s[/] {escape(text)}", highlight=False)

    def require_command(self, *args: str, timeout: float = 60.0) -> str:
        """Run `storesync ARGS`; its output, or DemoFailed if it is missing or fails."""
        done = self.system.cli(*args, timeout=timeout, env={"COLUMNS": str(max(80, self.console.width - 3))})
        out = (done.stdout or "") + (done.stderr or "")
        if done.returncode != 0:
            if "No such command" in out:
                raise DemoFailed(
                    f"`storesync {' '.join(args)}` does not exist yet: the sync engine is not wired"
                )
            raise DemoFailed(f"`storesync {' '.join(args)}` exited {done.returncode}:\n{_tail(out)}")
        return done.stdout or ""

    def fail_on_dead_jobs(self) -> None:
        dead = self.system.dead_jobs(limit=5)
        if dead:
            lines = "\n".join(
                f"  job {d['id']} {d['kind']}: {(d.get('last_error') or '')[:200]}" for d in dead
            )
            raise DemoFailed(f"jobs failed for good (dead letters):\n{lines}")

    def converge(self, what: str, predicate: Callable[[], Any], timeout: float) -> float:
        """Wait for `predicate`; seconds it took. Dead jobs or a timeout fail the demo."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            if predicate():
                return time.monotonic() - started
            self.system.processes.check_alive()
            self.fail_on_dead_jobs()
            if time.monotonic() > deadline:
                problems = self.system.compare().problems()
                detail = ("\n  " + "\n  ".join(problems[:12])) if problems else ""
                raise DemoFailed(f"{what}: not reached within {timeout:g}s{detail}")
            time.sleep(0.1)

    # ------------------------------------------------------------------ steps

    def show_system(self) -> None:
        s = self.system
        table = Table(title="the system (separate OS processes)", title_justify="left")
        for col in ("process", "pid", "where"):
            table.add_column(col)
        where = {
            "emulator": f"{s.emulator_url} (1 parent + {len(s.children)} children)",
            "web": s.webhook_url,
        }
        for p in s.processes.processes:
            table.add_row(*cells(p.name, p.pid, where.get(p.name, "storesync worker")))
        self.console.print(table)
        parent = s.snapshot(s.parent)
        variants = sum(len(p["variants"]) for p in parent["products"])
        self.say(
            f"parent catalog: {len(parent['products'])} products, {variants} variants, "
            f"{len(parent['collections'])} collections, stock at {len(parent['locations'])} locations; "
            f"each child already sells {CHILD_OVERLAP} of those products (same SKUs, stale stock)"
        )
        subs = s.emulator.subscriptions()
        self.say(
            f"`storesync webhooks sync` subscribed every store to {len(subs) // len(s.shops)} topics "
            f"({len(subs)} subscriptions to {s.webhook_url})"
        )
        self.console.print(
            "processes: " + " ".join(f"{p.name}={p.pid}" for p in s.processes.processes),
            highlight=False,
            soft_wrap=True,
        )

    def link(self) -> None:
        self.console.rule("1. link the children's existing products")
        out = self.require_command("link", "--dry-run")
        for line in _summary_lines(out):
            self.console.print(f"   {line}", highlight=False, markup=False)
        self.require_command("link")
        self.say("links stored")

    def initial_sync(self) -> None:
        self.console.rule("2. initial sync: copy what the children miss, then reconcile stock")
        s = self.system
        # 4 products copied at once per child; its pool must hold a connection for each.
        backfill = s.start_cli(
            "backfill", "backfill", "--concurrency", "4", env={"STORESYNC_POOL_MAX_SIZE": "20"}
        )
        parent = s.snapshot(s.parent)
        handles = {p["handle"] for p in parent["products"]}
        total = len(handles) * len(s.children)
        started = time.monotonic()
        with Progress(
            TextColumn("   products in children"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        ) as progress:
            task = progress.add_task("copy", total=total)
            deadline = started + BACKFILL_TIMEOUT_S
            while True:
                have = sum(
                    len(handles & {p["handle"] for p in s.snapshot(c)["products"]}) for c in s.children
                )
                progress.update(task, completed=have)
                if have >= total and not backfill.alive():
                    break
                if not backfill.alive() and backfill.popen.returncode != 0:
                    raise DemoFailed(
                        f"`storesync backfill` exited {backfill.popen.returncode}:\n"
                        f"{_tail(backfill.log_tail())}"
                    )
                s.processes.check_alive()
                self.fail_on_dead_jobs()
                if time.monotonic() > deadline:
                    raise DemoFailed(
                        f"initial sync: {have}/{total} products in the children after {BACKFILL_TIMEOUT_S}s"
                    )
                time.sleep(0.2)
        if backfill.popen.returncode != 0:
            raise DemoFailed(
                f"`storesync backfill` exited {backfill.popen.returncode}:\n{_tail(backfill.log_tail())}"
            )
        self.say(f"{total} products present in the children after {time.monotonic() - started:.1f}s")
        # reconcile reads every child's orders and waits for the sale jobs it starts: more than a minute
        # on a loaded machine
        out = self.require_command("reconcile", timeout=150)
        # its headlines: the orders compared with the ledger, then the levels and catalog checked
        headlines = ("orders compared with the ledger", "levels checked")
        for line in [ln for ln in _summary_lines(out, limit=10**6) if any(h in ln for h in headlines)]:
            self.console.print(
                f"   reconcile: {line.strip()} (each repair is one line of its report)",
                highlight=False,
                markup=False,
            )
        self.converge(
            "every child equal to the parent after the initial sync", lambda: s.compare().agree, timeout=30
        )
        self.say("every child agrees with the parent (catalog and stock)")

    def parent_edit(self) -> None:
        self.console.rule("3. a parent edit fans out")
        s = self.system
        handle = "demo-product-1"
        s.edit_parent_product(handle, title="Alpine Jacket 1 (2027 edition)", tags="demo, winter, new")
        want = _product_fields(s.product_by_handle(s.parent, handle))

        def children_follow() -> bool:
            for c in s.children:
                try:
                    if _product_fields(s.product_by_handle(c, handle)) != want:
                        return False
                except KeyError:
                    return False
            return True

        took = self.converge("the parent's edit in every child", children_follow, timeout=20)
        self.say(
            f"parent renamed {handle} to {want['title']!r}: all {len(s.children)} children updated "
            f"in {took:.2f}s"
        )

    def sales(self) -> None:
        self.console.rule("4. child sales flow to the parent and out to the siblings")
        s = self.system
        sales = [
            (s.children[0], "DEMO-003-S", 2),
            (s.children[1], "DEMO-002-ONESIZE", 1),
            (s.children[-1], "DEMO-003-S", 1),
        ]
        before = {sku: s.level(s.parent, sku) for _c, sku, _q in sales}
        for child, sku, qty in sales:
            order = s.place_order(child, sku=sku, quantity=qty)
            self.say(f"{child} sells {qty} x {sku} (order {order['name']})")
        want = dict(before)
        for _c, sku, qty in sales:
            want[sku] -= qty

        def applied() -> bool:
            parent = s.snapshot(s.parent)
            if any(s.level(s.parent, sku, snapshot=parent) != n for sku, n in want.items()):
                return False
            return all(s.level(c, sku) == n for c in s.children for sku, n in want.items())

        took = self.converge("the sales in the parent and every child", applied, timeout=20)
        for sku, n in want.items():
            self.say(f"{sku}: parent {before[sku]} -> {n}, every child shows {n} ({took:.2f}s)")

    def webhook_storm(self) -> None:
        self.console.rule("5. a burst of duplicated and reordered webhooks")
        s = self.system
        s.set_faults(webhooks={"duplicate_p": 1.0, "reorder_p": 0.5, "delay_max_s": 0.3, "seed": 7})
        first = len(s.deliveries())
        sales = [
            (s.children[0], "DEMO-004-S", 1),
            (s.children[1], "DEMO-004-S", 1),
            (s.children[2], "DEMO-006-M", 2),
            (s.children[0], "DEMO-006-M", 1),
        ]
        before = {sku: s.level(s.parent, sku) for _c, sku, _q in sales}
        for child, sku, qty in sales:
            s.place_order(child, sku=sku, quantity=qty)
        s.edit_parent_product("demo-product-6", vendor="Northwind Outfitters")
        want = dict(before)
        for _c, sku, qty in sales:
            want[sku] -= qty
        s.drain_webhooks(timeout=10)
        burst = s.deliveries()[first:]
        dups = sum(1 for d in burst if d.get("duplicate"))
        reordered = sum(1 for d in burst if d.get("reordered"))
        self.say(f"{len(burst)} deliveries: {dups} duplicates, {reordered} held back and sent out of order")
        s.set_faults()

        def exactly_once() -> bool:
            return (
                all(s.level(s.parent, sku) == n for sku, n in want.items())
                and s.compare().agree
                and s.jobs_pending() == 0
            )

        took = self.converge(
            "every sale applied exactly once despite the duplicates", exactly_once, timeout=25
        )
        # Still right once the queue is idle: a late duplicate changed nothing.
        wrong = {sku: s.level(s.parent, sku) for sku, n in want.items() if s.level(s.parent, sku) != n}
        if wrong:
            raise DemoFailed(f"a duplicated sale was applied twice: parent levels {wrong}, expected {want}")
        for sku, n in want.items():
            self.say(
                f"{sku}: parent {before[sku]} -> {n}, every child {n}: each sale applied once "
                f"(queue idle {took:.2f}s after the last delivery)"
            )

    def final_table(self) -> bool:
        self.console.rule("6. every store compared")
        s = self.system
        s.drain_webhooks(timeout=10)
        with_timeout = time.monotonic() + 15
        while s.jobs_pending() and time.monotonic() < with_timeout:
            time.sleep(0.1)
        comparison = s.compare()
        parent_row = comparison.rows[0]
        levels = len(s.snapshot(s.parent)["inventory_levels"])
        products = parent_row.products
        headers = ("store", "agrees", "catalog hash", "media", "channels", DEMO_NAMESPACE, "units", "levels")
        rows = [
            cells(
                r.shop,
                Text("yes", style="green") if r.agrees else Text("NO", style="bold red"),
                r.catalog_hash,
                f"{r.media_equal}/{products}",
                f"{r.channels_equal}/{products}",
                f"{r.metafields_equal}/{products}",
                r.units,
                f"{levels - len(r.inventory_mismatches)}/{levels}",
            )
            for r in comparison.rows
        ]
        table = Table(
            title="stores compared with the parent (the first row)",
            caption=f"catalog hash: of the synced fields; media, channels, {DEMO_NAMESPACE}: products whose "
            f"media, sales channels and {DEMO_NAMESPACE} metafields are the parent's; levels: items x "
            "locations at the parent's level",
            caption_justify="left",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            padding=0,  # the box puts a space between columns
            show_edge=False,
        )
        # Every value whole in an 80-column terminal.
        for i, header in enumerate(headers):
            table.add_column(header, min_width=max(len(row[i]) for row in rows))
        for row in rows:
            table.add_row(*row)
        self.console.print(table)
        if not comparison.agree:
            self.console.print(
                "[bold red]stores differ:[/]\n  " + escape("\n  ".join(comparison.problems())),
                highlight=False,
            )
            return False
        self.console.print(
            f"[bold green]all {len(comparison.rows)} stores agree[/] "
            f"(catalog hash {parent_row.catalog_hash}, {parent_row.units} units)",
            highlight=False,
        )
        return True


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _summary_lines(out: str, limit: int = 8) -> list[str]:
    """The command's report lines (progress bars and JSON log lines left out)."""
    lines = [
        ln.rstrip()
        for ln in out.splitlines()
        if ln.strip() and not ln.lstrip().startswith(("{", "reconciling"))
    ]
    return lines[:limit] + ([f"... ({len(lines) - limit} more lines)"] if len(lines) > limit else [])


def _product_fields(product: dict) -> dict:
    return {k: product.get(k) for k in ("title", "tags", "vendor", "body_html", "status")}


def _fresh_database(dsn: str) -> None:
    """The embedded server's demo database, dropped and created again: each run starts clean."""
    import psycopg

    from storesync.db.migrate import migrate

    maintenance = psycopg.conninfo.make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(maintenance, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DEMO_DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{DEMO_DATABASE}"')
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)


def _require_empty(dsn: str) -> None:
    """DATABASE_URL is the user's: the demo never wipes it, and refuses one that holds stores or
    jobs (an earlier run's links would point at stores that no longer exist)."""
    import psycopg

    from storesync.db.migrate import migrate
    from storesync.db.network_sql import list_stores
    from storesync.queue.ops import count_jobs

    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        used = len(list_stores(conn)) + count_jobs(conn)
    if used:
        raise DemoFailed(
            "DATABASE_URL already holds stores or jobs (an earlier run?); the demo needs an empty "
            "database there, or unset DATABASE_URL to use a fresh embedded one"
        )


def keep_running(system, console: Console, dashboard_token: str) -> None:
    """After the story: say how to reach the running system, then wait until Ctrl-C (or SIGTERM)."""
    console.rule("the demo system keeps running (Ctrl-C stops it)")
    console.print(f"dashboard:   {system.web_url}/dashboard/", highlight=False, markup=False)
    console.print(f"sign in with: {dashboard_token}", highlight=False, markup=False)
    console.print(f"metrics:     {system.ops_url}/metrics", highlight=False, markup=False)
    console.print(f"emulator:    {system.emulator_url}/_emulator/stores", highlight=False, markup=False)
    env = " ".join(
        f"{k}={shlex.quote(system.env[k])}"
        for k in ("DATABASE_URL", "STORESYNC_CONFIG_FILE", "STORESYNC_ENCRYPTION_KEY")
    )
    console.print("storesync commands against it, from another terminal:", highlight=False)
    console.print(f"  export {env}", highlight=False, markup=False, soft_wrap=True)
    console.print("  storesync status", highlight=False, markup=False)
    try:
        while True:
            system.processes.check_alive()
            time.sleep(1.0)
    except KeyboardInterrupt:
        console.print("stopping the demo system", highlight=False)


def run_demo(
    settings: Settings, console: Console, *, token_time_scale: float | None = None, keep: bool = False
) -> int:
    """Play the story on the embedded Postgres (or DATABASE_URL); 0 only if every store agrees.
    The stores connect by client credentials; `token_time_scale` shortens the tokens' lives.
    `keep`: leave the system running afterwards (until Ctrl-C), with the dashboard enabled."""
    from storesync.db import database_settings
    from storesync.demo.harness import running_system
    from storesync.demo.processes import SystemStartError

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per control API call is noise here
    t0 = time.monotonic()
    where = "DATABASE_URL" if settings.pooled_dsn else f"embedded Postgres in {settings.pgdata}"
    console.rule("storesync demo")
    console.print(f"database: {where}", highlight=False)
    status = console.status("starting the emulator, the web tier and two workers...")

    def on_step(step: str) -> None:
        if step in ("ready", "stopping"):
            status.stop()
        else:
            status.update(f"starting the system: {step}...")

    workdir = Path(tempfile.mkdtemp(prefix="storesync-demo-"))  # the processes' logs, kept if the demo fails
    dashboard_token = secrets.token_urlsafe(24)
    agreed = False
    embedded = settings.pooled_dsn is None
    if embedded:
        settings = settings.model_copy(update={"embedded_database": DEMO_DATABASE})
    try:
        with database_settings(settings) as settings:
            assert settings.pooled_dsn
            if embedded:
                _fresh_database(settings.pooled_dsn)
            else:
                _require_empty(settings.pooled_dsn)
            status.start()
            with running_system(
                settings.pooled_dsn,
                children=CHILDREN,
                products=PRODUCTS,
                workers=WORKERS,
                child_overlap=CHILD_OVERLAP,
                plan=PLAN,
                on_step=on_step,
                subscribe="cli",
                workdir=workdir,
                token_time_scale=token_time_scale,
                extra_env={
                    # The operator dashboard, on loopback over plain http (a developer's machine).
                    "STORESYNC_DASHBOARD_TOKEN": dashboard_token,
                    "STORESYNC_DASHBOARD_PLAIN_HTTP_LOOPBACK": "true",
                },
                # one namespace of metafields follows the parent, so the final table shows them
                merchant_sync={"metafield_namespaces": [DEMO_NAMESPACE]},
                catalog_extras=True,
            ) as system:
                story = Story(system, console, t0)
                story.say(f"system up in {time.monotonic() - t0:.1f}s; logs in {workdir}/")
                story.show_system()
                story.link()
                story.initial_sync()
                story.parent_edit()
                story.sales()
                story.webhook_storm()
                agreed = story.final_table()
                if keep and agreed:
                    keep_running(system, console, dashboard_token)
    except DemoFailed as err:
        console.print(f"[bold red]demo failed:[/] {escape(str(err))}", highlight=False)
        if any(workdir.iterdir()):
            console.print(
                f"every process the demo started is stopped; their logs are in {workdir}/", highlight=False
            )
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        return 1
    except SystemStartError as err:
        status.stop()
        console.print(
            f"[bold red]demo failed: the system did not start:[/] {escape(str(err))}", highlight=False
        )
        console.print(f"the processes' logs are in {workdir}/", highlight=False)
        return 1
    except KeyboardInterrupt:
        status.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        console.print("[yellow]interrupted: every process the demo started is stopped[/]")
        return 130
    if agreed:
        shutil.rmtree(workdir, ignore_errors=True)
    console.print(
        f"done in {time.monotonic() - t0:.1f}s"
        + ("" if agreed else f"; the stores do NOT agree (logs in {workdir}/)"),
        highlight=False,
    )
    return 0 if agreed else 1


__all__ = ["DemoFailed", "run_demo"]
