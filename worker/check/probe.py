"""One read-only GET through an adapter's own ``VendorHttp``, its refusals kept as answers:
a check needs to tell a refused token (401) from a missing permission (403) from an id that
is not there (404), which the adapters rightly fold into one error."""

from __future__ import annotations

from adapters.http import VendorAnswer, VendorHttp

REFUSALS = frozenset({401, 403, 404})


def get(http: VendorHttp, path: str, params: dict | None = None) -> VendorAnswer:
    """Raises the adapters' ``ProvisionerError`` for anything else (5xx, throttles after the
    retries, an unreachable host)."""
    return http.request("GET", path, params=params, ok_statuses=REFUSALS)


def refused(answer: VendorAnswer) -> bool:
    return answer.status_code in REFUSALS
