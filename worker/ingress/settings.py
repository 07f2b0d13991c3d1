"""The ingress's settings: the worker's (broker, namespace, retry delays, since the ingress
declares the same topology) plus its own. Read once at start-up; an error names the
variable and never shows its value, which may be a secret."""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import SettingsError as _SourceError

from worker.ingress.salesforce_ids import to_18
from worker.settings import Settings, SettingsError

MIB = 1024 * 1024
MIN_TOKEN_CHARS = 32
_URL_SAFE = re.compile(r"[A-Za-z0-9._~-]+")


class IngressSettings(Settings):
    bind: str = Field(
        "127.0.0.1:8080",
        alias="PROVISIONER_INGRESS_BIND",
        description="where `provisioner ingress` listens, `HOST:PORT`",
    )
    public_url: str | None = Field(
        None,
        alias="PROVISIONER_PUBLIC_URL",
        description=(
            "the public origin HubSpot calls and signs, "
            "`https://HOST`; unset: the request's scheme and `Host`"
        ),
    )
    max_body: int = Field(
        MIB,
        alias="PROVISIONER_INGRESS_MAX_BODY",
        description=(
            "largest request body, bytes (default 1 MiB); "
            "a bigger one gets 413 and is not read further"
        ),
        ge=1024,
        le=64 * MIB,
    )
    # A client that has not sent its whole request by then gets 408 and its connection back.
    read_timeout: float = Field(10.0, alias="PROVISIONER_INGRESS_READ_TIMEOUT", gt=0, le=300)
    # HubSpot gives a batch 5 s; waiting longer for the broker only turns a 503 into a timeout.
    confirm_timeout: float = Field(4.0, alias="PROVISIONER_INGRESS_CONFIRM_TIMEOUT", gt=0)
    max_connections: int = Field(
        1000,
        alias="PROVISIONER_INGRESS_MAX_CONNECTIONS",
        description="connections or requests served at once; beyond it the ingress answers 503",
        ge=1,
    )

    hubspot_client_secret: SecretStr | None = Field(
        None,
        alias="HUBSPOT_CLIENT_SECRET",
        description=(
            "HubSpot app's client secret, checking signatures "
            "on `/webhooks/hubspot`; unset: that route is 404"
        ),
    )
    hubspot_legacy_signatures: bool = Field(
        False,
        alias="HUBSPOT_LEGACY_SIGNATURES",
        description=(
            "`true` also accepts HubSpot's v1 and v2 signatures; `false`: signature v3 only"
        ),
    )
    pipedrive_user: str | None = Field(
        None,
        alias="PIPEDRIVE_WEBHOOK_USER",
        description=(
            "HTTP Basic user of `/webhooks/pipedrive`, with "
            "`PIPEDRIVE_WEBHOOK_PASSWORD`; unset: that route is 404"
        ),
    )
    pipedrive_password: SecretStr | None = Field(
        None,
        alias="PIPEDRIVE_WEBHOOK_PASSWORD",
        description=(
            "HTTP Basic password of `/webhooks/pipedrive`, a "
            "secret; set together with `PIPEDRIVE_WEBHOOK_USER`"
        ),
    )
    salesforce_organization_id: str | None = Field(
        None,
        alias="SALESFORCE_ORGANIZATION_ID",
        description=(
            "the org (`00D…`, 15 or 18 characters) whose Outbound "
            "Messages `/webhooks/salesforce` takes; unset: 404"
        ),
    )
    # Outbound Messages carry no signature and the OrganizationId is public, so the endpoint
    # URL carries this secret: https://<host>/webhooks/salesforce?token=<token>.
    salesforce_webhook_token: SecretStr | None = Field(None, alias="SALESFORCE_WEBHOOK_TOKEN")
    webhook_secret: SecretStr | None = Field(
        None,
        alias="PROVISIONER_WEBHOOK_SECRET",
        description=(
            "Standard Webhooks secret of `/webhooks/events` (`whsec_` "
            "+ base64 of ≥ 24 bytes); unset: that route is 404"
        ),
    )

    @field_validator(
        "hubspot_client_secret",
        "pipedrive_user",
        "pipedrive_password",
        "salesforce_organization_id",
        "salesforce_webhook_token",
        "webhook_secret",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value):
        # Compose files pass ``${VAR:-}``: an empty secret means "not configured" (404).
        return None if value == "" else value

    @field_validator("bind")
    @classmethod
    def _bind(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be HOST:PORT, e.g. 0.0.0.0:8080")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError("must be the public origin, e.g. https://hooks.example.com")
        return value.rstrip("/")

    @field_validator("salesforce_organization_id")
    @classmethod
    def _organization(cls, value: str | None) -> str | None:
        if value is None:
            return None
        canonical = to_18(value)
        if canonical is None or not canonical.startswith("00D"):
            raise ValueError("must be a Salesforce organization id (00D…, 15 or 18 characters)")
        return canonical

    @field_validator("salesforce_webhook_token")
    @classmethod
    def _webhook_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        token = value.get_secret_value()
        if len(token) < MIN_TOKEN_CHARS:
            raise ValueError(f"must be at least {MIN_TOKEN_CHARS} characters")
        # Unreserved URL characters only: the token goes into the endpoint URL as it is,
        # so what Salesforce sends is exactly what is compared.
        if not _URL_SAFE.fullmatch(token):
            raise ValueError("may hold only letters, digits and - . _ ~ (it goes in a URL)")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _whsec(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        webhook_key(value)  # raises ValueError with a message that does not show the secret
        return value

    @model_validator(mode="after")
    def _pipedrive_pair(self) -> IngressSettings:
        if bool(self.pipedrive_user) != bool(self.pipedrive_password):
            raise ValueError(
                "PIPEDRIVE_WEBHOOK_USER and PIPEDRIVE_WEBHOOK_PASSWORD go together (one is set)"
            )
        return self

    @model_validator(mode="after")
    def _salesforce_token(self) -> IngressSettings:
        if self.salesforce_organization_id and self.salesforce_webhook_token is None:
            raise ValueError(
                "SALESFORCE_WEBHOOK_TOKEN is required when SALESFORCE_ORGANIZATION_ID is set: "
                "the endpoint URL's secret, since Outbound Messages are not signed"
            )
        return self

    def secrets(self) -> list[str]:
        """The worker's secrets and the ingress's, for the log redactor (``worker.logs``),
        including Pipedrive's credentials as its ``Authorization: Basic`` carries them."""
        found = super().secrets()
        for secret in (
            self.hubspot_client_secret,
            self.pipedrive_password,
            self.salesforce_webhook_token,
            self.webhook_secret,
        ):
            if secret is not None:
                found.append(secret.get_secret_value())
        if self.pipedrive_user and self.pipedrive_password:
            pair = f"{self.pipedrive_user}:{self.pipedrive_password.get_secret_value()}"
            found.append(base64.b64encode(pair.encode()).decode())
        return found

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.bind.rpartition(":")
        return host.strip("[]"), int(port)


def webhook_key(secret: SecretStr) -> bytes:
    """The HMAC key of a Standard Webhooks ``whsec_`` secret: the base64 after the prefix."""
    text = secret.get_secret_value()
    if not text.startswith("whsec_"):
        raise ValueError("must be a Standard Webhooks secret: whsec_ followed by base64")
    try:
        key = base64.b64decode(text.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        raise ValueError("the part after whsec_ is not base64") from None
    if len(key) < 24:
        raise ValueError("the key must be at least 24 bytes (Standard Webhooks)")
    return key


def load_ingress_settings() -> IngressSettings:
    """Reads the environment; raises ``SettingsError`` naming the first bad variable."""
    try:
        return IngressSettings()
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        name = err["loc"][0] if err["loc"] else None
        # A model-level check names its variables in its own message.
        msg = err["msg"].removeprefix("Value error, ")
        raise SettingsError(f"{name}: {msg}" if name else msg) from None
    except _SourceError as exc:
        raise SettingsError(str(exc).split(" from source")[0]) from None
