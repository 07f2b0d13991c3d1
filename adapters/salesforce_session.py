"""A Salesforce OAuth session: gets an access token for the configured flow and renews it
when Salesforce says the session is over (401 ``INVALID_SESSION_ID``).

Every flow is one form-encoded ``POST {login URL}/services/oauth2/token`` (help.salesforce.com
remoteaccess_oauth_refresh_token_flow, ..._client_credentials_flow, ..._jwt_flow); the answer
carries ``access_token`` and ``instance_url``:

    flow                 grant_type                                        from settings
    refresh token        refresh_token                                     client id, secret,
                                                                           refresh token
    client credentials   client_credentials (the login URL is My Domain)   client id, secret
    JWT bearer           urn:ietf:params:oauth:grant-type:jwt-bearer,      client id, username,
                         ``assertion`` RS256: iss, sub, aud, exp           private key

One token request at a time per process: lanes that hit the 401 while a renewal is under way
wait for it and use its token, so a burst of expired reads costs one token request. A refused
grant (``invalid_grant``, ``invalid_client``, ...) is ``VendorAuth`` naming the settings to
fix; no message carries a secret or a token. Each new token is told to ``on_token`` (the log
redactor learns it there).

The answer's ``id`` is the identity URL, ``https://login.salesforce.com/id/<org id>/<user
id>`` (developer.salesforce.com, "Using Identity URLs"): the org id a sweep names its
account by comes from there, at no extra call (``organization_id``).

A connected app with refresh token rotation on answers each refresh-token request with a new
refresh token and invalidates the one sent. With a ``RefreshTokenKeeper`` (the state store)
the newest one is kept there, under a name that is a one-way digest of the client id and the
configured refresh token (``refresh_token_chain``): each renewal, under the keeper's lock
that holds across processes, reads the stored token, sends it and saves the one the answer
carries, so a restart, the other workers, ``crm reconcile`` and ``check`` all sign in. A
newly configured refresh token (the app authorised again) is another chain and starts from
itself. Without a keeper the new token lives in this process's memory only.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import requests
import structlog
import tenacity

from adapters.http import DEFAULT_TIMEOUT, UNOBSERVED, HttpObserver, VendorHttp
from schemas.errors import Unreadable, VendorAuth, VendorUnavailable
from schemas.json_body import read_json

CRM = "salesforce"  # the name a keeper files this CRM's refresh tokens under
TOKEN_PATH = "/services/oauth2/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# The assertion is good for this long: Salesforce wants ``exp`` within three minutes.
ASSERTION_SECONDS = 150
REFUSED = frozenset({400, 401, 403})
# The JWT bearer flow's ``aud`` is Salesforce's authorization server, not the My Domain that
# takes the request: production's or, for a sandbox, test's (help.salesforce.com
# remoteaccess_oauth_jwt_flow).
PRODUCTION_AUDIENCE = "https://login.salesforce.com"
SANDBOX_AUDIENCE = "https://test.salesforce.com"

# The org id in the identity URL's path; an org's 18-character id starts with 00D.
_IDENTITY = re.compile(r"/id/(00D[A-Za-z0-9]{15})/[A-Za-z0-9]{15,18}/?")

log = structlog.get_logger(__name__)


class RefreshTokenKeeper(Protocol):
    """Where the newest refresh token of a rotating chain is kept for every process
    (``adapters.store_tokens``, the state store)."""

    def refresh_token_lock(self, crm: str, chain: str) -> AbstractContextManager[None]: ...

    def refresh_token(self, crm: str, chain: str) -> str | None: ...

    def save_refresh_token(self, crm: str, chain: str, token: str) -> None: ...


@dataclass(frozen=True)
class Grant:
    """What one flow sends to the token endpoint, and the settings a refusal names."""

    form: Callable[[], dict[str, str]]  # built at each request: a JWT's ``exp`` moves on
    settings: str
    secrets: list[str]  # never shown, even if Salesforce's answer quotes one
    # The refresh-token flow only: a connected app with refresh token rotation on answers
    # with a new refresh token and invalidates the one sent; this keeps the new one.
    rotate: Callable[[str], None] | None = None
    # The refresh-token flow only: the name a keeper files its newest refresh token under.
    chain: str | None = None


def refresh_token_chain(client_id: str, refresh_token: str) -> str:
    """A one-way digest naming the rotations that start from the configured refresh token:
    a keeper stores no token under a name that gives one away, and a new configured token
    (the app authorised again) names a chain of its own."""
    return hashlib.sha256(f"{client_id}\n{refresh_token}".encode()).hexdigest()


def refresh_token_grant(client_id: str, client_secret: str, refresh_token: str) -> Grant:
    form = {
        "grant_type": "refresh_token",
        "client_id": client_id,
        "client_secret": client_secret,
        "refresh_token": refresh_token,
    }
    secrets = [client_secret, refresh_token]

    def rotate(new: str) -> None:
        form["refresh_token"] = new
        if new not in secrets:
            secrets.append(new)

    return Grant(
        lambda: dict(form),
        "SALESFORCE_CLIENT_ID, SALESFORCE_CLIENT_SECRET and SALESFORCE_REFRESH_TOKEN",
        secrets,
        rotate,
        refresh_token_chain(client_id, refresh_token),
    )


def client_credentials_grant(client_id: str, client_secret: str) -> Grant:
    form = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": client_secret,
    }
    return Grant(
        lambda: dict(form),
        "SALESFORCE_CLIENT_ID, SALESFORCE_CLIENT_SECRET and SALESFORCE_LOGIN_URL (My Domain)",
        [client_secret],
    )


def jwt_audience(login_url: str) -> str:
    """``aud`` for a login URL: a sandbox's My Domain (``*.sandbox.my.salesforce.com``) or
    test.salesforce.com is test's server, any other Salesforce host production's; a host
    outside salesforce.com (a proxy, a test double) is its own audience."""
    host = (urlsplit(login_url).hostname or "").lower()
    if not (host == "salesforce.com" or host.endswith(".salesforce.com")):
        return login_url.rstrip("/")
    if host == "test.salesforce.com" or ".sandbox." in host:
        return SANDBOX_AUDIENCE
    return PRODUCTION_AUDIENCE


def jwt_bearer_grant(client_id: str, username: str, private_key: str, audience: str) -> Grant:
    """``audience``: ``jwt_audience`` of the login URL."""
    import jwt  # PyJWT: only this flow needs it

    def form() -> dict[str, str]:
        claims = {
            "iss": client_id,
            "sub": username,
            "aud": audience,
            "exp": int(time.time()) + ASSERTION_SECONDS,
        }
        return {"grant_type": JWT_BEARER, "assertion": jwt.encode(claims, private_key, "RS256")}

    return Grant(
        form,
        "SALESFORCE_CLIENT_ID, SALESFORCE_USERNAME and SALESFORCE_PRIVATE_KEY_FILE",
        [private_key],
    )


class SalesforceSession:
    """The current access token and instance URL, renewed on demand (an ``http.Credential``).

    Without a grant it holds a static ``SALESFORCE_ACCESS_TOKEN``, which cannot be renewed.
    ``keeper``: where a rotated refresh token is kept for every process (None: in memory)."""

    def __init__(
        self,
        login_url: str,
        grant: Grant | None,
        *,
        retrying: tenacity.Retrying,
        access_token: str | None = None,
        instance_url: str | None = None,
        observer: HttpObserver = UNOBSERVED,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        on_token: Callable[[str], None] = lambda token: None,
        keeper: RefreshTokenKeeper | None = None,
    ):
        self.grant = grant
        self.keeper = keeper
        self.http = VendorHttp(
            "salesforce", login_url, headers={}, retrying=retrying, observer=observer,
            timeout=timeout,
        )  # fmt: skip
        self.on_token = on_token
        self._fixed_instance = instance_url.rstrip("/") if instance_url else None
        self._token = access_token
        self._instance = self._fixed_instance
        self._organization: str | None = None
        self._lock = threading.Lock()  # one token request at a time
        self._told_kept = False  # the line saying rotated tokens are kept: once a session
        self._seen_kept: str | None = None  # the keeper's token as this session last saw it

    def instance_url(self) -> str:
        """The org's REST origin: the setting, else the token answer's (fetching one)."""
        if self._instance is None:
            self._current()
        return self._instance

    def organization_id(self) -> str | None:
        """The org's 18-character id from the token answer's identity URL (fetching a token if
        none is held yet); None for a static token, which comes without one."""
        if self.grant is None:
            return None
        self._current()
        return self._organization

    def headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self._current()}"}

    def renew(self, refused: Mapping[str, str], response: requests.Response) -> bool:
        if not _session_over(response):
            return False  # a 401 of another kind: the caller reports it as it is
        if self.grant is None:
            raise VendorAuth(
                "salesforce: the session of SALESFORCE_ACCESS_TOKEN is over and a static token "
                "cannot be renewed: set SALESFORCE_CLIENT_ID and an OAuth flow's settings"
            )
        with self._lock:
            if refused.get("Authorization") == f"Bearer {self._token}":
                self._fetch()  # nobody renewed it meanwhile
        return True

    def _current(self) -> str:
        token = self._token
        if token is not None:
            return token
        with self._lock:
            if self._token is None:  # another lane may have fetched it while we waited
                self._fetch()
            return self._token

    def _fetch(self) -> None:
        """One token request; the caller holds the lock. A refresh token the keeper keeps is
        read, sent and replaced under the keeper's lock: another process may have rotated
        it since this one last did, and the one it sent is then invalid."""
        chain = self.grant.chain if self.keeper is not None else None
        if chain is None:
            self._request()
            return
        with self.keeper.refresh_token_lock(CRM, chain):
            stored = self.keeper.refresh_token(CRM, chain)
            if stored is not None:
                self.on_token(stored)  # before anything could log it
            # Another process stored a newer one since this session last looked. An unchanged
            # one is never newer than ours: had our last save failed, ours is the only good one.
            if stored != self._seen_kept:
                self._seen_kept = stored
                if stored is not None:
                    self.grant.rotate(stored)
            rotated = self._request()
            if rotated is not None:
                self.keeper.save_refresh_token(CRM, chain, rotated)
                self._seen_kept = rotated
                if not self._told_kept:
                    self._told_kept = True
                    log.info(
                        "salesforce_refresh_token_kept",
                        setting="SALESFORCE_REFRESH_TOKEN",
                        note="the connected app rotates refresh tokens: the newest is kept in "
                        "the state store, where every worker and the next start find it",
                    )

    def _request(self) -> str | None:
        """The token request itself; the refresh token the answer rotated to, if it did."""
        answer = self.http.request(
            "POST", TOKEN_PATH, data=self.grant.form(), ok_statuses=REFUSED, read_only=True
        )
        if answer.status_code in REFUSED:
            raise VendorAuth(
                f"salesforce POST {TOKEN_PATH}: {answer.status_code} sign-in refused "
                f"({self._reason(answer)}): check {self.grant.settings}"
            )
        body = answer.json()
        token = body.get("access_token") if isinstance(body, dict) else None
        instance = body.get("instance_url") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token or not (self._fixed_instance or instance):
            err = VendorUnavailable(
                f"salesforce POST {TOKEN_PATH}: answer without access_token or instance_url"
            )
            err.safe_to_retry = True
            raise err
        self.on_token(token)
        rotated = body.get("refresh_token")
        rotated = rotated if isinstance(rotated, str) and rotated else None
        if not self.grant.rotate or rotated in self.grant.secrets:
            rotated = None  # no rotation: the one sent is still good
        if rotated is not None:
            self.on_token(rotated)
            self.grant.rotate(rotated)
        if rotated is not None and self.keeper is None:
            log.warning(
                "salesforce_refresh_token_rotated",
                setting="SALESFORCE_REFRESH_TOKEN",
                note="the connected app rotates refresh tokens: the new one is kept in this "
                "process's memory only, and the configured one no longer works after a restart "
                "or in another worker; turn rotation off for this app, or use the "
                "client-credentials or JWT bearer flow",
            )
        self._token = token
        self._instance = self._fixed_instance or str(instance).rstrip("/")
        identity = _IDENTITY.fullmatch(urlsplit(str(body.get("id") or "")).path)
        self._organization = identity[1] if identity else None
        return rotated

    def _reason(self, answer) -> str:
        """Salesforce's ``error``/``error_description``, without any secret it might quote."""
        try:
            body = read_json(answer.content)
        except Unreadable:
            body = None
        if not isinstance(body, dict):
            return "no OAuth error in the answer"
        text = ": ".join(str(body[k]) for k in ("error", "error_description") if body.get(k))
        for secret in self.grant.secrets:
            text = text.replace(secret, "[redacted]")
        return text[:200] or "no OAuth error in the answer"


def _session_over(response: requests.Response) -> bool:
    """Salesforce's 401 for a session that timed out or was revoked."""
    try:
        body = read_json(response.content)
    except Unreadable:
        return False
    errors = body if isinstance(body, list) else []
    return any(isinstance(e, dict) and e.get("errorCode") == "INVALID_SESSION_ID" for e in errors)
