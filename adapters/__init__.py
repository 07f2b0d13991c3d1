"""The outside world: the timesheet tools over HTTP and the state store.

Adapters translate everything they meet into ``schemas.errors``; nothing above them ever
sees a ``requests`` exception or a vendor status code.
"""
