"""Why a request is refused, each with the status the contract gives it. A refused request
publishes nothing. The reason is one line for the sender; it never quotes a secret or a
signature, and only ever a short, printable piece of the body.

    Refused
    ├── Unauthorized   401  missing, wrong, forged or expired credentials or signature
    ├── Malformed      400  not the sender's shape (not JSON or XML, bad fields, too deep)
    ├── TooLarge       413  over PROVISIONER_INGRESS_MAX_BODY; read no further, close
    ├── TooSlow        408  the request was not in within PROVISIONER_INGRESS_READ_TIMEOUT; close
    └── Unavailable    503  the broker is away or refused a confirm: retry later (Retry-After)
"""

from __future__ import annotations

RETRY_AFTER_SECONDS = 10
MAX_REASON_CHARS = 300


class Refused(Exception):
    status = 400

    def __init__(self, reason: str, headers: dict[str, str] | None = None):
        # One printable line whatever a sender's text put into it (a key with a newline, a
        # control character, a lone surrogate): it becomes a response line and a log field.
        reason = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in reason)
        super().__init__(reason[:MAX_REASON_CHARS])
        self.reason = reason[:MAX_REASON_CHARS]
        self.headers = headers or {}


class Unauthorized(Refused):
    status = 401


class Malformed(Refused):
    status = 400


class TooLarge(Refused):
    status = 413

    def __init__(self, reason: str):
        super().__init__(reason, {"Connection": "close"})


class TooSlow(Refused):
    status = 408

    def __init__(self, reason: str):
        super().__init__(reason, {"Connection": "close"})


class Unavailable(Refused):
    status = 503

    def __init__(self, reason: str):
        super().__init__(reason, {"Retry-After": str(RETRY_AFTER_SECONDS)})
