# The browser tests' Chromium fixtures, for the CSP test here.
from tests.browser.conftest import browser, page  # noqa: F401
