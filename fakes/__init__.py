"""Fake vendors: Harvest, Toggl Track, Clockify, HubSpot, Pipedrive and Salesforce as real
HTTP servers that speak each vendor's documented API (auth headers, status codes,
pagination, rate limits, error shapes), kept in memory.

They are part of the product so that ``provisioner demo`` and the compose demo profile run
with no account anywhere, and the tests use the same servers. Never point a production
worker at them. Each runs alone with ``python -m fakes.<vendor> --port N``.
"""
