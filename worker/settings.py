"""Settings, read once from the environment and validated at start-up (contract names): the
model of every setting, the worker's and the tools'. What only the CRMs need is in
``worker.crm_settings``; checks of single values are in ``worker.setting_checks``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as _SourceError

from worker.crm_settings import (
    CRM_SETTINGS,
    HUBSPOT_API,
    SALESFORCE_LOGIN,
    URL_DEFAULTS,
    salesforce_flow,
)
from worker.setting_checks import (
    LOG_LEVELS,
    SettingsError,
    calls_per_seconds,
    duration_seconds,
    header_value,
    is_redis_url,
    pem_key_file,
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    amqp_url: str = Field(
        "amqp://guest:guest@localhost:5672/",
        alias="AMQP_URL",
        description=(
            "the broker, `amqp://` or `amqps://`; its password is redacted from every log line"
        ),
    )
    namespace: str = Field(
        "provisioning",
        alias="PROVISIONER_NAMESPACE",
        description="prefix of every exchange and queue",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
    )
    database_url: str = Field(
        "sqlite:///provisioner.db",
        alias="PROVISIONER_DATABASE_URL",
        description="state store: `sqlite:///PATH`, or `postgresql://…` for several workers",
    )
    rules: str | None = Field(
        None,
        alias="PROVISIONER_RULES",
        description="rules file (TOML); unset: the built-in defaults",
    )
    retry_delays: Annotated[tuple[float, ...], NoDecode] = Field(
        (10, 60, 600, 3600),
        alias="PROVISIONER_RETRY_DELAYS",
        description=(
            "seconds between redeliveries, comma-separated; their count is the number of retries"
        ),
    )
    concurrency: int = Field(
        16,
        alias="PROVISIONER_CONCURRENCY",
        description="messages worked at once (events of one project never in parallel)",
        ge=1,
        le=512,
    )
    prefetch: int | None = Field(
        None,
        alias="PROVISIONER_PREFETCH",
        description=(
            "deliveries the broker hands over ahead of "
            "their acks; unset: 32 × concurrency, 64 to 1000"
        ),
        ge=1,
        le=65535,
    )
    heartbeat: int = Field(
        10,
        alias="PROVISIONER_HEARTBEAT",
        description="AMQP heartbeat timeout, seconds; 0 asks for no heartbeats",
        ge=0,
    )
    shutdown_grace: float = Field(
        30.0,
        alias="PROVISIONER_SHUTDOWN_GRACE",
        description=(
            "on SIGTERM, seconds in-flight messages may finish before the rest go back to the queue"
        ),
        ge=0,
    )
    source: str = Field(
        "timesheet-provisioner",
        alias="PROVISIONER_SOURCE",
        description="the `source` of the events the worker publishes",
        min_length=1,
    )
    cpu: str = Field(
        "auto",
        alias="PROVISIONER_CPU",
        description=(
            "keep the worker on one CPU: a CPU number, `all` "
            "for unpinned, or `auto` (see `worker/cpu.py`)"
        ),
        pattern=r"^(auto|all|\d+)$",
    )
    # The broker's consumer_timeout (RabbitMQ's default): the worker takes ahead only what it
    # expects to finish well within it, and at most this many bytes of bodies (worker.window).
    consumer_timeout: float = Field(1800.0, alias="PROVISIONER_CONSUMER_TIMEOUT", gt=0)
    max_held_bytes: int = Field(
        64 * 1024 * 1024,
        alias="PROVISIONER_MAX_HELD_BYTES",
        description=(
            "at most this many bytes of message bodies held unacked at once (default 64 MiB)"
        ),
        ge=256 * 1024,
    )
    # Per-project order across worker processes (worker.partitioning): 1 consumes NS.worker
    # directly; more needs PostgreSQL, where the workers find each other.
    partitions: int = Field(1, alias="PROVISIONER_PARTITIONS", ge=1, le=1024)

    harvest_account_id: str | None = Field(
        None,
        alias="HARVEST_ACCOUNT_ID",
        description=(
            "Harvest account id (`Harvest-Account-Id`); "
            "with `HARVEST_ACCESS_TOKEN` it enables Harvest"
        ),
    )
    harvest_access_token: SecretStr | None = Field(
        None,
        alias="HARVEST_ACCESS_TOKEN",
        description=(
            "Harvest personal access token, a secret; with `HARVEST_ACCOUNT_ID` it enables Harvest"
        ),
    )
    harvest_base_url: str = Field(
        "https://api.harvestapp.com/v2",
        alias="HARVEST_BASE_URL",
        description="Harvest's API root (`…/v2`); point it elsewhere only for a fake or a proxy",
    )
    toggl_api_token: SecretStr | None = Field(
        None,
        alias="TOGGL_API_TOKEN",
        description=(
            "Toggl Track API token, a secret; with `TOGGL_WORKSPACE_ID` it enables Toggl Track"
        ),
    )
    toggl_workspace_id: str | None = Field(
        None,
        alias="TOGGL_WORKSPACE_ID",
        description=(
            "Toggl Track workspace the projects go in; "
            "with `TOGGL_API_TOKEN` it enables Toggl Track"
        ),
    )
    toggl_base_url: str = Field(
        "https://api.track.toggl.com/api/v9",
        alias="TOGGL_BASE_URL",
        description=(
            "Toggl Track's API root (`…/api/v9`); point it elsewhere only for a fake or a proxy"
        ),
    )
    clockify_api_key: SecretStr | None = Field(
        None,
        alias="CLOCKIFY_API_KEY",
        description=(
            "Clockify API key (`X-Api-Key`), a secret; with "
            "`CLOCKIFY_WORKSPACE_ID` it enables Clockify"
        ),
    )
    clockify_workspace_id: str | None = Field(
        None,
        alias="CLOCKIFY_WORKSPACE_ID",
        description=(
            "Clockify workspace the projects go in; with `CLOCKIFY_API_KEY` it enables Clockify"
        ),
    )
    clockify_base_url: str = Field(
        "https://api.clockify.me/api/v1",
        alias="CLOCKIFY_BASE_URL",
        description=(
            "Clockify's API root (`…/api/v1`); point it elsewhere only for a fake or a proxy"
        ),
    )

    # The CRMs the worker reads deals from (contract: "From a CRM deal to a project").
    hubspot_access_token: SecretStr | None = Field(
        None,
        alias="HUBSPOT_ACCESS_TOKEN",
        description=(
            "HubSpot private app access token for deal reads, a secret; unset: HubSpot is disabled"
        ),
    )
    hubspot_base_url: str = Field(
        HUBSPOT_API,
        alias="HUBSPOT_BASE_URL",
        description=(
            "HubSpot API origin for deal reads, `http(s)://HOST`; "
            "empty or unset: `https://api.hubapi.com`"
        ),
    )
    pipedrive_api_token: SecretStr | None = Field(
        None,
        alias="PIPEDRIVE_API_TOKEN",
        description=(
            "Pipedrive API token (`x-api-token`), a secret; "
            "with `PIPEDRIVE_BASE_URL` it enables Pipedrive"
        ),
    )
    pipedrive_base_url: str | None = Field(
        None,
        alias="PIPEDRIVE_BASE_URL",
        description=(
            "the company domain, `https://<company>.pipedrive.com`; "
            "with `PIPEDRIVE_API_TOKEN` it enables Pipedrive"
        ),
    )
    salesforce_instance_url: str | None = Field(
        None,
        alias="SALESFORCE_INSTANCE_URL",
        description=(
            "the org's API origin; unset: the token answer's "
            "`instance_url` (needed with the static token)"
        ),
    )
    salesforce_access_token: SecretStr | None = Field(
        None,
        alias="SALESFORCE_ACCESS_TOKEN",
        description=(
            "static token flow, with `SALESFORCE_INSTANCE_URL`; "
            "a secret, never renewed (dies with the session)"
        ),
    )
    # Salesforce's OAuth flows (``adapters.salesforce_session``): which one applies is decided
    # by which of these are set (``salesforce_flow``); the token comes from the login URL.
    salesforce_client_id: str | None = Field(None, alias="SALESFORCE_CLIENT_ID")
    salesforce_client_secret: SecretStr | None = Field(
        None,
        alias="SALESFORCE_CLIENT_SECRET",
        description=(
            "connected app's consumer secret, for the refresh token and client credentials flows"
        ),
    )
    salesforce_refresh_token: SecretStr | None = Field(
        None,
        alias="SALESFORCE_REFRESH_TOKEN",
        description=(
            "refresh token flow, with the client id and secret; "
            "a secret (a rotated one is used from then on)"
        ),
    )
    salesforce_username: str | None = Field(
        None,
        alias="SALESFORCE_USERNAME",
        description=(
            "JWT bearer flow: the user signed in as, with the client id and the private key file"
        ),
    )
    salesforce_private_key_file: str | None = Field(
        None,
        alias="SALESFORCE_PRIVATE_KEY_FILE",
        description=(
            "JWT bearer flow: path of a PEM private key whose certificate is on the connected app"
        ),
    )
    salesforce_login_url: str = Field(
        SALESFORCE_LOGIN,
        alias="SALESFORCE_LOGIN_URL",
        description=(
            "where tokens come from (`/services/oauth2/token`); "
            "the My Domain URL for client credentials"
        ),
    )

    # Client-side pacing per tool account, "calls/seconds" (vendor-documented defaults).
    harvest_rate: str = Field("100/15", alias="HARVEST_RATE_LIMIT")
    toggl_rate: str = Field(
        "1/1",
        alias="TOGGL_RATE_LIMIT",
        description=(
            "client-side pace per Toggl account, `calls/seconds`; "
            "its hourly quota is read from its answers on top"
        ),
    )
    # Unset: the plan's documented limit (clockify.me/help/getting-started/
    # webhook-and-api-limitations): free workspaces 30 an hour, paid ones 50 a second.
    clockify_rate: str | None = Field(None, alias="CLOCKIFY_RATE_LIMIT")
    clockify_plan: Literal["free", "paid"] = Field(
        "paid",
        alias="CLOCKIFY_PLAN",
        description=(
            "the workspace's plan: `free` is paced at 30 requests "
            "an hour (a 429 waits for a delayed retry), `paid` 50/s"
        ),
    )
    # HubSpot private apps: 100 per 10 s (Free/Starter); Pipedrive: by plan, from 20 per 2 s;
    # Salesforce counts a daily total, so only bursts are paced.
    hubspot_rate: str = Field("100/10", alias="HUBSPOT_RATE_LIMIT")
    pipedrive_rate: str = Field(
        "20/2",
        alias="PIPEDRIVE_RATE_LIMIT",
        description=(
            "client-side pace per Pipedrive company, "
            "`calls/seconds` (its burst limit per 2 s, by plan)"
        ),
    )
    salesforce_rate: str = Field(
        "25/1",
        alias="SALESFORCE_RATE_LIMIT",
        description=(
            "client-side pace of bursts per Salesforce org, "
            "`calls/seconds` (its daily total is not paced)"
        ),
    )
    vendor_timeout: float = Field(
        30.0,
        alias="PROVISIONER_VENDOR_TIMEOUT",
        description="read timeout of every tool and CRM call, seconds",
        gt=0,
    )
    # Seconds a tool's users (by e-mail) and tasks (by name) are kept once read
    # (adapters.read_cache); 0 reads them on every provisioning.
    tool_cache_ttl: float = Field(300.0, alias="PROVISIONER_TOOL_CACHE_TTL", ge=0, le=3600)
    # The longest throttle wait (a vendor's Retry-After) a worker sits out in-process; a longer
    # one becomes a delayed message retry sized by it (adapters.http, worker.processing).
    hold_off_ceiling: float = Field(60.0, alias="PROVISIONER_HOLD_OFF_CEILING", ge=0, le=3600)
    # One budget per vendor account for every worker, in Redis (adapters.shared_pacing);
    # unset, each process paces alone. While Redis is away each process keeps 1/WORKERS of a
    # limit (or 1/the number Redis last counted, if more): the processes sharing an account.
    pacing_url: str | None = Field(None, alias="PROVISIONER_PACING_URL")
    pacing_workers: int = Field(
        4,
        alias="PROVISIONER_PACING_WORKERS",
        description=(
            "how many worker processes share an account: "
            "each one's share of a limit while Redis is away"
        ),
        ge=1,
        le=1024,
    )

    # ``provisioner crm reconcile`` without --since, for a CRM account never swept: how far
    # back its first sweep looks (a duration: 30m, 12h, 7d; or seconds).
    reconcile_lookback: float = Field(7 * 86400.0, alias="PROVISIONER_RECONCILE_LOOKBACK", gt=0)

    # /metrics, /healthz and /readyz of ``provisioner run`` (``worker.probes``); "off": none.
    metrics_bind: str = Field("127.0.0.1:9464", alias="PROVISIONER_METRICS_BIND")
    # ``worker.logs``: JSON lines, or console lines (unset: console on a terminal).
    log_level: str = Field(
        "INFO",
        alias="LOG_LEVEL",
        description=(
            "`DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`, for our lines and every library's"
        ),
    )
    log_format: Literal["json", "console"] | None = Field(
        None,
        alias="LOG_FORMAT",
        description=(
            "`json` (one object a line) or `console`; unset: "
            "`console` when stderr is a terminal, else `json`"
        ),
    )

    @field_validator("retry_delays", mode="before")
    @classmethod
    def _delays(cls, value):
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            try:
                value = tuple(float(p) for p in parts)
            except ValueError:
                raise ValueError("must be comma-separated seconds, e.g. 10,60,600") from None
        if any(d <= 0 for d in value):
            raise ValueError("every delay must be a positive number of seconds")
        return tuple(value)

    @field_validator(
        "harvest_account_id",
        "harvest_access_token",
        "toggl_api_token",
        "toggl_workspace_id",
        "clockify_api_key",
        "clockify_workspace_id",
        "hubspot_access_token",
        "pipedrive_api_token",
        "salesforce_access_token",
        "salesforce_client_id",
        "salesforce_client_secret",
        "salesforce_refresh_token",
        "salesforce_username",
        mode="before",
    )
    @classmethod
    def _credential(cls, value):
        return header_value(value)

    @field_validator(
        "hubspot_base_url",
        "pipedrive_base_url",
        "salesforce_instance_url",
        "salesforce_login_url",
        mode="before",
    )
    @classmethod
    def _crm_url(cls, value, info: ValidationInfo):
        if value is None or str(value).strip() == "":
            # Compose passes "" for an unset one: HubSpot's and Salesforce's login have a
            # default, the others none.
            return URL_DEFAULTS.get(info.field_name)
        text = str(value).strip().rstrip("/")
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError("must be an http(s) origin, e.g. https://acme.pipedrive.com")
        return text

    @field_validator("salesforce_private_key_file", mode="before")
    @classmethod
    def _private_key_file(cls, value):
        return pem_key_file(value)

    @field_validator(
        "harvest_rate",
        "toggl_rate",
        "clockify_rate",
        "hubspot_rate",
        "pipedrive_rate",
        "salesforce_rate",
    )
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        return calls_per_seconds(value)

    @field_validator("reconcile_lookback", mode="before")
    @classmethod
    def _lookback(cls, value):
        return duration_seconds(value) if isinstance(value, str) else value

    @field_validator("amqp_url")
    @classmethod
    def _amqp(cls, value: str) -> str:
        if not value.startswith(("amqp://", "amqps://")):
            raise ValueError("must start with amqp:// or amqps://")
        return value

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str) -> str:
        if value.startswith("sqlite:") and not value.startswith("sqlite:///"):
            raise ValueError("must be sqlite:///relative.db or sqlite:////absolute/path.db")
        if not value.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
            scheme = value.partition(":")[0][:20]
            raise ValueError(f"unknown scheme {scheme!r}: use sqlite:///PATH or postgresql://…")
        return value

    @field_validator("pacing_url", mode="before")
    @classmethod
    def _pacing(cls, value):
        if value is None or str(value).strip() == "":
            return None
        text = str(value).strip()
        if not is_redis_url(text):
            raise ValueError("must be redis://HOST:PORT/DB, rediss://… or unix://PATH")
        return text

    @field_validator("metrics_bind")
    @classmethod
    def _metrics_bind(cls, value: str) -> str:
        value = value.strip()
        if value.lower() == "off":
            return "off"
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("must be HOST:PORT (e.g. 127.0.0.1:9464) or off")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value):
        level = str(value).strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value):
        return None if value is None or str(value).strip() == "" else str(value).strip().lower()

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """Where to serve /metrics and the probes; None when off."""
        if self.metrics_bind == "off":
            return None
        host, _, port = self.metrics_bind.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def salesforce_private_key(self) -> str | None:
        """The JWT bearer flow's private key (PEM), read from its file."""
        if self.salesforce_private_key_file is None:
            return None
        return Path(self.salesforce_private_key_file).read_text()

    def salesforce_flow(self) -> str | None:
        """How the worker signs in to Salesforce (``worker.crm_settings.salesforce_flow``)."""
        return salesforce_flow(self)

    def _credentials(self, tool: str) -> list:
        return [getattr(self, name) for name in CREDENTIALS[tool]]

    def secrets(self) -> list[str]:
        """Every configured secret value, for the log redactor (``worker.logs``)."""
        found = [
            token.get_secret_value()
            for token in (
                self.harvest_access_token,
                self.toggl_api_token,
                self.clockify_api_key,
                self.hubspot_access_token,
                self.pipedrive_api_token,
                self.salesforce_access_token,
                self.salesforce_client_secret,
                self.salesforce_refresh_token,
            )
            if token is not None
        ]
        if key := self.salesforce_private_key:
            # The whole PEM, and each base64 line, should a fragment ever be shown.
            found += [key, *(line for line in key.splitlines() if not line.startswith("-"))]
        for url in (self.amqp_url, self.database_url, self.pacing_url or ""):
            password = urlsplit(url).password
            if password:
                found += [password, unquote(password)]
        return found

    def enabled_tools(self) -> list[str]:
        return [tool for tool in CREDENTIALS if all(self._credentials(tool))]

    def enabled_crms(self) -> list[str]:
        """The CRMs whose deals the worker can read: every setting they need is set."""
        enabled = [
            crm for crm, names in CRM_SETTINGS.items() if all(getattr(self, n) for n in names)
        ]
        try:
            return [*enabled, "salesforce"] if self.salesforce_flow() else enabled
        except SettingsError:
            return enabled  # half configured: ``half_configured_tools`` says why

    def half_configured_tools(self) -> list[str]:
        problems = []
        for tool, names in CREDENTIALS.items():
            values = self._credentials(tool)
            if any(values) and not all(values):
                a, b = (type(self).model_fields[n].alias for n in names)
                problems.append(f"{a} and {b} go together (only one is set)")
        if self.partitions > 1 and not self.database_url.startswith("postgresql"):
            problems.append(
                "PROVISIONER_PARTITIONS above 1 needs a postgresql:// PROVISIONER_DATABASE_URL "
                "(the workers sharing partitions find each other there)"
            )
        for names in CRM_SETTINGS.values():
            values = [getattr(self, n) for n in names]
            if any(values) and not all(values):
                aliases = " and ".join(type(self).model_fields[n].alias for n in names)
                problems.append(f"{aliases} go together (only some are set)")
        try:
            self.salesforce_flow()
        except SettingsError as exc:
            problems.append(str(exc))
        return problems


