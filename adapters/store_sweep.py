"""The CRM sweep's cursor (``provisioner crm reconcile``): where the last successful sweep
of a CRM account ended, so that the next one reads only what changed since.

A mixin of ``adapters.store.SqlStore``.
"""

from __future__ import annotations

from datetime import datetime

SWEEP_SQL = {
    "sweep_cursor": "SELECT swept_until FROM sweep_cursors WHERE crm = :crm AND account = :account",
    # A sweep that ends earlier than the one stored (begun earlier, confirmed later) never
    # moves the cursor back.
    "save_sweep_cursor": """INSERT INTO sweep_cursors (crm, account, swept_until)
        VALUES (:crm, :account, :until)
        ON CONFLICT (crm, account) DO UPDATE SET swept_until = CASE
            WHEN excluded.swept_until > sweep_cursors.swept_until
            THEN excluded.swept_until ELSE sweep_cursors.swept_until END""",
}


class StoreSweepCursor:
    # -- the CRM sweep's cursor (``provisioner crm reconcile``) -----------------------------
    def sweep_cursor(self, crm: str, account: str) -> datetime | None:
        """Where the last successful sweep of this CRM account ended (None: never swept)."""
        row = self._one("sweep_cursor", {"crm": crm, "account": account})
        return self.dialect.unstamp(row[0]) if row else None

    def save_sweep_cursor(self, crm: str, account: str, until: datetime) -> None:
        """A sweep up to ``until`` is done (every publish confirmed); a later end stands."""
        params = {"crm": crm, "account": account, "until": self.dialect.stamp(until)}
        self._write_one("save_sweep_cursor", params)
