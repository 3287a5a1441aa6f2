"""The results store (its own DuckDB file, sandboxed SQL) and the feed that fills it from applied entries."""
