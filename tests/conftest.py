import pytest
from django.test import Client

from tests.factory import make_user


@pytest.fixture
def alice(db):
    return make_user("alice")


@pytest.fixture
def bob(db):
    return make_user("bob")


@pytest.fixture
def alice_client(alice):
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def bob_client(bob):
    client = Client()
    client.force_login(bob)
    return client


@pytest.fixture
def anonymous_client(db):
    return Client()


HTMX = {"HTTP_HX_REQUEST": "true"}


def pytest_collection_modifyitems(items):
    """Browser tests run last, so their Playwright loop never meets an asyncio test."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
