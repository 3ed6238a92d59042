import pytest
from django.core.cache import cache

# The browser tests' Chromium fixtures, for the CSP test here.
from tests.browser.conftest import browser, page  # noqa: F401


@pytest.fixture
def fresh_rate_limits():
    """Sign-in rate limits start from zero: their counters live in the cache, which
    outlives a test's database transaction."""
    cache.clear()
    yield
    cache.clear()
