"""HTTP vals through a real daphne server: streaming, limits, and the app's cookies."""

import time

import httpx
import pytest

from tests.factory import make_user, make_val
from tests.live import LiveServer, quiet_server_before_flush  # noqa: F401 (an autouse fixture)

pytestmark = pytest.mark.django_db(transaction=True)

SSE_VAL = """\
export default (req: Request) => {
  let n = 0;
  const body = new ReadableStream({
    async pull(controller) {
      await new Promise((r) => setTimeout(r, 150));
      controller.enqueue(new TextEncoder().encode(`data: event ${n}\\n\\n`));
      if (++n === 6) controller.close();
    },
  });
  return new Response(body, { headers: { "content-type": "text/event-stream" } });
};
"""


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    live = LiveServer({"EVALUATION_TIMEOUT_SECONDS": "2", "HTTP_VAL_MAX_BODY_BYTES": "1000"})
    yield live
    live.stop()


def val_url(server, label, path="/"):
    return f"http://127.0.0.1:{server.port}{path}", {"Host": f"{label}.web.localhost:{server.port}"}


def test_server_sent_events_arrive_as_they_are_produced(server):
    make_val(make_user("alice"), name="events", type="http", code=SSE_VAL)
    url, headers = val_url(server, "alice-events")
    arrivals = []
    with httpx.stream("GET", url, headers=headers, timeout=20) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data:"):
                arrivals.append((time.monotonic(), line))
    assert [text for _, text in arrivals] == [f"data: event {n}" for n in range(6)]
    assert arrivals[-1][0] - arrivals[0][0] > 0.5, "the events came all at once"


def test_a_handler_that_runs_too_long_gives_504(server):
    make_val(make_user("alice"), name="slow", type="http", code="export default () => new Promise(() => {});")
    url, headers = val_url(server, "alice-slow")
    assert httpx.get(url, headers=headers, timeout=20).status_code == 504


def test_a_body_over_the_limit_gives_413(server):
    make_val(make_user("alice"), name="upload", type="http", code="export default async (req) => new Response(String((await req.arrayBuffer()).byteLength));")
    url, headers = val_url(server, "alice-upload")
    assert httpx.post(url, headers=headers, content=b"x" * 999, timeout=20).text == "999"
    assert httpx.post(url, headers=headers, content=b"x" * 5000, timeout=20).status_code == 413


def test_redirects_pass_through_unchanged(server):
    code = 'export default () => Response.redirect("https://example.com/elsewhere", 307);'
    make_val(make_user("alice"), name="moved", type="http", code=code)
    url, headers = val_url(server, "alice-moved")
    response = httpx.get(url, headers=headers, timeout=20, follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "https://example.com/elsewhere"
