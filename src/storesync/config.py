"""Settings from the environment and the network model from `storesync.toml`.

Both fail fast: an invalid value raises `ConfigError` whose message names the key and what is
wrong. Secrets are `SecretStr`, so they never show in reprs, logs or error messages.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from storesync.api_version import ADMIN_API_VERSION, admin_api_url

# A store's myshopify.com domain (what Shopify sends as `shop`; Shopify's own app libraries
# accept exactly this shape).
SHOP_DOMAIN_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-]*\.myshopify\.com$")
GID_RE = re.compile(r"^gid://shopify/[A-Za-z]+/\d+$")


# Runs of one statement on one connection before psycopg prepares it (psycopg's own default).
PREPARE_AFTER_RUNS = 5


class ConfigError(Exception):
    """Configuration that cannot be used; the message says which key and why."""


def is_loopback(host: str) -> bool:
    """Whether `host` (an address, or "localhost") is only reachable from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _format_validation_error(source: str, err: ValidationError) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors(include_url=False, include_input=False):
        path = ""
        for part in e["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        lines.append(f"  {path or '(root)'}: {e['msg']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- environment


class EnvironmentSettings(BaseSettings):
    """Base of every settings class read from the environment (one per part, each with its own
    `env_prefix`): `load()` fails with a ConfigError that names the variable and what is wrong."""

    @classmethod
    def load(cls, **overrides: object) -> Self:
        """Settings from the environment; `overrides` left as None count as not given."""
        given: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
        try:
            return cls(**given)
        except ValidationError as err:
            prefix = cls.model_config.get("env_prefix") or ""
            raise ConfigError(_format_validation_error(f"environment ({prefix}*)", err)) from None


class Settings(EnvironmentSettings):
    """Process settings. `DATABASE_URL` / `DATABASE_DIRECT_URL` keep their conventional names;
    everything else is `STORESYNC_*`."""

    model_config = SettingsConfigDict(env_prefix="STORESYNC_", extra="ignore", frozen=True)

    # Pooled path: web and job work. Must be PgBouncer (transaction mode) safe.
    database_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "STORESYNC_DATABASE_URL")
    )
    # Direct path: LISTEN/NOTIFY, session advisory locks, migrations. Defaults to database_url.
    database_direct_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_DIRECT_URL", "STORESYNC_DATABASE_DIRECT_URL"),
    )
    pgdata: Path = Path(".storesync/pgdata")
    embedded_database: str = "storesync"

    pool_min_size: Annotated[int, Field(ge=0)] = 1
    pool_max_size: Annotated[int, Field(ge=1)] = 10
    # Seconds a caller waits for a pooled connection before giving up (web answers 503).
    pool_timeout: Annotated[float, Field(gt=0)] = 2.0
    # Seconds a statement may run on the pooled path; protects the 5 s webhook budget.
    statement_timeout_ms: Annotated[int, Field(ge=0)] = 4000
    connect_timeout: Annotated[int, Field(ge=1)] = 5
    # Server-side prepared statements on the pooled path (psycopg prepares a statement after its
    # 5th run on a connection: no parsing or planning after that). "auto": on when
    # DATABASE_DIRECT_URL is unset, since the one URL then has to reach Postgres with sessions
    # anyway (LISTEN, advisory locks); off when a separate direct URL says the pooled one may
    # be PgBouncer in transaction mode, which loses them before 1.21. "on" behind PgBouncer
    # >= 1.21 with max_prepared_statements > 0.
    db_prepared_statements: Literal["auto", "on", "off"] = "auto"

    config_file: Path = Path("storesync.toml")
    # Where stores send webhooks (`storesync webhooks sync`), e.g. https://sync.example.com/webhooks/shopify.
    public_webhook_url: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    @model_validator(mode="after")
    def _pool_bounds(self) -> Settings:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError(
                f"STORESYNC_POOL_MIN_SIZE ({self.pool_min_size}) exceeds "
                f"STORESYNC_POOL_MAX_SIZE ({self.pool_max_size})"
            )
        return self

    @property
    def pooled_dsn(self) -> str | None:
        return self.database_url.get_secret_value() if self.database_url else None

    @property
    def pooled_prepare_threshold(self) -> int | None:
        """psycopg's `prepare_threshold` for pooled connections (None: never prepare)."""
        on = self.db_prepared_statements == "on" or (
            self.db_prepared_statements == "auto" and self.database_direct_url is None
        )
        return PREPARE_AFTER_RUNS if on else None

    @property
    def direct_dsn(self) -> str | None:
        if self.database_direct_url:
            return self.database_direct_url.get_secret_value()
        return self.pooled_dsn


