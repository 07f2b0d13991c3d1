"""How a failed call to a vendor becomes one of our errors (``schemas.errors``), for
``adapters.http.VendorHttp``.

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
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests

from schemas.errors import (
    ProvisionerError,
    Unreadable,
    VendorAuth,
    VendorRejected,
    VendorUnavailable,
)
from schemas.json_body import read_json


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
