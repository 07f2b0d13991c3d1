"""The HTTP plumbing every vendor adapter shares: one session, timeouts on every call,
client-side pacing, tenacity retries for short blips, and translation of failures into
``schemas.errors``.

Every ``requests`` exception is translated, and its text is never used: it can carry header
values (``InvalidHeader`` quotes the token) and URLs. A message is built from the vendor, the
method, the path and the exception's type name only:

    requests exception                              becomes              re-sent here
    ConnectTimeout, refused connection              VendorUnavailable    yes
    other Timeout / ConnectionError (SSL, proxy,    VendorUnavailable    if idempotent
      reset), ChunkedEncodingError,
      ContentDecodingError, other RequestException
    InvalidHeader, or a header http.client refuses  VendorAuth           no: a person must fix
                                                                         the credential
    InvalidURL, MissingSchema, InvalidSchema,       VendorRejected       no: configuration
      URLRequired, TooManyRedirects, InvalidJSONError                    or a bug, not a blip
    a body that is not JSON where JSON is expected  VendorUnavailable    if idempotent
      (``VendorAnswer.json``)

Redirects are never followed. ``requests`` would follow one to any host and keep our custom
token headers (``x-api-token``, ``X-Api-Key``) on the way, so a 3xx is ``VendorRejected``
naming only the host it pointed at: a vendor that moved needs a person to change a base URL.
Every id that goes into a path goes through ``segment`` (percent-encoded, ``/`` included),
so ``5/../7`` stays one segment and can never name another resource.

Retry policy (a ``tenacity.Retrying`` built in the composition root, ``wait_none`` in tests):
only ``VendorUnavailable`` is retried, and a request that may have been processed (a POST
that timed out or got a 5xx) is never re-sent here: the message-level retry that follows
first looks the object up by its marker, so a create is never made twice.

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
from urllib.parse import quote, urlsplit

import requests
import tenacity

from adapters.pacing import HourlyQuota, Pacer
from schemas.errors import (
    ProvisionerError,
    Unreadable,
    VendorAuth,
    VendorRejected,
    VendorUnavailable,
)
from schemas.json_body import read_json

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE"})
USER_AGENT = "timesheet-provisioner (https://github.com/timesheet-provisioner)"
DEFAULT_TIMEOUT = (5.0, 30.0)  # connect, read
# Seconds we pause an account in-process on a Retry-After; a longer wait is the delayed message
# retry's (``worker.processing``). Set per policy (``default_retrying``), read by ``VendorHttp``.
HOLD_OFF_CEILING = 60.0


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


def retry_after_seconds(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None  # an HTTP-date; rare enough to fall back to our own backoff


class WaitForVendor(tenacity.wait.wait_base):
    """A tenacity wait that honours the vendor's Retry-After up to ``ceiling``, else uses
    ``fallback``. The ceiling travels with the policy, so ``VendorHttp`` knows which hints
    its retries wait for and which it leaves to the message retry."""

    def __init__(self, fallback: tenacity.wait.wait_base, ceiling: float = HOLD_OFF_CEILING):
        self.fallback = fallback
        self.ceiling = ceiling

    def __call__(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hint = getattr(exc, "retry_after", None)
        return min(hint, self.ceiling) if hint is not None else self.fallback(state)


def default_retrying(
    attempts: int = 4, hold_off_ceiling: float = HOLD_OFF_CEILING
) -> tenacity.Retrying:
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=WaitForVendor(
            tenacity.wait_exponential(multiplier=0.5, max=8) + tenacity.wait_random(0, 0.5),
            hold_off_ceiling,
        ),
        retry=tenacity.retry_if_exception(lambda e: getattr(e, "safe_to_retry", False)),
        reraise=True,
    )


def default_error_text(response: requests.Response) -> str:
    """The vendor's own words: a JSON ``message``/``error``, a JSON string, or raw text."""
    try:
        body = read_json(response.content)
    except Unreadable:
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


# Requests that cannot be sent as configured: retrying cannot help, a person must act.
_UNSENDABLE = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.URLRequired,
    requests.exceptions.TooManyRedirects,
    requests.exceptions.InvalidJSONError,
)


def _translate(exc: Exception, idempotent: bool, where: str, timeout) -> ProvisionerError:
    """Our error for an exception ``requests`` raised; never its text (see the docstring)."""
    kind = type(exc).__name__
    if isinstance(exc, requests.exceptions.InvalidJSONError) and not isinstance(
        exc, requests.exceptions.JSONDecodeError
    ):
        return VendorRejected(f"{where}: the request body cannot be sent as JSON ({kind})")
    if isinstance(exc, requests.exceptions.InvalidHeader) or (
        isinstance(exc, ValueError) and not isinstance(exc, requests.RequestException)
    ):
        # A ValueError here is http.client refusing a header (UnicodeEncodeError included).
        return VendorAuth(f"{where}: a credential cannot be sent in a header ({kind})")
    if isinstance(exc, _UNSENDABLE):
        return VendorRejected(f"{where}: the request cannot be sent ({kind})")
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        err = VendorUnavailable(f"{where}: {_describe(exc, timeout)}")
        err.safe_to_retry = idempotent or _never_sent(exc)
        return err
    # ChunkedEncodingError, ContentDecodingError, … : the answer broke on the way.
    err = VendorUnavailable(f"{where}: the answer could not be read ({kind})")
    err.safe_to_retry = idempotent
    return err


def _redirected(where: str, response: requests.Response) -> VendorRejected:
    """A 3xx, not followed; the message names the target's host, never its path or query
    (which may carry anything)."""
    target = response.headers.get("Location") or ""
    host = urlsplit(target).hostname if "://" in target else None
    shown = host[:100] if host else "the same host"
    return VendorRejected(
        f"{where}: {response.status_code} redirect to {shown} not followed "
        "(check the base URL setting)",
        status=response.status_code,
    )


class VendorAnswer:
    """A vendor's ``requests.Response`` whose ``json()`` raises ``VendorUnavailable``, never
    ``ValueError`` or ``RecursionError``, on a body that is not JSON (a proxy's HTML page,
    a cut answer). Everything else is the response's own."""

    def __init__(self, response: requests.Response, idempotent: bool, where: str):
        self._response = response
        self._idempotent = idempotent
        self._where = where

    def __getattr__(self, name: str) -> Any:
        return getattr(self._response, name)

    def json(self, *, exact_numbers: bool = False) -> Any:
        """``exact_numbers``: fractions as ``Decimal`` (money), see ``read_json``."""
        try:
            return read_json(self._response.content, exact_numbers=exact_numbers)
        except Unreadable:
            err = VendorUnavailable(f"{self._where}: {self.status_code} answer is not JSON")
            err.safe_to_retry = self._idempotent
            raise err from None


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
