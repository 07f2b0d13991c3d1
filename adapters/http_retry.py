"""The retry policy of ``adapters.http.VendorHttp``, and the wait it takes between tries.

Retry policy (a ``tenacity.Retrying`` built in the composition root, ``wait_none`` in tests):
only ``VendorUnavailable`` is retried, and a request that may have been processed (a POST
that timed out or got a 5xx) is never re-sent here: the message-level retry that follows
first looks the object up by its marker, so a create is never made twice.
"""

from __future__ import annotations

import tenacity

# Seconds we pause an account in-process on a Retry-After; a longer wait is the delayed message
# retry's (``worker.processing``). Set per policy (``default_retrying``), read by ``VendorHttp``.
HOLD_OFF_CEILING = 60.0


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
