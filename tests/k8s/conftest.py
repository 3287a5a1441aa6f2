"""The integration harness's fixtures, for the tests here that start real clusters."""

from tests.integration.conftest import cluster_factory, pytest_runtest_makereport

__all__ = ["cluster_factory", "pytest_runtest_makereport"]
