"""The one failure tree. Adapters translate vendor and library errors into it; handlers raise
it; the consumer maps each branch to broker actions (see ``worker.consumer``).

    ProvisionerError                 code, message, retryable, dead_letter
    ├── Unreadable                   poison: not JSON, not a CloudEvent, unknown type, bad data,
    │                                too large. Dead-lettered at once; no outcome event.
    ├── Permanent                    the input or the tool said no; a retry cannot help.
    │     client_mismatch, timesheet_not_found, invalid_timesheet_reference,
    │     unknown_offering, already_linked, team_member_missing  -> timesheet.failed, acked
    │     client_ambiguous, vendor_rejected, vendor_auth,        -> timesheet.failed, dead letter
    │     crm_record_not_found
    └── Transient                    may work later: delayed redelivery, then dead letter.
          vendor_unavailable (timeouts, 5xx, throttling), project_not_active

Messages never carry credentials: adapters build them from status codes and vendor error
text only, never from request headers or URLs with tokens.
"""

from __future__ import annotations

from enum import StrEnum


class FailureCode(StrEnum):
    CLIENT_AMBIGUOUS = "client_ambiguous"
    CLIENT_MISMATCH = "client_mismatch"
    TIMESHEET_NOT_FOUND = "timesheet_not_found"
    INVALID_TIMESHEET_REFERENCE = "invalid_timesheet_reference"
    UNKNOWN_OFFERING = "unknown_offering"
    ALREADY_LINKED = "already_linked"
    TEAM_MEMBER_MISSING = "team_member_missing"
    PROJECT_NOT_ACTIVE = "project_not_active"
    VENDOR_REJECTED = "vendor_rejected"
    VENDOR_AUTH = "vendor_auth"
    VENDOR_UNAVAILABLE = "vendor_unavailable"
    CRM_RECORD_NOT_FOUND = "crm_record_not_found"
    INTERNAL_ERROR = "internal_error"
    WORKER_CRASHED = "worker_crashed"


# The contract's "dead-lettered" column: these need a person once retries (if any) are spent.
DEAD_LETTERED = frozenset(
    {
        FailureCode.CLIENT_AMBIGUOUS,
        FailureCode.PROJECT_NOT_ACTIVE,
        FailureCode.VENDOR_REJECTED,
        FailureCode.VENDOR_AUTH,
        FailureCode.VENDOR_UNAVAILABLE,
        FailureCode.CRM_RECORD_NOT_FOUND,
        FailureCode.INTERNAL_ERROR,
        FailureCode.WORKER_CRASHED,
    }
)


class UnreadableCode(StrEnum):
    TOO_LARGE = "message_too_large"
    NOT_JSON = "not_json"
    NOT_CLOUDEVENT = "invalid_envelope"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_DATA = "invalid_data"


class ProvisionerError(Exception):
    """Base of the tree; ``code`` is what the outcome event and dead-letter headers carry."""

    retryable = False

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = str(code)
        self.message = message

    @property
    def dead_letter(self) -> bool:
        return self.code in DEAD_LETTERED

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class Unreadable(ProvisionerError):
    """The message cannot be read at all; it goes to the dead-letter queue untouched."""

    @property
    def dead_letter(self) -> bool:
        return True


class Permanent(ProvisionerError):
    """The input or the tool said no; retrying the same request cannot succeed."""


class Transient(ProvisionerError):
    """A later attempt may succeed: the message is redelivered after a delay."""

    retryable = True


class VendorUnavailable(Transient):
    """Timeouts, 5xx or throttling. ``retry_after`` is the vendor's hint in seconds, if any."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(FailureCode.VENDOR_UNAVAILABLE, message)
        self.retry_after = retry_after


class VendorRejected(Permanent):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(FailureCode.VENDOR_REJECTED, message)
        self.status = status


class VendorAuth(Permanent):
    def __init__(self, message: str):
        super().__init__(FailureCode.VENDOR_AUTH, message)


class TimesheetNotFound(Permanent):
    def __init__(self, message: str):
        super().__init__(FailureCode.TIMESHEET_NOT_FOUND, message)


class InvalidReference(Permanent):
    def __init__(self, message: str):
        super().__init__(FailureCode.INVALID_TIMESHEET_REFERENCE, message)


class CrmRecordNotFound(Permanent):
    """The CRM has no such deal: deleted since its webhook was sent. A person decides what
    becomes of its project."""

    def __init__(self, message: str):
        super().__init__(FailureCode.CRM_RECORD_NOT_FOUND, message)
