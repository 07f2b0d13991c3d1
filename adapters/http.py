"""The HTTP plumbing every vendor adapter shares: one session, timeouts on every call,
client-side pacing, tenacity retries for short blips, and translation of failures into
``schemas.errors``.

Retry policy (a ``tenacity.Retrying`` built in the composition root, ``wait_none`` in tests):
only ``VendorUnavailable`` is retried, and a request that may have been processed (a POST
that timed out or got a 5xx) is never re-sent here: the message-level retry that follows
first looks the object up by its marker, so a create is never made twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import requests
import tenacity

from adapters.pacing import Pacer
from schemas.errors import ProvisionerError, VendorAuth, VendorRejected, VendorUnavailable

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE"})
USER_AGENT = "timesheet-provisioner (https://github.com/timesheet-provisioner)"
DEFAULT_TIMEOUT = (5.0, 30.0)  # connect, read
HOLD_OFF_CEILING = 60.0  # seconds we pause an account in-process on a Retry-After


def retry_after_seconds(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None  # an HTTP-date; rare enough to fall back to our own backoff


def wait_for_vendor(fallback: tenacity.wait.wait_base, ceiling: float = HOLD_OFF_CEILING):
    """A tenacity wait that honours the vendor's Retry-After, else uses ``fallback``."""

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hint = getattr(exc, "retry_after", None)
        return min(hint, ceiling) if hint is not None else fallback(state)

    return wait


def default_retrying(attempts: int = 4) -> tenacity.Retrying:
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=wait_for_vendor(
            tenacity.wait_exponential(multiplier=0.5, max=8) + tenacity.wait_random(0, 0.5)
        ),
        retry=tenacity.retry_if_exception(lambda e: getattr(e, "safe_to_retry", False)),
        reraise=True,
    )


def default_error_text(response: requests.Response) -> str:
    """The vendor's own words: a JSON ``message``/``error``, a JSON string, or raw text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(body, str):
        return body[:300]
    if isinstance(body, dict):
        for key in ("message", "error_description", "error", "errors"):
            if body.get(key):
                return str(body[key])[:300]
    return str(body)[:300]


def _never_sent(exc: Exception) -> bool:
    """True when the request cannot have reached the server (refused, connect timeout);
    a reset after sending may follow a processed create, so it does not count."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return type(reason).__name__ == "NewConnectionError"


def _describe(exc: Exception, timeout: tuple[float, float]) -> str:
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"connect timed out after {timeout[0]:g}s"
    if isinstance(exc, requests.Timeout):
        return f"timed out after {timeout[1]:g}s"
    return f"connection failed ({type(exc).__name__})"


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
    ):
        self.vendor = vendor
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.session.headers.update({"User-Agent": USER_AGENT, **headers})
        self.retrying = retrying
        self.pacer = pacer
        self.timeout = timeout
        self.error_text = error_text
        self.throttle_statuses = throttle_statuses
        self.retry_after_headers = retry_after_headers

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        ok_statuses: frozenset[int] = frozenset(),
    ) -> requests.Response:
        """One call with retries. ``ok_statuses`` (say 404, 422) are returned, not raised."""
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        return self.retrying(self._once, method, url, params, json, ok_statuses)

    def _once(self, method, url, params, json, ok_statuses) -> requests.Response:
        if self.pacer:
            self.pacer.acquire()
        where = f"{self.vendor} {method} {url.removeprefix(self.base_url).split('?')[0]}"
        try:
            response = self.session.request(
                method, url, params=params, json=json, timeout=self.timeout
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            err = VendorUnavailable(f"{where}: {_describe(exc, self.timeout)}")
            err.safe_to_retry = method in IDEMPOTENT or _never_sent(exc)
            raise err from None
        status = response.status_code
        if status < 400 or status in ok_statuses:
            return response
        raise self._failure(method, where, response)

    def _failure(self, method: str, where: str, response: requests.Response) -> ProvisionerError:
        status = response.status_code
        text = self.error_text(response)
        if status in self.throttle_statuses:
            found = (response.headers.get(h) for h in self.retry_after_headers)
            hint = retry_after_seconds(next((v for v in found if v is not None), None))
            if hint is not None and self.pacer:
                self.pacer.hold_off(min(hint, HOLD_OFF_CEILING))
            err = VendorUnavailable(f"{where}: throttled ({status})", retry_after=hint)
            # A throttled request was not processed, so re-sending is safe; but a wait longer
            # than the ceiling (Toggl's hourly quota) is left to the delayed message retry.
            err.safe_to_retry = hint is None or hint <= HOLD_OFF_CEILING
            return err
        if status >= 500:
            err = VendorUnavailable(f"{where}: {status} {text}".strip())
            err.safe_to_retry = method in IDEMPOTENT
            return err
        if status in (401, 403):
            return VendorAuth(f"{where}: {status} credentials refused")
        return VendorRejected(f"{where}: {status} {text}".strip(), status=status)

    def pages(self, path: str, key: str, params: Mapping[str, Any] | None = None):
        """Follows Harvest-style ``links.next`` cursors; yields every item under ``key``."""
        url: str | None = path
        query: Mapping[str, Any] | None = params
        while url:
            response = self.request("GET", url, params=query)
            try:
                body = response.json()
            except ValueError:  # a proxy's HTML page, say: not an answer from the tool
                raise VendorUnavailable(f"{self.vendor} GET {path}: response is not JSON") from None
            yield from body.get(key, [])
            url = (body.get("links") or {}).get("next")
            query = None  # the next link carries its own query
