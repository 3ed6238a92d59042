"""Who may open a websocket: the app's own pages with a session, or a token holder."""

import importlib

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from accounts.models import ApiToken
from tests.factory import make_user, make_val
from vals.evaluations.models import Evaluation

pytestmark = pytest.mark.django_db(transaction=True)


def session_cookie(user):
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


async def connect(evaluation_id, headers):
    # Importing the ASGI module touches the database, which async code must not do directly.
    application = (await sync_to_async(importlib.import_module)("valtown.asgi")).application
    communicator = WebsocketCommunicator(application, f"/ws/evaluations/{evaluation_id}?format=json", headers=headers)
    connected, _ = await communicator.connect()
    await communicator.disconnect()
    return connected


@pytest.fixture
async def alices_evaluation():
    alice = await sync_to_async(make_user)("alice")
    val = await sync_to_async(make_val)(alice, name="foo")
    evaluation = await Evaluation.objects.acreate(val=val, val_version=0, principal=alice, status="success")
    return alice, evaluation


async def test_the_apps_own_page_connects_with_its_session(alices_evaluation):
    alice, evaluation = alices_evaluation
    cookie = await sync_to_async(session_cookie)(alice)
    headers = [(b"host", b"localhost:8000"), (b"origin", b"http://localhost:8000"), (b"cookie", f"sessionid={cookie}".encode())]
    assert await connect(evaluation.pk, headers)


@pytest.mark.parametrize("origin", [b"http://mallory-steal.web.localhost:8000", b"http://evil.example", None])
async def test_other_origins_are_refused_even_with_the_cookie(alices_evaluation, origin):
    alice, evaluation = alices_evaluation
    cookie = await sync_to_async(session_cookie)(alice)
    headers = [(b"host", b"localhost:8000"), (b"cookie", f"sessionid={cookie}".encode())]
    if origin:
        headers.append((b"origin", origin))
    assert not await connect(evaluation.pk, headers)


async def test_a_token_holder_connects_without_an_origin(alices_evaluation):
    alice, evaluation = alices_evaluation
    _, raw = await sync_to_async(ApiToken.issue)(alice, "cli", "read")
    assert await connect(evaluation.pk, [(b"host", b"localhost:8000"), (b"authorization", f"Bearer {raw}".encode())])
    assert not await connect(evaluation.pk, [(b"host", b"localhost:8000"), (b"authorization", b"Bearer vt_wrong")])
