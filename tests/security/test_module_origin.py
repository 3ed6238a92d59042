"""Sandboxes import from an origin that serves nothing but modules (finding 8).

Restricted Library Mode's Worker could import anything the public site served, and
/v1/run/... is JSON: `import x from "http://localhost:8000/v1/run/bob.x" with { type:
"json" }` started a run that no api() allowance counted, so one evaluation ran 30 API
runs (cap 20) and a chain reached depth 4 (cap 3). Modules now come from a port of
their own that answers module paths alone, and only there is an import token honoured.
"""

import httpx
import pytest
from django.test import AsyncClient

from runtime import grants
from tests.factory import make_user, make_val
from tests.live import LiveServer, quiet_server_before_flush  # noqa: F401 (an autouse fixture)
from vals.evaluations.models import Evaluation
from vals.models import Val
from valtown.module_origin import SCOPE_KEY

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    live = LiveServer({"RUNTIME_POOL_SIZE": "5", "EMBEDDED_SCHEDULER": "false"})
    yield live
    live.stop()


def on_module_origin(server, path, method="GET"):
    return httpx.request(method, f"http://127.0.0.1:{server.module_port}{path}", timeout=30)


def test_the_module_origin_serves_modules_and_nothing_else(server):
    bob = make_user("bob")
    make_val(bob, name="lib", code="export const x = 1;\n")

    assert on_module_origin(server, "/v/bob/lib.ts").text == "export const x = 1;\n"
    assert on_module_origin(server, "/std/email.ts").status_code == 200
    for path in ["/", "/v1/me", "/v1/run/bob.lib", "/v1/eval/1", "/accounts/login/", "/v/bob/lib", "/admin/", "/static/"]:
        response = on_module_origin(server, path)
        assert (response.status_code, response.text) == (404, "Only modules are served here.\n"), path
    assert on_module_origin(server, "/v/bob/lib.ts", method="POST").status_code == 404
    assert not Evaluation.objects.exists()


def test_the_site_still_serves_modules_to_browsers_and_deno_run(server):
    make_val(make_user("bob"), name="lib", code="export const x = 1;\n")
    assert httpx.get(f"{server.url}/v/bob/lib.ts", timeout=30).text == "export const x = 1;\n"




def test_neither_a_library_nor_a_val_can_start_runs_by_importing_the_api(server):
    alice, bob = make_user("alice"), make_user("bob")
    counter = make_val(bob, name="counter", code="export default () => 1;\n")
    site_port, module_port = server.port, server.module_port
    make_val(
        bob,
        name="sneaky",
        code=f"""export async function tryImports() {{
  const out: string[] = [];
  for (const url of ["http://localhost:{module_port}/v1/run/bob.counter", "http://localhost:{site_port}/v1/run/bob.counter"]) {{
    try {{ await import(url, {{ with: {{ type: "json" }} }}); out.push("imported"); }} catch (error) {{ out.push("refused"); }}
  }}
  return out;
}}
""",
    )
    app = make_val(
        alice,
        name="app",
        code=f"""import {{ tryImports }} from "/v/bob/sneaky.ts";
export default async () => {{
  const mine: string[] = [];
  for (const url of ["http://127.0.0.1:{module_port}/v1/run/bob.counter", "http://127.0.0.1:{module_port}/v1/eval/1"]) {{
    try {{ await import(url, {{ with: {{ type: "json" }} }}); mine.push("imported"); }} catch (error) {{ mine.push("refused"); }}
  }}
  return {{ library: await tryImports(), mine }};
}};
""",
    )

    body = server.run(alice, app)

    assert body["status"] == "success", body
    assert body["result"]["value"] == {"library": ["refused", "refused"], "mine": ["refused", "refused"]}
    assert not Evaluation.objects.filter(val=counter).exists()


class OnModuleOrigin(AsyncClient):
    """Requests as the module origin's listener passes them to the app."""

    def _base_scope(self, **request):
        return {**super()._base_scope(**request), SCOPE_KEY: True}


async def test_an_import_token_is_honoured_on_the_module_origin_only():
    from asgiref.sync import sync_to_async

    alice = await sync_to_async(make_user)("alice")
    await sync_to_async(make_val)(alice, name="diary", code="export const secret = 1;\n", privacy=Val.Privacy.PRIVATE)
    token = grants.new_token()
    grants.grant(token, {"principal_id": alice.pk})
    try:
        headers = {"Authorization": f"Bearer {token}"}
        assert (await OnModuleOrigin().get("/v/alice/diary.ts", headers=headers)).status_code == 200
        assert (await AsyncClient().get("/v/alice/diary.ts", headers=headers)).status_code == 404
    finally:
        grants.revoke(token)


# Mail is another way for a run to start one: a user whose own address is their email
# val's gets every email() of theirs delivered to it. It is counted as api() is.

CHAINED = """\
export default async () => {
  const call = (globalThis as any)[Symbol.for("valtown.host.call")];
  await call("email.send", { subject: "again", text: "and again" });
  return "sent";
};
"""


def mail_sent_by_a_val(outbox_message):
    return outbox_message.message().as_bytes()


async def test_a_chain_of_vals_mailing_each_other_stops_where_api_calls_would(mailoutbox):
    from asgiref.sync import sync_to_async

    from vals.capabilities import ApiCalls
    from vals.evaluations import runner
    from vals.inbound_email import InvalidEmail, deliver

    alice = await sync_to_async(make_user)("alice")
    alice.email = "alice.loop@localhost"
    await alice.asave()
    loop = await sync_to_async(make_val)(alice, name="loop", type="email", code=CHAINED)

    # The first run: the mail it sends says it is one run down a chain.
    first = await runner.finished(await runner.start(alice, loop, [{}], trigger=Evaluation.Trigger.EMAIL))
    assert first.result["value"] == "sent", first.error
    depths = [mailoutbox[-1].extra_headers["X-Valtown-Chain-Depth"]]
    assert mailoutbox[-1].extra_headers["Auto-Submitted"] == "auto-generated"

    # Each delivery runs the val one level deeper, until api()'s limit.
    for _ in range(ApiCalls.max_depth()):
        (evaluation,) = await deliver(mail_sent_by_a_val(mailoutbox[-1]))
        assert (await runner.finished(evaluation)).status == "success"
        depths.append(mailoutbox[-1].extra_headers["X-Valtown-Chain-Depth"])
    with pytest.raises(InvalidEmail, match="at most 3 levels of vals starting vals"):
        await deliver(mail_sent_by_a_val(mailoutbox[-1]))

    assert depths == ["1", "2", "3", "4"]
    assert await Evaluation.objects.filter(val=loop).acount() == 1 + ApiCalls.max_depth()
