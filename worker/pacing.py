"""Which pace each vendor account gets: this process's own (``adapters.pacing``), or, with
``PROVISIONER_PACING_URL`` set, one budget in Redis for every worker on the account
(``adapters.shared_pacing``). The composition root's half of pacing: it knows the settings
that say which account the vendor counts against."""

from __future__ import annotations

from collections.abc import Callable

from adapters.pacing import Pacer
from adapters.shared_pacing import PacingStore, SharedPacer, app_fingerprint, budget
from worker.settings import Settings

Pace = Callable[..., "Pacer | SharedPacer"]


def pacing_store(settings: Settings) -> PacingStore | None:
    if settings.pacing_url is None:
        return None
    return PacingStore(settings.pacing_url, workers=settings.pacing_workers)


def account_budget(settings: Settings, vendor: str) -> str:
    """The account a vendor's limit counts against. Our namespace is not in it: two
    installations on one account spend the vendor's one allowance."""
    s = settings
    if vendor == "harvest":
        return budget(vendor, s.harvest_base_url, s.harvest_account_id)
    if vendor == "toggl":
        return budget(vendor, s.toggl_base_url, s.toggl_workspace_id)
    if vendor == "clockify":
        return budget(vendor, s.clockify_base_url, s.clockify_workspace_id)
    if vendor == "hubspot":  # one origin for every portal: the private app tells them apart
        token = s.hubspot_access_token.get_secret_value() if s.hubspot_access_token else ""
        return budget(vendor, s.hubspot_base_url, app_fingerprint(token))
    if vendor == "pipedrive":
        return budget(vendor, s.pipedrive_base_url)  # the company's own origin
    return budget(vendor, s.salesforce_instance_url)  # the org's instance


def pacers(settings: Settings, shared: PacingStore | None) -> Pace:
    """``pace(vendor, "calls/seconds")``: the pacer for that vendor's configured account.
    ``limit`` names a second limit the vendor keeps on the same account beside the general
    one (HubSpot's search), so that it gets a budget of its own."""

    def pace(vendor: str, spec: str, limit: str | None = None) -> Pacer | SharedPacer:
        calls, seconds = spec.split("/")
        if shared is None:
            return Pacer(int(calls), float(seconds))
        account = account_budget(settings, vendor)
        return shared.pacer(f"{account}:{limit}" if limit else account, int(calls), float(seconds))

    return pace
