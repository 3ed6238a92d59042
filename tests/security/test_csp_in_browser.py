"""The Content-Security-Policy breaks nothing: the editor, Save, Run with live logs over
the websocket, an HTTP val's preview and a confirm dialog all work in a real browser,
and the browser reports no violation on the way."""

import httpx
import pytest

from tests.browser.conftest import log_in
from tests.factory import make_val
from tests.live import LiveServer, free_port

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LOGGING_VAL = """\
export default async function () {
  for (let i = 1; i <= 3; i++) {
    console.log(`tick ${i}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return "done";
}
"""


@pytest.fixture
def live_daphne(transactional_db):
    port = free_port()
    # HTTP vals' origins on this server's port, so the preview and frame-src match it.
    server = LiveServer(extra_env={"HTTP_VAL_DOMAIN": f"web.localhost:{port}"}, port=port)
    yield server
    server.stop()


def record_violations(page):
    """Every CSP violation the browser reports, as console errors or as events."""
    violations = []
    page.on("console", lambda message: "Content Security Policy" in message.text and violations.append(message.text))
    page.expose_function("reportViolation", lambda text: violations.append(text))
    page.add_init_script(
        """document.addEventListener("securitypolicyviolation",
             (e) => window.reportViolation(`${e.violatedDirective} blocked ${e.blockedURI} at ${location.pathname} from ${e.sourceFile}:${e.lineNumber}:${e.columnNumber} sample=${e.sample}`));"""
    )
    return violations


def test_the_app_works_under_its_content_security_policy(page, live_daphne, django_user_model):
    alice = django_user_model.objects.create_user("alice", "alice@example.com", "correct horse 1")
    script = make_val(alice, name="ticker", code=LOGGING_VAL)
    make_val(alice, name="site", type="http", code='export default () => new Response("<h1 id=hi>hi from a val</h1>", {headers: {"content-type": "text/html"}});')
    violations = record_violations(page)
    base = live_daphne.url

    log_in(page, live_daphne, "alice", "correct horse 1")
    assert "script-src 'self'" in page.request.get(base + "/").headers["content-security-policy"]

    # The editor loads, saves through htmx, and Run streams logs over the websocket.
    page.goto(base + script.get_absolute_url())
    page.wait_for_selector(".cm-editor")
    # Its theme is applied: the <style> element it makes carries the page's nonce.
    assert page.eval_on_selector(".cm-gutters", "e => getComputedStyle(e).backgroundColor") == "rgb(250, 250, 250)"
    page.click(".cm-content")
    page.keyboard.press("Control+End")
    page.keyboard.type("\n// edited")
    posts = []
    page.on("request", lambda request: request.method == "POST" and posts.append(request.url.split("/")[-1]))
    page.keyboard.press("Control+s")
    page.wait_for_selector("text=Saved as version 1")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector(".log-line >> text=tick 3", timeout=20_000)
    page.wait_for_selector("text=✅ Success", timeout=20_000)
    # One key press, one request: the editor's key bindings and the page's don't both fire.
    assert posts == ["save", "run"]

    # A confirm dialog comes from a static script, not an onsubmit attribute.
    page.goto(base + "/settings/secrets")
    page.fill("input[name=name]", "API_KEY")
    page.fill("textarea[name=value]", "s3cret")
    page.click("button:has-text('Save secret')")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("button:has-text('Delete')")
    assert page.locator("code", has_text="API_KEY").count() == 1
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Delete')")
    page.wait_for_selector("text=No secrets yet.")

    assert violations == []

    # An HTTP val's page previews the val from its own origin in an iframe.
    page.goto(base + "/v/alice/site", wait_until="domcontentloaded")
    frame = page.frame_locator("details.preview iframe")
    assert frame.locator("#hi").inner_text(timeout=20_000) == "hi from a val"
    # The val's own response carries none of the app's policy.
    port = live_daphne.port
    val_response = httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": f"alice-site.web.localhost:{port}"})
    assert val_response.status_code == 200 and "content-security-policy" not in val_response.headers

    # The API's interactive docs and the admin work too.
    page.goto(base + "/v1/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    page.goto(base + "/admin/login/")
    page.wait_for_selector("#login-form")

    assert violations == []
