"""`storesync emulator`: serve the commerce emulator (registered in storesync/cli.py).

Only the command's signature lives at module level (typer needs it when the CLI starts); the
emulator itself is imported when the command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

FAULT_HELP = (
    "a fault as SECTION.KEY=VALUE (repeatable), e.g. graphql.error_5xx_p=0.1, graphql.timeout_p=0.05, "
    "graphql.latency_s=0.02, graphql.http_429_p=0.1, graphql.fail_nth.productSet=3, "
    "webhooks.duplicate_p=0.2, webhooks.reorder_p=0.2, webhooks.delay_max_s=1, webhooks.drop_p=0.05"
)


def emulator_cmd(
    port: Annotated[int, typer.Option(help="TCP port (0: any free port, printed at start)")] = 8787,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    store: Annotated[
        list[str] | None, typer.Option("--store", help="a shop domain to serve (repeatable)")
    ] = None,
    from_config: Annotated[
        bool,
        typer.Option(
            "--from-config",
            help="also serve storesync.toml's stores, with their tokens and secrets (never read otherwise)",
        ),
    ] = False,
    control_token: Annotated[
        str | None,
        typer.Option(
            envvar="STORESYNC_EMULATOR_CONTROL_TOKEN",
            help="bearer token the control API (/_emulator/...) requires; mandatory off loopback",
        ),
    ] = None,
    seed_products: Annotated[int, typer.Option(min=0, help="generated products per store")] = 0,
    seed_only: Annotated[
        list[str] | None,
        typer.Option("--seed-only", help="give only this store the generated products (repeatable)"),
    ] = None,
    plan: Annotated[
        str, typer.Option(help="rate-limit plan of every store: standard, advanced or plus")
    ] = "standard",
    time_scale: Annotated[
        float, typer.Option(help="webhook retry timing factor (0.001: 4 h of retries in 14 s)")
    ] = 1.0,
    token_time_scale: Annotated[
        float | None,
        typer.Option(
            help="issued tokens' lifetime factor (default: --time-scale; 5e-5: 24 h tokens last 4 s)"
        ),
    ] = None,
    throttle_429: Annotated[
        bool,
        typer.Option(
            "--throttle-429",
            help="answer throttled calls with HTTP 429 + Retry-After instead of Shopify's 200 THROTTLED body",
        ),
    ] = False,
    no_idempotency_required: Annotated[
        bool,
        typer.Option(
            "--no-idempotency-required", help="accept inventory mutations without @idempotent (pre-2026-04)"
        ),
    ] = False,
    fault: Annotated[list[str] | None, typer.Option("--fault", help=FAULT_HELP)] = None,
    faults_file: Annotated[
        Path | None, typer.Option(help="JSON faults config (as PUT /_emulator/faults)")
    ] = None,
    print_schema: Annotated[
        bool, typer.Option("--print-schema", help="print the served SDL and exit")
    ] = False,
) -> None:
    """Serve a multi-store fake of Shopify's Admin GraphQL API and its webhooks."""
    from storesync.console import fail, load_network, load_settings

    if print_schema:
        from storesync.emulator.resolvers import load_sdl

        sys.stdout.write(load_sdl())
        return
    import uvicorn

    from storesync.emulator.app import DEFAULT_API_VERSION, EmulatorApp, StoreSpec
    from storesync.emulator.faults import FaultFlagError, load_faults_json, parse_fault_flags
    from storesync.emulator.state import PLANS

    if plan not in PLANS:
        fail(f"--plan must be one of {', '.join(PLANS)}, not {plan!r}")
    if time_scale <= 0:
        fail("--time-scale must be > 0")
    if token_time_scale is not None and token_time_scale <= 0:
        fail("--token-time-scale must be > 0")
    try:
        base = load_faults_json(faults_file.read_text(encoding="utf-8")) if faults_file else None
        faults = parse_fault_flags(fault or [], base)
    except (FaultFlagError, OSError) as err:
        fail(str(err))
    from storesync.config import is_loopback

    if not is_loopback(host) and not control_token:
        fail(
            f"refusing to serve on {host} without a control token: the control API hands out every "
            "store's token and secret (pass --control-token or STORESYNC_EMULATOR_CONTROL_TOKEN)"
        )
    if control_token is not None and len(control_token) < 16:
        fail("--control-token must be at least 16 characters (e.g. `openssl rand -hex 32`)")
    specs: dict[str, StoreSpec] = {}
    if from_config:
        network = load_network(load_settings())
        for m in network.merchants:
            for s in m.stores:
                app_cfg = network.app_of(s)
                token = s.static_token
                specs[s.shop] = StoreSpec(
                    s.shop,
                    token.get_secret_value() if token else None,
                    s.webhook_secrets[0].get_secret_value(),
                    plan,
                    client_id=app_cfg.client_id if app_cfg else None,
                )
    from storesync.config import SHOP_DOMAIN_RE

    for shop in seed_only or []:
        if shop not in specs and shop not in (store or []):
            fail(f"--seed-only {shop!r} is not one of the stores served")
    for shop in store or []:
        if not SHOP_DOMAIN_RE.match(shop):
            fail(f"--store {shop!r} is not a shop domain like 'name.myshopify.com'")
        specs.setdefault(shop, StoreSpec(shop, plan=plan))
    if not specs:
        fail("no stores: pass --store name.myshopify.com (repeatable), or --from-config for storesync.toml's")
    app = EmulatorApp(
        specs.values(),
        time_scale=time_scale,
        seed_products=seed_products,
        seed_only=seed_only,
        require_idempotency=not no_idempotency_required,
        throttle_http_429=throttle_429,
        webhook_faults=faults.webhooks,
        graphql_faults=faults.graphql,
        token_time_scale=token_time_scale,
        control_token=control_token,
    )
    import socket

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        fail(f"cannot listen on {host}:{port}: {err}")
    # Listening before printing: a client that reads the URL may connect at once (the backlog
    # holds it until uvicorn accepts).
    sock.listen(2048)
    bound = sock.getsockname()[1]
    base_url = f"http://{host}:{bound}"
    for st in app.emulator.stores.values():
        print(
            f"{st.shop}  {base_url}/stores/{st.shop}/admin/api/{DEFAULT_API_VERSION}/graphql.json  token={st.token}"
        )
    print(f"control API: {base_url}/_emulator/stores", flush=True)
    from storesync.logs import configure_logging

    configure_logging("warning")  # one log format in this process too, on stderr
    uvicorn.Server(uvicorn.Config(app, log_level="warning", log_config=None, access_log=False)).run(
        sockets=[sock]
    )
