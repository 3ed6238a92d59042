"""Whatever users and their vals write (bios, readmes, code, token names, blob keys,
arguments, log lines, return values, errors, search queries) reaches every page as text.

Two checks on every page: the payloads never appear raw, and the parsed page has no
script the app didn't write. The templates have no inline <script>, no on*= attribute
and no javascript: URL at all (the Content-Security-Policy forbids them), so finding
any of them in a page means something was injected.
"""

from html.parser import HTMLParser

import pytest
from django.template.loader import render_to_string
from django.test import Client

from accounts.models import ApiToken
from tests.conftest import HTMX
from tests.factory import make_user, make_val
from vals.blob import Blob
from vals.evaluations.models import Evaluation

PAYLOAD = '"><img src=x onerror=alert(1)><script>alert(2)</script>\'><svg onload=alert(3)>'
RAW = ["<script>alert(2)</script>", "<img src=x onerror=alert(1)>", "<svg onload=alert(3)>"]
README = f"""# Hello

{PAYLOAD}

<a href="javascript:alert(4)">a link</a> [another](javascript:alert(5))
<iframe src="https://evil.example"></iframe><style>body{{display:none}}</style>
<div onclick="alert(6)" style="position:fixed">click</div>

`{PAYLOAD}`
"""


class ScriptFinder(HTMLParser):
    """Collects everything in a page that could run script."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "script" and not attributes.get("src"):
            self.found.append("inline <script>")
        if tag in ("iframe", "object", "embed", "style") and attributes.get("src", "").startswith("https://evil"):
            self.found.append(f"<{tag}> from evil")
        if tag == "style":
            self.found.append("<style>")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}>")
            if name in ("href", "src", "action", "formaction") and (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}=javascript:>")


def assert_no_injection(response):
    assert response.status_code == 200, response.status_code
    html = response.content.decode()
    for raw in RAW:
        assert raw not in html
    finder = ScriptFinder()
    finder.feed(html)
    assert finder.found == []


@pytest.fixture
def world(db):
    alice = make_user("alice", bio=PAYLOAD)
    bob = make_user("bob")
    val = make_val(alice, name="hello", code=f"// {PAYLOAD}\nexport default () => {PAYLOAD!r};\n", readme=README, type="cron")
    val.save_version(f"// changed {PAYLOAD}\nexport default () => 1;\n")
    fork = val.fork_for(bob)
    ApiToken.issue(alice, PAYLOAD[:100])
    Blob.objects.create(owner=alice, key=PAYLOAD, size=1, is_text=True, path="unused")
    logs = [{"seq": n, "level": "log", "message": PAYLOAD, "ts": 1.0} for n in range(2)]
    response = {"status": 200, "status_text": PAYLOAD, "headers": {PAYLOAD: PAYLOAD}, "body": PAYLOAD, "body_encoding": "text"}
    evaluations = [
        Evaluation.objects.create(val=val, val_version=0, principal=alice, status="success", args=[PAYLOAD], logs=logs, result={"type": "json", "value": {PAYLOAD: PAYLOAD}}),
        Evaluation.objects.create(val=val, val_version=0, principal=alice, status="success", logs=logs, result={"type": "response", "value": response}),
        Evaluation.objects.create(
            val=val, val_version=0, principal=alice, status="error", trigger="cron", logs=logs,
            error={"name": PAYLOAD, "message": PAYLOAD, "stack": PAYLOAD}, kill_reason=PAYLOAD[:200],
        ),
        Evaluation.objects.create(val=val, val_version=0, principal=alice, status="success", trigger="http", http_method="GET", http_path="/" + PAYLOAD, http_status=200),
    ]
    client = Client()
    client.force_login(alice)
    return {"alice": alice, "val": val, "fork": fork, "evaluations": evaluations, "client": client}


SHOWN = "&lt;script&gt;alert(2)&lt;/script&gt;"


def pages(world):
    """(url, whether the payload is on that page as text)."""
    val, evaluations = world["val"], world["evaluations"]
    return [
        ("/", True),  # the readme's summary
        (f"/?q={PAYLOAD}", True),
        ("/?q=Hello", True),
        ("/u/alice", True),  # the bio
        ("/u/bob", True),  # the fork's readme
        ("/v/alice/hello", True),
        ("/v/alice/hello?v=0", True),
        ("/v/alice/hello/history", False),
        ("/v/alice/hello/diff?a=0&b=1", True),
        ("/v/alice/hello/evaluations", False),
        ("/v/bob/hello", True),
        ("/settings/profile", True),
        ("/settings/tokens", True),
        ("/settings/blobs", True),
        ("/settings/evaluations", False),
        (f"/settings/evaluations?val={PAYLOAD}&status={PAYLOAD}&trigger={PAYLOAD}", True),
        *[(f"/evaluations/{evaluation.pk}", evaluation.trigger != "http") for evaluation in evaluations],
        (f"/accounts/login/?next={PAYLOAD}", True),
        (f"/accounts/signup/?next={PAYLOAD}", True),
        (f"/vals/{val.pk}/delete", False),
    ]


def test_no_page_lets_a_payload_run(world):
    for url, shown in pages(world):
        seen = False
        for client in (world["client"], Client()):
            response = client.get(url)
            if response.status_code == 302:  # a settings page for the anonymous visitor, or login for alice
                continue
            assert_no_injection(response)
            seen = seen or SHOWN in response.content.decode()
        assert seen == shown, url


def test_htmx_fragments_let_no_payload_run(world):
    client = world["client"]
    assert_no_injection(client.get(f"/?q={PAYLOAD}", **HTMX))
    assert_no_injection(client.get("/settings/evaluations", **HTMX))
    assert_no_injection(client.post(f"/vals/{world['val'].pk}/like", **HTMX))
    assert_no_injection(client.post(f"/vals/{world['val'].pk}/schedule", {"schedule": PAYLOAD}, **HTMX))


def test_save_errors_echo_bad_input_as_text(world):
    val = world["val"]
    form = {"name": PAYLOAD, "type": PAYLOAD, "privacy": PAYLOAD, "code": PAYLOAD, "readme": README}
    assert_no_injection(world["client"].post(f"/vals/{val.pk}/save", form, **HTMX))
    response = world["client"].post(f"/vals/{val.pk}/save", form)
    assert response.status_code == 400
    response.status_code = 200
    assert_no_injection(response)


def test_a_saved_readme_is_sanitised_and_its_code_kept_as_text(world):
    val = world["val"]
    form = {"name": "hello", "type": "script", "privacy": "public", "code": PAYLOAD, "readme": README}
    world["client"].post(f"/vals/{val.pk}/save", form, **HTMX)
    response = Client().get("/v/alice/hello")
    assert_no_injection(response)
    html = response.content.decode()
    assert "<h1>Hello</h1>" in html  # Markdown still renders
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html  # the code, shown as text


def test_live_log_lines_and_results_sent_over_the_websocket_are_escaped(world):
    """The consumer renders these fragments for every line and result it pushes."""
    line = {"seq": 0, "level": "log", "message": PAYLOAD, "ts": 1.0}
    fragments = [render_to_string("evaluations/_log_line_oob.html", {"line": line, "evaluation_id": 1})]
    for evaluation in world["evaluations"]:
        fragments.append(render_to_string("evaluations/_result_oob.html", {"evaluation": evaluation}))
    for html in fragments:
        response = type("Fragment", (), {"status_code": 200, "content": html.encode()})
        assert_no_injection(response)


def test_raw_source_is_never_served_as_html(world):
    response = Client().get("/v/alice/hello.ts")
    assert response["Content-Type"].startswith("application/typescript")
    assert response["X-Content-Type-Options"] == "nosniff"
