"""How Clockify's ids and names are read, for both rooms of the Clockify adapter
(``adapters.clockify``, ``adapters.clockify_commercial``): ids are 24 hex digits, checked
before they are sent, and two names count as the same when they fold alike.
"""

from __future__ import annotations

import re

from schemas.errors import TimesheetNotFound

_ID = re.compile(r"[0-9a-fA-F]{24}")


def folded(name: str) -> str:
    """The form in which two client names count as the same."""
    return " ".join(name.split()).casefold()


def _checked(project_id: str) -> str:
    """Clockify answers a malformed id with 400, which also means other refusals: a
    malformed id is caught here, so that a 400 from the server is never "not found"."""
    if not _ID.fullmatch(project_id):
        raise TimesheetNotFound(f"clockify project ids are 24 hex digits, got {project_id[:40]!r}")
    return project_id
