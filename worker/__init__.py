"""The worker: settings, topology, the consumer, retry and dead-letter policy, the CLI, and
the composition root (``worker.bootstrap``) that wires everything together."""
