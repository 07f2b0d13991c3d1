"""The ingress's settings, when any is set: each configured secret present and strong enough,
and ``PROVISIONER_PUBLIC_URL`` https outside localhost (the CRMs send secrets to it)."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from worker.check.lines import Line, fail, ok, warn

AREA = "ingress"
# HubSpot app client secrets are UUIDs (36 characters); a shorter one is not HubSpot's.
HUBSPOT_SECRET_CHARS = 32
# Pipedrive sends the password in Basic auth on every webhook: long enough not to be guessed.
PIPEDRIVE_PASSWORD_CHARS = 16
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


def ingress_names() -> list[str]:
    from worker.ingress.settings import IngressSettings
    from worker.settings import Settings

    return [
        f.alias for n, f in IngressSettings.model_fields.items() if n not in Settings.model_fields
    ]


def configured(environ: Mapping[str, str]) -> bool:
    return any(environ.get(name, "").strip() for name in ingress_names())


def check_ingress(environ: Mapping[str, str]) -> tuple[list[Line], list[str]]:
    """The lines, and the ingress's secrets (for the output's redaction)."""
    if not configured(environ):
        return [], []
    from worker.ingress.settings import load_ingress_settings
    from worker.settings import SettingsError

    try:
        settings = load_ingress_settings()
    except SettingsError as exc:
        return [fail(AREA, f"`provisioner ingress` would not start: {exc}", "fix that setting")], []
    lines = [_public_url(settings.public_url)]
    lines += _length(
        "HUBSPOT_CLIENT_SECRET",
        settings.hubspot_client_secret,
        HUBSPOT_SECRET_CHARS,
        "the app's client secret (Auth tab), not another value",
    )
    lines += _length(
        "PIPEDRIVE_WEBHOOK_PASSWORD",
        settings.pipedrive_password,
        PIPEDRIVE_PASSWORD_CHARS,
        "a random password, e.g. openssl rand -hex 16",
    )
    if settings.salesforce_webhook_token is not None:  # its length is refused at load
        lines.append(ok(AREA, "SALESFORCE_WEBHOOK_TOKEN is set (at least 32 characters)"))
    if settings.webhook_secret is not None:  # a key under 24 bytes is refused at load
        lines.append(ok(AREA, "PROVISIONER_WEBHOOK_SECRET is a whsec_ key of at least 24 bytes"))
    if not any(
        (
            settings.hubspot_client_secret,
            settings.pipedrive_password,
            settings.salesforce_webhook_token,
            settings.webhook_secret,
        )
    ):
        lines.append(
            warn(
                AREA,
                "no webhook secret is set: every endpoint answers 404",
                "set the secret of each CRM that sends webhooks",
            )
        )
    return lines, settings.secrets()


def _public_url(url: str | None) -> Line:
    if url is None:
        return warn(
            AREA,
            "PROVISIONER_PUBLIC_URL is unset",
            "set it to the origin the CRMs reach, e.g. https://hooks.example.com",
        )
    parts = urlsplit(url)
    if parts.scheme != "https" and (parts.hostname or "") not in LOCAL_HOSTS:
        return fail(
            AREA,
            f"PROVISIONER_PUBLIC_URL {url} is not https: webhook secrets would cross in clear",
            "put the ingress behind TLS and set PROVISIONER_PUBLIC_URL=https://...",
        )
    return ok(AREA, f"PROVISIONER_PUBLIC_URL {url}")


def _length(name: str, secret, least: int, what: str) -> list[Line]:
    if secret is None:
        return []
    if len(secret.get_secret_value()) < least:
        return [fail(AREA, f"{name} is shorter than {least} characters", f"set it to {what}")]
    return [ok(AREA, f"{name} is set ({least}+ characters)")]
