"""haco: a highly available job coordinator."""

__version__ = "0.1.0"
