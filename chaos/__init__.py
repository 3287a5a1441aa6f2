"""chaos: a fault-injection harness that checks haco's guarantees (`python -m chaos run`).

An edge like the CLI: it drives real replica and worker processes and talks to them only through
`haco.client` and their log files; it never imports the server or the replication layer.
"""