# --------------------------------------------------------------------------- network model


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PriceRuleConfig(_Strict):
    """A child's prices: the parent's price plus `markup_percent`, then rounded."""

    markup_percent: Decimal = Decimal(0)
    rounding: Literal["cent", "whole", "ninety_nine"] = "cent"

    @field_validator("markup_percent")
    @classmethod
    def _markup(cls, v: Decimal) -> Decimal:
        if not v.is_finite() or v <= -100:
            raise ValueError("must be a number above -100 (a percentage added to the parent's price)")
        return v


class SyncedField(StrEnum):
    """The product fields a merchant can have follow the parent (`[merchants.sync] fields`)."""

    TITLE = "title"
    DESCRIPTION = "description"
    VENDOR = "vendor"
    PRODUCT_TYPE = "product_type"
    TAGS = "tags"
    OPTIONS = "options"
    VARIANTS = "variants"
    IMAGES = "images"
    STATUS = "status"
    SEO = "seo"
    COLLECTIONS = "collections"


OnParentDelete = Literal["archive", "delete", "leave"]
OnHandleConflict = Literal["report", "copy_with_suffix"]
OnCopyStepFailure = Literal["compensate", "keep_and_report"]
ChildMediaPolicy = Literal["keep", "remove"]

# A metafield namespace as Shopify allows it (3-255 characters of letters, digits, - and _;
# an app's reserved namespace starts with $app).
NAMESPACE_RE = re.compile(r"^(\$app:)?[A-Za-z0-9_-]{2,255}$")


class ChildCatalogRules(_Strict):
    """What storesync may do to a child's catalog, per merchant (`[merchants.sync]`) and, to
    differ for one child, in that child's block (unset keys follow the merchant's)."""

    # A parent product deleted: its copy archived (status ARCHIVED), deleted, or left as it is.
    # A product the child had before it was linked is never deleted (unlinked and reported).
    on_parent_delete: OnParentDelete | None = None
    # A new parent product whose handle a child's own product has: report the conflict and copy
    # nothing, or copy it under `<handle>-<handle_suffix>`.
    on_handle_conflict: OnHandleConflict | None = None
    # Default: the parent store's name (acme-parent.myshopify.com -> acme-parent).
    handle_suffix: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")
    # A copy's later step (publishing) refused for good: undo the copy, or keep it and report.
    on_copy_step_failure: OnCopyStepFailure | None = None
    # Media the child added to a copy itself: kept after the parent's, or removed.
    child_media: ChildMediaPolicy | None = None
    # Sales channels (publication names, e.g. "Online Store", "Point of Sale") copies and the
    # collections storesync creates are published to. Default: the channels the parent's
    # product or collection is on, matched by name.
    channels: list[str] | None = None

    def overrides(self) -> dict[str, Any]:
        """The rules set here (of `ChildCatalogRules`' own keys)."""
        return {k: getattr(self, k) for k in ChildCatalogRules.model_fields if getattr(self, k) is not None}


