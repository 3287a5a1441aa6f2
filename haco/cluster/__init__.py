"""Local clusters of child processes: the one launcher behind haco up, haco demo, haco bench, chaos and the tests."""
