"""An HTTP val's page runs on its own origin and never sees the app's cookies."""

import pytest

from tests.browser.conftest import log_in
from tests.factory import make_val

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SNOOPING_VAL = """\
export default (req: Request) => new Response(`<!doctype html>
<p id="sent">${(req.headers.get("cookie") ?? "").replace(/</g, "")}</p>
<p id="seen"></p>
<script>document.getElementById("seen").textContent = document.cookie || "(none)";</script>`,
  { headers: { "content-type": "text/html" } });
"""


def test_a_val_page_cannot_see_the_apps_session_or_csrf_cookie(page, live_daphne, django_user_model):
    alice = django_user_model.objects.create_user("alice", "alice@example.com", "correct horse 1")
    make_val(alice, name="snoop", type="http", code=SNOOPING_VAL)
    base = live_daphne.url
    log_in(page, live_daphne, "alice", "correct horse 1")
    cookies = {c["name"] for c in page.context.cookies(base)}
    assert {"sessionid", "csrftoken"} <= cookies

    page.goto(f"http://alice-snoop.web.localhost:{live_daphne.port}/")
    sent, seen = page.inner_text("#sent"), page.inner_text("#seen")
    for name in ("sessionid", "csrftoken"):
        assert name not in sent and name not in seen
    assert seen == "(none)"
