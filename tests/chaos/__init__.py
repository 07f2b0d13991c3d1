"""The fault-injection suite of issue 10 (``make chaos``, ``python -m tests.chaos``).

Each trial runs the real worker process against the real RabbitMQ and the fake vendors,
publishes a seeded scenario while faults are injected, lets the system settle, and checks
the invariants. Modules, one job each: ``scenario`` (what is published), ``bad_bodies``
(drawn from ``tests.strategies``), ``faults`` (the vendor fault profile), ``supervisor``
(the worker process, SIGKILLs, closed connections, the broker restart), ``broker`` (the
trial's side of the bus), ``evidence`` (reading fakes, journal and log), ``expectation``
(what should have happened, pure), ``invariants`` (pure checks), ``trial`` (the phases),
``lost_webhooks`` (the trial where the ingress is down past HubSpot's retries and a sweep
catches up), ``table`` (the report).
"""