class SyncPolicyConfig(ChildCatalogRules):
    """Which product fields follow the parent (default: all of them), the metafield namespaces
    that follow it (default: none; every other metafield is the child's), and the catalog rules
    of `ChildCatalogRules` for every child."""

    fields: list[str] | None = None
    metafield_namespaces: list[str] = Field(default_factory=list)

    @field_validator("metafield_namespaces")
    @classmethod
    def _namespaces(cls, v: list[str]) -> list[str]:
        bad = [ns for ns in v if not NAMESPACE_RE.match(ns)]
        if bad:
            raise ValueError(f"not metafield namespaces: {bad}")
        return v

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        known = [f.value for f in SyncedField]
        bad = [f for f in v if f not in known]
        if bad:
            raise ValueError(f"unknown synced fields {bad}; known: {known}")
        if ("options" in v) != ("variants" in v):
            raise ValueError("'options' and 'variants' are synced together (a variant is its option values)")
        return v


class AppConfig(_Strict):
    """An app made in Shopify's Dev Dashboard (its Settings page shows the client ID and secret).
    One app usually serves the whole network; each store says by which grant it gets tokens."""

    client_id: str = Field(min_length=1)
    # Newest first. The first requests tokens; every one verifies webhooks and OAuth callbacks
    # (during a rotation of the client secret both are listed; drop the old one afterwards).
    client_secrets: list[SecretStr] = Field(min_length=1)
    # authorization_code only: where Shopify sends the merchant back after approving the app,
    # our `GET /auth/callback` (it must be one of the app's allowed redirection URLs).
    redirect_uri: str | None = None

    @field_validator("client_secrets")
    @classmethod
    def _secrets(cls, v: list[SecretStr]) -> list[SecretStr]:
        if any(not s.get_secret_value() for s in v):
            raise ValueError("secrets must not be empty strings")
        return v

    @field_validator("redirect_uri")
    @classmethod
    def _redirect(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+/\S*$", v):
            raise ValueError(f"{v!r} must be an http(s) URL (our /auth/callback)")
        return v


class StaticCredentials(_Strict):
    """A legacy custom app's token (`shpat_...`), typed in as it is; never refreshed."""

    kind: Literal["static"]
    access_token: SecretStr

    @field_validator("access_token")
    @classmethod
    def _token(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().strip():
            raise ValueError("must not be empty")
        return v


class ClientCredentialsGrant(_Strict):
    """The client credentials grant: the app (of the merchant's own organization, installed on
    its own store) exchanges its client ID and secret for a 24-hour token, fetched again as it
    expires."""

    kind: Literal["client_credentials"]
    app: str


class AuthorizationCodeGrant(_Strict):
    """The authorization code grant: the merchant installs the app through our install flow
    (`storesync stores connect SHOP`); we keep an expiring offline token and its rotating
    refresh token."""

    kind: Literal["authorization_code"]
    app: str


Credentials = Annotated[
    StaticCredentials | ClientCredentialsGrant | AuthorizationCodeGrant, Field(discriminator="kind")
]
CredentialKind = Literal["static", "client_credentials", "authorization_code"]


class StoreConfig(_Strict):
    """One Shopify store: how to reach its Admin API and how to verify its webhooks."""

    shop: str
    # Default: https://{shop}/admin/api/<ADMIN_API_VERSION>/graphql.json. The OAuth endpoints are
    # found beside it (`{base}/admin/oauth/...`), so an emulator's URL reaches its token endpoint.
    admin_api_url: str = ""
    credentials: Credentials | None = None
    # Legacy form of `credentials = { kind = "static", access_token = ... }`.
    access_token: SecretStr | None = None
    # Newest first. During rotation both old and new verify; after it, drop the old one. With an
    # app's credentials, the app's client secrets (Shopify signs webhooks with them).
    webhook_secrets: list[SecretStr] = Field(default_factory=list)
    # Parent location gid -> this store's location gid (children only).
    location_map: dict[str, str] = Field(default_factory=dict)
    # Children only: how this child's prices derive from the parent's (default: same price).
    price_rule: PriceRuleConfig | None = None
    # Children only: this child's own catalog rules (`ChildCatalogRules`), over the merchant's.
    catalog: ChildCatalogRules | None = None
    # Children only: a stock change made in this child by hand (a delivery, a count). "revert":
    # the child follows the parent, its own moves are set back; "report": the move becomes a
    # delta on the parent and reaches the siblings (a child with a stockroom of its own).
    # docs/sync.md, "Stock changes made in a child".
    stock_changes: Literal["revert", "report"] = "revert"

    @model_validator(mode="before")
    @classmethod
    def _default_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("admin_api_url") and isinstance(data.get("shop"), str):
            data = {**data, "admin_api_url": admin_api_url(data["shop"])}
        return data

    @field_validator("shop")
    @classmethod
    def _shop_domain(cls, v: str) -> str:
        if not SHOP_DOMAIN_RE.match(v):
            raise ValueError(f"{v!r} is not a shop domain like 'name.myshopify.com'")
        return v.lower()

    @field_validator("admin_api_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+/\S*graphql\.json$", v):
            raise ValueError(f"{v!r} must be an http(s) URL ending in graphql.json")
        version = re.search(r"/admin/api/([^/]+)/graphql\.json$", v)
        if version is None:
            raise ValueError(f"{v!r} must end in /admin/api/{ADMIN_API_VERSION}/graphql.json")
        if version.group(1) != ADMIN_API_VERSION:
            raise ValueError(
                f"{v!r} names Admin API version {version.group(1)}; storesync speaks {ADMIN_API_VERSION}"
            )
        return v

    @field_validator("access_token")
    @classmethod
    def _token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("webhook_secrets")
    @classmethod
    def _secrets(cls, v: list[SecretStr]) -> list[SecretStr]:
        if any(not s.get_secret_value() for s in v):
            raise ValueError("secrets must not be empty strings")
        return v

    @field_validator("location_map")
    @classmethod
    def _locations(cls, v: dict[str, str]) -> dict[str, str]:
        for parent_gid, child_gid in v.items():
            for gid in (parent_gid, child_gid):
                if not GID_RE.match(gid):
                    raise ValueError(f"{gid!r} is not a location gid like 'gid://shopify/Location/1'")
        return v

    @model_validator(mode="after")
    def _one_way_in(self) -> StoreConfig:
        if self.credentials is None and self.access_token is None:
            raise ValueError(
                f'{self.shop}: set credentials, e.g. credentials = {{ kind = "client_credentials", '
                'app = "<name under [apps]>" }'
            )
        if self.credentials is not None and self.access_token is not None:
            raise ValueError(f"{self.shop}: set credentials or the legacy access_token, not both")
        if not self.webhook_secrets and self.app is None:
            raise ValueError(f"{self.shop}: webhook_secrets must list the app's client secret")
        return self

    @property
    def credential_kind(self) -> CredentialKind:
        return "static" if self.credentials is None else self.credentials.kind

    @property
    def static_token(self) -> SecretStr | None:
        """The configured token of a static store (None for the grants: tokens are issued)."""
        if isinstance(self.credentials, StaticCredentials):
            return self.credentials.access_token
        return self.access_token

    @property
    def app(self) -> str | None:
        """The name of the app whose credentials this store uses (None: static)."""
        return getattr(self.credentials, "app", None)

    @property
    def shop_url(self) -> str:
        """`https://{shop}` as this store's URLs are built (its Admin API URL before /admin/)."""
        return self.admin_api_url.split("/admin/api/", 1)[0]


class MerchantConfig(_Strict):
    """A tenant: one parent store that owns the catalog, N child stores that sell."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    name: str = ""
    parent: StoreConfig
    children: list[StoreConfig] = Field(default_factory=list)
    sync: SyncPolicyConfig = Field(default_factory=SyncPolicyConfig)

    @model_validator(mode="after")
    def _parent_has_no_price_rule(self) -> MerchantConfig:
        if self.parent.price_rule is not None:
            raise ValueError(
                f"parent {self.parent.shop}: price_rule applies to children only "
                "(the parent's prices are the source)"
            )
        if self.parent.catalog is not None:
            raise ValueError(
                f"parent {self.parent.shop}: catalog rules apply to children only (set them under "
                "[merchants.sync] for every child)"
            )
        if self.parent.stock_changes != "revert":
            raise ValueError(
                f"parent {self.parent.shop}: stock_changes applies to children only "
                "(the parent's stock is the network's)"
            )
        return self

    @property
    def stores(self) -> list[StoreConfig]:
        return [self.parent, *self.children]

    def sync_policy_mapping(self) -> dict:
        """The merchant's policy as `storesync.sync.domain.catalog.SyncPolicy.from_mapping` reads it."""
        out: dict = {
            "price_rules": {
                c.shop: {
                    "markup_percent": str(c.price_rule.markup_percent),
                    "rounding": c.price_rule.rounding,
                }
                for c in self.children
                if c.price_rule is not None
            }
        }
        if self.sync.fields is not None:
            out["fields"] = list(self.sync.fields)
        out["metafield_namespaces"] = list(self.sync.metafield_namespaces)
        out["catalog"] = {"handle_suffix": self.parent.shop.split(".", 1)[0], **self.sync.overrides()}
        out["child_catalog"] = {c.shop: c.catalog.overrides() for c in self.children if c.catalog is not None}
        return out


class NetworkConfig(_Strict):
    # Dev Dashboard apps by a name of your choosing; stores refer to them in `credentials.app`.
    apps: dict[str, AppConfig] = Field(default_factory=dict)
    merchants: list[MerchantConfig] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _app_secrets_verify_webhooks(cls, data: Any) -> Any:
        """A store with an app's credentials and no webhook_secrets of its own verifies webhooks
        with the app's client secrets (Shopify signs them with the app's secret)."""
        if not isinstance(data, dict):
            return data
        raw_apps = data.get("apps")
        apps: dict = raw_apps if isinstance(raw_apps, dict) else {}
        merchants = data.get("merchants")
        if not isinstance(merchants, list):
            return data

        def with_secrets(store: Any) -> Any:
            if not isinstance(store, dict) or store.get("webhook_secrets"):
                return store
            creds = store.get("credentials")
            app = apps.get(creds.get("app")) if isinstance(creds, dict) else None
            if isinstance(app, dict) and app.get("client_secrets"):
                return {**store, "webhook_secrets": app["client_secrets"]}
            return store

        out = []
        for m in merchants:
            if isinstance(m, dict):
                m = {**m}
                if "parent" in m:
                    m["parent"] = with_secrets(m["parent"])
                if isinstance(m.get("children"), list):
                    m["children"] = [with_secrets(c) for c in m["children"]]
            out.append(m)
        return {**data, "merchants": out}

    @model_validator(mode="after")
    def _apps_exist(self) -> NetworkConfig:
        for m in self.merchants:
            for s in m.stores:
                if s.app is None:
                    continue
                app = self.apps.get(s.app)
                if app is None:
                    known = ", ".join(sorted(self.apps)) or "none"
                    raise ValueError(
                        f"{s.shop}: credentials.app {s.app!r} is not under [apps] (known: {known})"
                    )
                if s.credential_kind == "authorization_code" and app.redirect_uri is None:
                    raise ValueError(
                        f"apps.{s.app}: redirect_uri is needed for {s.shop}'s authorization_code grant "
                        "(our https://.../auth/callback)"
                    )
        return self

    def app_of(self, store: StoreConfig) -> AppConfig | None:
        return None if store.app is None else self.apps[store.app]

    @model_validator(mode="after")
    def _unique(self) -> NetworkConfig:
        seen_ids: set[str] = set()
        seen_shops: dict[str, str] = {}
        for m in self.merchants:
            if m.id in seen_ids:
                raise ValueError(f"merchant id {m.id!r} appears twice")
            seen_ids.add(m.id)
            for s in m.stores:
                if s.shop in seen_shops:
                    raise ValueError(
                        f"shop {s.shop!r} appears in merchant {seen_shops[s.shop]!r} and {m.id!r}"
                    )
                seen_shops[s.shop] = m.id
        return self

    @cached_property
    def _by_shop(self) -> dict[str, tuple[MerchantConfig, StoreConfig]]:
        return {s.shop: (m, s) for m in self.merchants for s in m.stores}

    def store(self, shop: str) -> tuple[MerchantConfig, StoreConfig] | None:
        """The merchant and store for a shop domain, or None if we do not serve it."""
        return self._by_shop.get(shop)

    @classmethod
    def from_toml_text(cls, text: str, source: str = "storesync.toml") -> NetworkConfig:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"invalid configuration in {source}: not valid TOML: {err}") from None
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise ConfigError(_format_validation_error(source, err)) from None

    @classmethod
    def load(cls, path: Path) -> NetworkConfig:
        """The network in `path`; an absent file is an empty network (nothing to sync yet)."""
        if not path.exists():
            return cls()
        return cls.from_toml_text(path.read_text(encoding="utf-8"), str(path))


# Values copied from an example and never filled in: `network check` refuses them (a token like
# this reaches the store as a 401, a secret like this verifies no webhook).
PLACEHOLDER_RE = re.compile(
    r"replace|change[-_ ]?me|placeholder|your[-_ ]|<[^>]*>|x{4,}|\.\.\.|todo|fixme|example", re.IGNORECASE
)


def is_placeholder(value: str) -> bool:
    return bool(PLACEHOLDER_RE.search(value))


def network_problems(network: NetworkConfig) -> list[str]:
    """What would keep a valid storesync.toml from syncing: placeholder secrets or client ids
    left from the example, and children without a location map (their stock would never sync).
    Secret values are never quoted."""
    problems = []
    for name, app in network.apps.items():
        if is_placeholder(app.client_id):
            problems.append(
                f"apps.{name}.client_id is a placeholder: the app's client ID (Dev Dashboard, Settings)"
            )
        if any(is_placeholder(s.get_secret_value()) for s in app.client_secrets):
            problems.append(f"apps.{name}.client_secrets holds a placeholder: the app's client secret")
    for m in network.merchants:
        for s in m.stores:
            token = s.static_token
            if token is not None and is_placeholder(token.get_secret_value()):
                problems.append(f"{s.shop}: its access token is a placeholder")
            if s.app is None and any(is_placeholder(w.get_secret_value()) for w in s.webhook_secrets):
                problems.append(f"{s.shop}: webhook_secrets holds a placeholder")
        for c in m.children:
            if not c.location_map:
                problems.append(
                    f"{c.shop}: no location_map: its stock would never sync (`storesync network locations` "
                    "lists each store's locations and the map matched by name)"
                )
    return problems


def with_location_maps(text: str, maps: dict[str, dict[str, str]]) -> tuple[str, list[str]]:
    """storesync.toml's text with a `location_map = { ... }` line added to each child's table in
    `maps` (after its `shop = "..."` line), leaving everything else as it was; and the children
    whose table was not found in that form (to be edited by hand). Children that already have a
    location_map are left alone."""
    lines = text.splitlines(keepends=True)
    placed: set[str] = set()
    in_child = False
    has_map = False
    insert_at: dict[int, str] = {}
    pending: tuple[int, str] | None = None

    def close_table() -> None:
        nonlocal pending
        if pending is not None and not has_map:
            insert_at[pending[0]] = pending[1]
            placed.add(pending[1])
        pending = None

    for i, raw in enumerate(lines):
        line = raw.strip()
        if line.startswith("["):
            close_table()
            in_child, has_map = line.replace(" ", "") == "[[merchants.children]]", False
            continue
        if not in_child:
            continue
        if re.match(r"^location_map\s*=", line):
            has_map = True
        match = re.match(r'^shop\s*=\s*"([^"]+)"', line)
        if match and match.group(1) in maps:
            pending = (i, match.group(1))
    close_table()
    out = []
    for i, raw in enumerate(lines):
        out.append(raw)
        shop = insert_at.get(i)
        if shop is not None:
            if not raw.endswith("\n"):
                out[-1] = raw + "\n"
            pairs = ", ".join(f'"{p}" = "{c}"' for p, c in maps[shop].items())
            out.append(f"location_map = {{ {pairs} }}\n")
    return "".join(out), sorted(set(maps) - placed)
