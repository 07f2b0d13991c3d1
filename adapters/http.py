"""The HTTP plumbing every vendor adapter shares: one session, timeouts on every call,
client-side pacing, tenacity retries for short blips, and translation of failures into
``schemas.errors``.

The module is in rooms by job: this one sends (``VendorHttp``); how a failure becomes one of
our errors, and why a ``requests`` exception's text is never used, is
``adapters.http_failures``; the retry policy and its wait are ``adapters.http_retry``. The
names this module had before the split are still importable from here.

A credential that expires (Salesforce's OAuth session) is a ``Credential``: its headers are
asked for each request, and on a 401 it may renew them; the request is then sent once more
with the new ones, and a second 401 is ``VendorAuth`` as any other.

Every request sent, every throttle and every wait our pacing imposed is told to an
``HttpObserver`` (the worker's is its Prometheus metrics, ``worker.metrics``), so this layer
counts without knowing who listens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import quote

import requests
import tenacity

from adapters.http_failures import VendorAnswer as VendorAnswer
from adapters.http_failures import _redirected, _translate, default_error_text
from adapters.http_retry import HOLD_OFF_CEILING as HOLD_OFF_CEILING
from adapters.http_retry import WaitForVendor as WaitForVendor
from adapters.http_retry import default_retrying as default_retrying
from adapters.http_retry import retry_after_seconds
from adapters.pacing import HourlyQuota, Pacer
from schemas.errors import VendorAuth, VendorRejected, VendorUnavailable

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE"})
USER_AGENT = "timesheet-provisioner (https://github.com/timesheet-provisioner)"
DEFAULT_TIMEOUT = (5.0, 30.0)  # connect, read


class HttpObserver(Protocol):
    """Told about each request to a vendor; must be cheap and must never raise."""

    def answered(self, vendor: str, method: str, status: int | None, seconds: float) -> None:
        """One request is over: its HTTP status, or None when no answer came."""

    def throttled(self, vendor: str) -> None:
        """The vendor refused a request for rate (429, a spent quota)."""

    def paced(self, vendor: str, seconds: float) -> None:
        """Our own pacing held a request back for ``seconds`` before it was sent."""


class Credential(Protocol):
    """Credentials that are asked for at each request and can be renewed on a 401."""

    def headers(self) -> Mapping[str, str]:
        """The headers that carry the credential now."""

    def renew(self, refused: Mapping[str, str], response: requests.Response) -> bool:
        """The vendor answered 401 to ``refused``: True when newer credentials are ready to
        send the request once more; may raise one of our errors (a refused renewal)."""


class Unobserved:
    """The observer of adapters nobody watches (tests, commands)."""

    def answered(self, vendor: str, method: str, status: int | None, seconds: float) -> None:
        pass

    def throttled(self, vendor: str) -> None:
        pass

    def paced(self, vendor: str, seconds: float) -> None:
        pass


UNOBSERVED = Unobserved()


def segment(value: Any) -> str:
    """One path segment: every character outside unreserved ones percent-encoded, ``/`` too."""
    return quote(str(value), safe="")


class VendorHttp:
    """Sends requests to one tool account and turns failures into our error tree."""

    def __init__(
        self,
        vendor: str,
        base_url: str,
        *,
        headers: Mapping[str, str],
        retrying: tenacity.Retrying,
        pacer: Pacer | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        error_text: Callable[[requests.Response], str] = default_error_text,
        throttle_statuses: frozenset[int] = frozenset({429}),
        retry_after_headers: tuple[str, ...] = ("Retry-After",),
        session: requests.Session | None = None,
        is_throttle: Callable[[requests.Response], bool] | None = None,
        quota: HourlyQuota | None = None,
        retry_hint: Callable[[requests.Response], str | None] | None = None,
        observer: HttpObserver = UNOBSERVED,
        credential: Credential | None = None,
    ):
        self.vendor = vendor
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.session.headers.update({"User-Agent": USER_AGENT, **headers})
        self.retrying = retrying
        self.hold_off_ceiling = getattr(retrying.wait, "ceiling", HOLD_OFF_CEILING)
        self.pacer = pacer
        self.timeout = timeout
        self.error_text = error_text
        self.throttle_statuses = throttle_statuses
        self.retry_after_headers = retry_after_headers
        # Whether a refusal is a throttle, when its status alone cannot say (Toggl's 402).
        self.is_throttle = is_throttle or (lambda r: r.status_code in self.throttle_statuses)
        self.quota = quota
        self.observer = observer
        self.credential = credential
        # The header a throttle's wait is read from (Toggl: a 429's or the quota's).
        self.retry_hint = retry_hint or (
            lambda r: next(
                (v for h in self.retry_after_headers if (v := r.headers.get(h)) is not None), None
            )
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        ok_statuses: frozenset[int] = frozenset(),
        read_only: bool = False,
    ) -> VendorAnswer:
        """One call with retries. ``ok_statuses`` (say 404, 422) are returned, not raised.
        ``read_only`` marks a POST that only reads (HubSpot's batch reads): safe to re-send.
        ``data`` is a form-encoded body (an OAuth token request)."""
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        idempotent = read_only or method in IDEMPOTENT
        body = {"json": json, "data": data}
        return self.retrying(self._once, method, url, params, body, ok_statuses, idempotent)

    def _once(self, method, url, params, body, ok_statuses, idempotent) -> VendorAnswer:
        where = f"{self.vendor} {method} {url.removeprefix(self.base_url).split('?')[0]}"
        sent = dict(self.credential.headers()) if self.credential else {}
        response = self._send(method, url, params, body, sent, idempotent, where)
        renewed = response.status_code == 401 and self.credential
        if renewed and self.credential.renew(sent, response):
            sent = dict(self.credential.headers())
            response = self._send(method, url, params, body, sent, idempotent, where)
        status = response.status_code
        if 300 <= status < 400 and status not in ok_statuses:
            raise _redirected(where, response)
        if status < 400 or status in ok_statuses:
            return VendorAnswer(response, idempotent, where)
        raise self._failure(idempotent, where, response)

    def _send(self, method, url, params, body, headers, idempotent, where) -> requests.Response:
        if self.quota:
            self._within_quota(where)
        if self.pacer and (waited := self.pacer.acquire()):
            self.observer.paced(self.vendor, waited)
        started = time.monotonic()
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                headers=headers or None,
                timeout=self.timeout,
                allow_redirects=False,
                **body,
            )
        except (requests.RequestException, ValueError) as exc:
            if self.pacer:
                self.pacer.answered()
            self.observer.answered(self.vendor, method, None, time.monotonic() - started)
            if self.quota:
                self.quota.answered(None)
            raise _translate(exc, idempotent, where, self.timeout) from None
        if self.pacer:
            self.pacer.answered()
        status = response.status_code
        self.observer.answered(self.vendor, method, status, time.monotonic() - started)
        if self.quota:
            self.quota.answered(response.headers)
        return response

    def _within_quota(self, where: str) -> None:
        """Waits for the hourly quota to free a slot, on the pacer's clock and up to the
        hold-off ceiling; a longer wait (or one with no pacer to wait on) is left to the
        delayed message retry, and no request is spent on it."""
        while wait := self.quota.wait_needed():
            if self.pacer is None or wait > self.hold_off_ceiling:
                err = VendorUnavailable(
                    f"{where}: hourly quota spent, frees in {wait:.0f}s", retry_after=wait
                )
                err.safe_to_retry = False
                raise err
            self.pacer.sleep(wait)
            self.observer.paced(self.vendor, wait)

    def _failure(self, idempotent: bool, where: str, response: requests.Response):
        status = response.status_code
        text = self.error_text(response)
        if self.is_throttle(response):
            self.observer.throttled(self.vendor)
            hint = retry_after_seconds(self.retry_hint(response))
            if hint is not None and self.pacer:
                self.pacer.hold_off(min(hint, self.hold_off_ceiling))
            err = VendorUnavailable(f"{where}: throttled ({status})", retry_after=hint)
            # A throttled request was not processed, so re-sending is safe; but a wait longer
            # than the ceiling (Toggl's hourly quota) is left to the delayed message retry.
            err.safe_to_retry = hint is None or hint <= self.hold_off_ceiling
            return err
        if status >= 500:
            err = VendorUnavailable(f"{where}: {status} {text}".strip())
            err.safe_to_retry = idempotent
            return err
        if status in (401, 403):
            return VendorAuth(f"{where}: {status} credentials refused")
        return VendorRejected(f"{where}: {status} {text}".strip(), status=status)

    def pages(self, path: str, key: str, params: Mapping[str, Any] | None = None):
        """Follows Harvest-style ``links.next`` cursors; yields every item under ``key``."""
        url: str | None = path
        query: Mapping[str, Any] | None = params
        while url:
            body = self.request("GET", url, params=query).json()
            yield from body.get(key, [])
            url = (body.get("links") or {}).get("next")
            query = None  # the next link carries its own query