# A tool is enabled when both of its credentials are set.
CREDENTIALS = {
    "harvest": ("harvest_account_id", "harvest_access_token"),
    "toggl": ("toggl_api_token", "toggl_workspace_id"),
    "clockify": ("clockify_api_key", "clockify_workspace_id"),
}


# Empty means unset for what enables a tool or a CRM (compose passes ``${X:-}`` for every one
# it knows, set or not). Any other setting given empty is a mistake worth stopping for: it
# would otherwise be read as "" or quietly fall back to a default nobody chose.
EMPTY_IS_UNSET = {
    "HARVEST_ACCOUNT_ID", "HARVEST_ACCESS_TOKEN", "TOGGL_API_TOKEN", "TOGGL_WORKSPACE_ID",
    "CLOCKIFY_API_KEY", "CLOCKIFY_WORKSPACE_ID", "HUBSPOT_ACCESS_TOKEN", "HUBSPOT_BASE_URL",
    "PIPEDRIVE_API_TOKEN", "PIPEDRIVE_BASE_URL", "SALESFORCE_INSTANCE_URL",
    "SALESFORCE_ACCESS_TOKEN", "SALESFORCE_CLIENT_ID", "SALESFORCE_CLIENT_SECRET",
    "SALESFORCE_REFRESH_TOKEN", "SALESFORCE_USERNAME", "SALESFORCE_PRIVATE_KEY_FILE",
    "SALESFORCE_LOGIN_URL", "PROVISIONER_PACING_URL",
}  # fmt: skip
WHEN_UNSET = {"PROVISIONER_RULES": "the built-in defaults"}


