"""Live logs over the websocket: progressive, and only for the evaluation's principal."""

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from tests.factory import make_user, make_val, ticking_val
from valtown.routing import websocket_urlpatterns
from vals.evaluations import runner

pytestmark = pytest.mark.django_db(transaction=True)

TICKING_VAL = ticking_val(20)


def connect_as(user, evaluation_id, query=""):
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/evaluations/{evaluation_id}{query}")
    communicator.scope["user"] = user
    return communicator


@pytest.fixture
def people():
    return {"alice": make_user("alice"), "bob": make_user("bob")}


async def test_lines_arrive_while_the_val_runs_not_all_at_the_end(people):
    val = await sync_to_async(make_val)(people["alice"], name="ticker", code=TICKING_VAL)
    evaluation = await runner.start(people["alice"], val, [])
    communicator = connect_as(people["alice"], evaluation.pk, "?format=json")
    connected, _ = await communicator.connect()
    assert connected
    arrivals = []
    while True:
        message = await communicator.receive_json_from(timeout=15)
        if message["type"] == "result":
            break
        arrivals.append((time.monotonic(), message["message"]))
    await runner.wait_for_all()
    assert [text for _, text in arrivals] == [f"line {i}" for i in range(20)]
    spread = arrivals[-1][0] - arrivals[0][0]
    assert spread > 1.2, f"lines arrived within {spread:.2f}s: they were not streamed"
    assert message["status"] == "success" and message["result"]["value"] == "done"


async def test_the_browser_gets_html_fragments_for_htmx(people):
    val = await sync_to_async(make_val)(people["alice"], name="hello", code='console.log("<b>hi</b>");')
    evaluation = await runner.start(people["alice"], val, [])
    communicator = connect_as(people["alice"], evaluation.pk)
    await communicator.connect()
    fragments = []
    while True:
        output = await communicator.receive_output(timeout=15)
        if output["type"] == "websocket.close":
            break
        fragments.append(output["text"])
    await runner.wait_for_all()
    assert f'id="log-lines-{evaluation.pk}" hx-swap-oob="beforeend"' in fragments[0]
    assert "&lt;b&gt;hi&lt;/b&gt;" in fragments[0]
    assert "✅" in fragments[-1] and 'hx-swap-oob="outerHTML"' in fragments[-1]


async def test_a_late_subscriber_still_gets_every_line(people):
    val = await sync_to_async(make_val)(people["alice"], name="quick", code='for (let i = 0; i < 5; i++) console.log("l" + i);')
    evaluation = await runner.start(people["alice"], val, [])
    await runner.wait_for_all()
    communicator = connect_as(people["alice"], evaluation.pk, "?format=json")
    await communicator.connect()
    messages = [await communicator.receive_json_from(timeout=5) for _ in range(6)]
    assert [m.get("message") for m in messages[:5]] == [f"l{i}" for i in range(5)]
    assert messages[5]["type"] == "result"


async def test_a_subscriber_joining_mid_run_gets_every_line_once_and_in_order(people):
    # Some lines were published before the socket joined and are not stored yet: they
    # come from the database at the next flush, the later ones live, with no repeats.
    val = await sync_to_async(make_val)(people["alice"], name="ticker", code=TICKING_VAL)
    evaluation = await runner.start(people["alice"], val, [])
    await asyncio.sleep(0.55)
    communicator = connect_as(people["alice"], evaluation.pk, "?format=json")
    await communicator.connect()
    texts = []
    while (message := await communicator.receive_json_from(timeout=15))["type"] == "log":
        texts.append(message["message"])
    await runner.wait_for_all()
    assert texts == [f"line {i}" for i in range(20)]
    assert message["status"] == "success"


async def test_nobody_else_may_subscribe_not_even_the_author(people):
    val = await sync_to_async(make_val)(people["alice"], name="pub", code=TICKING_VAL)
    evaluation = await runner.start(people["bob"], val, [])
    for intruder in (people["alice"], await sync_to_async(make_user)("carol")):
        connected, code = await connect_as(intruder, evaluation.pk).connect()
        assert not connected
    from django.contrib.auth.models import AnonymousUser

    connected, _ = await connect_as(AnonymousUser(), evaluation.pk).connect()
    assert not connected
    connected, _ = await connect_as(people["bob"], evaluation.pk).connect()
    assert connected
    await runner.wait_for_all()


async def test_an_unknown_evaluation_is_refused(people):
    connected, _ = await connect_as(people["alice"], 999999).connect()
    assert not connected
    await asyncio.sleep(0)
