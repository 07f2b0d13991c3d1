"""``provisioner check``: everything configured, tried live and read-only, one line each.

One module per area (``broker``, ``store``, ``tools``, ``crms``, ``ingress``); each check is a
function from the settings to ``Line``s (``lines``). Nothing here writes to a vendor, the
broker or the state store: a queue is only declared where it already exists, with the
arguments it should have, which changes nothing and fails when they differ. One exception:
a Salesforce sign-in that rotates the refresh token saves the new one in the store
(``crms``), since the one it spent is dead for every worker.
"""