def empty_settings(environ: Mapping[str, str]) -> list[str]:
    """One problem a setting that is set but empty (or blank) where that means nothing."""
    problems = []
    for field in Settings.model_fields.values():
        name = field.alias
        if name in environ and not environ[name].strip() and name not in EMPTY_IS_UNSET:
            default = WHEN_UNSET.get(name) or _shown_default(field.default)
            what = "name a file" if name == "PROVISIONER_RULES" else "give a value"
            problems.append(f"{name} is empty: unset it for {default} or {what}")
    return problems


def _shown_default(value) -> str:
    if value is None:
        return "the default"
    shown = ",".join(f"{v:g}" for v in value) if isinstance(value, tuple) else value
    return f"the default ({shown})"


def load_settings() -> Settings:
    """Reads the environment; raises ``SettingsError`` naming the first bad variable."""
    if problems := empty_settings(os.environ):
        raise SettingsError(problems[0])
    try:
        settings = Settings()
    except ValidationError as exc:
        # The message names the variable and the rule, never the value (it may be a secret).
        err = exc.errors(include_url=False)[0]
        name = err["loc"][0] if err["loc"] else "setting"
        message = err["msg"].removeprefix("Value error, ")
        raise SettingsError(f"{name}: {message}") from None
    except _SourceError as exc:
        raise SettingsError(str(exc).split(" from source")[0]) from None
    problems = settings.half_configured_tools()
    if problems:
        raise SettingsError(problems[0])
    return settings
