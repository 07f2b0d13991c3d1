"""The ``provisioner`` command line: what people and scripts run.

One module a command group (``rules``, ``clients``, ``dlq``, ``ingress``, ...), ``main`` for
the parser, and ``output`` for how every command prints and ends. The consumer runtime in
``worker`` never imports from here; the commands import the runtime, never the reverse.
"""
