"""The CRMs' settings: which are enabled, and how the worker signs in to Salesforce.

The fields themselves are declared with the others on ``worker.settings.Settings`` (one
model, read once); this module holds what only the CRMs need to make sense of them.
"""

from __future__ import annotations

from worker.setting_checks import SettingsError

HUBSPOT_API = "https://api.hubapi.com"
SALESFORCE_LOGIN = "https://login.salesforce.com"

# A CRM is enabled when all of these are set (HubSpot's base URL has a default); Salesforce
# when one of its sign-in flows is (``SALESFORCE_FLOWS``).
CRM_SETTINGS = {
    "hubspot": ("hubspot_access_token",),
    "pipedrive": ("pipedrive_api_token", "pipedrive_base_url"),
}
URL_DEFAULTS = {"hubspot_base_url": HUBSPOT_API, "salesforce_login_url": SALESFORCE_LOGIN}

# Salesforce's ways to sign in, each by exactly the settings it needs (help.salesforce.com:
# remoteaccess_oauth_refresh_token_flow, ..._client_credentials_flow, ..._jwt_flow). The
# static token has no renewal: it dies with the org's session timeout.
SALESFORCE_FLOWS = {
    "refresh_token": ("salesforce_client_id", "salesforce_client_secret",
                      "salesforce_refresh_token"),
    "client_credentials": ("salesforce_client_id", "salesforce_client_secret"),
    "jwt_bearer": ("salesforce_client_id", "salesforce_username", "salesforce_private_key_file"),
    "access_token": ("salesforce_access_token", "salesforce_instance_url"),
}  # fmt: skip
# The settings that pick a flow (the instance URL may go with any: it overrides the answer's).
SALESFORCE_SIGN_IN = (
    "salesforce_access_token", "salesforce_client_id", "salesforce_client_secret",
    "salesforce_refresh_token", "salesforce_username", "salesforce_private_key_file",
)  # fmt: skip


def salesforce_flow(settings) -> str | None:
    """How the worker signs in to Salesforce (a key of ``SALESFORCE_FLOWS``), or None when
    Salesforce is not configured; raises ``SettingsError`` for a set that is no one flow."""
    chosen = {n for n in SALESFORCE_SIGN_IN if getattr(settings, n)}
    if not chosen and settings.salesforce_instance_url is None:
        return None
    for flow, names in SALESFORCE_FLOWS.items():
        if chosen == set(names) - {"salesforce_instance_url"}:
            if not all(getattr(settings, n) for n in names):  # the static token's URL
                raise SettingsError(
                    "SALESFORCE_ACCESS_TOKEN and SALESFORCE_INSTANCE_URL go together "
                    "(only one is set)"
                )
            return flow
    raise SettingsError(_no_one_flow(chosen, settings))


def _no_one_flow(chosen: set[str], settings) -> str:
    """Names what is set and what each flow needs; never a value."""

    def alias(name: str) -> str:
        return type(settings).model_fields[name].alias

    shown = " and ".join(alias(n) for n in SALESFORCE_SIGN_IN if n in chosen)
    if not chosen:
        flows = _flows(alias)
        return "SALESFORCE_INSTANCE_URL is set but no way to sign in to Salesforce: " + flows
    missing = [
        (flow, [alias(n) for n in names if n not in chosen])
        for flow, names in SALESFORCE_FLOWS.items()
        if chosen < set(names)
    ]
    if missing:
        hints = "; ".join(f"{', '.join(m)} for the {f.replace('_', ' ')} flow" for f, m in missing)
        return f"Salesforce: {shown} set, which is no whole flow (add {hints})"
    return f"Salesforce: {shown} set together, which mixes flows: {_flows(alias)}"


def _flows(alias) -> str:
    return "set exactly one of " + "; ".join(
        f"{' + '.join(alias(n) for n in names)} ({flow.replace('_', ' ')})"
        for flow, names in SALESFORCE_FLOWS.items()
    )
