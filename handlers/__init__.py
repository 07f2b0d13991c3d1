"""The business: what each inbound event does to a project and its offerings.

Imports ``schemas`` only; the outside world comes in through the ports in ``handlers.ports``.
"""
