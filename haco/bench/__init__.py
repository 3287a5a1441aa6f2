"""`haco bench`: measurements of a cluster."""
