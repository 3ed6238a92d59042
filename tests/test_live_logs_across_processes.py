"""With the Redis channel layer, a browser connected to one server process sees the logs
of an evaluation that runs in another."""

import asyncio
import json
import re
import time

import httpx
import pytest
import websockets
from asgiref.sync import sync_to_async
from django.test import Client

from tests.factory import make_user, make_val, ticking_val
from tests.live import LiveServer

pytestmark = pytest.mark.django_db(transaction=True)

REDIS_URL = "redis://127.0.0.1:6379/14"

TICKING_VAL = ticking_val(15)


@pytest.fixture
def two_servers():
    servers = [LiveServer({"REDIS_URL": REDIS_URL}), LiveServer({"REDIS_URL": REDIS_URL})]
    yield servers
    for server in servers:
        server.stop()


def session_cookie_for(user):
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


async def test_logs_cross_from_the_running_process_to_the_subscribed_one(two_servers):
    alice = await sync_to_async(make_user)("alice")
    val = await sync_to_async(make_val)(alice, name="ticker", code=TICKING_VAL)
    session = await sync_to_async(session_cookie_for)(alice)
    watcher, worker = two_servers

    async with httpx.AsyncClient(base_url=worker.url, cookies={"sessionid": session}) as http:
        await http.get(f"/v/alice/{val.name}")
        response = await http.post(
            f"/vals/{val.pk}/run", headers={"X-CSRFToken": http.cookies["csrftoken"], "HX-Request": "true"}
        )
    evaluation_id = re.search(r"/ws/evaluations/(\d+)", response.text).group(1)

    ws_url = watcher.url.replace("http://", "ws://") + f"/ws/evaluations/{evaluation_id}?format=json"
    headers = {"Cookie": f"sessionid={session}", "Origin": watcher.url}
    arrivals = []
    async with websockets.connect(ws_url, additional_headers=headers) as socket:
        while True:
            message = json.loads(await asyncio.wait_for(socket.recv(), timeout=20))
            if message["type"] == "result":
                break
            arrivals.append((time.monotonic(), message["message"]))
    assert [text for _, text in arrivals] == [f"line {i}" for i in range(15)]
    assert message["status"] == "success"
    # Most lines came live over Redis, not from the database at the end.
    assert arrivals[-1][0] - arrivals[len(arrivals) // 2][0] > 0.4
