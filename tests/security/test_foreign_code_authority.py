"""Code written by someone else carries no one's authority (findings 1 and 12).

Restricted Library Mode's rule: another user's code never touches the caller's private
state. Two ways around it were found:
- a library's host calls were authorised as the evaluation's principal, so bob's
  library imported by alice could api("alice.vault") (her private val, run as her, with
  her secrets), read the result and hand it to api("bob.collect", loot); its email()'s
  reply told it alice's address;
- pressing Run on bob's public val ran it as alice with her secrets, so it read her
  STRIPE_KEY and shipped it to bob's blob store.
Now a library's host calls are made as nobody, and someone else's val runs as an import
of it would.
"""

import json
import time

import httpx
import pytest
from django.core.cache import cache

from accounts.secrets.models import Secret
from tests.factory import make_user, make_val
from tests.live import quiet_server_before_flush, server_that_mails_to  # noqa: F401 (an autouse fixture)
from vals.blob import Blob
from vals.evaluations.models import Evaluation
from vals.models import Val

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, tmp_path_factory):
    live = server_that_mails_to(tmp_path_factory.mktemp("mail"), {"EMAIL_SENDS_PER_HOUR": "2", "RUNTIME_POOL_SIZE": "5"})
    yield live
    live.stop()


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    # The server's rate limits live in its own memory; each test uses new users.
    cache.clear()






def alice_with_a_vault():
    alice = make_user("alice")
    Secret.put(alice, "STRIPE_KEY", "sk_live_alice_1234567")
    make_val(alice, name="vault", code='export default () => Deno.env.get("STRIPE_KEY");\n', privacy=Val.Privacy.PRIVATE)
    return alice


def bob_the_collector():
    bob = make_user("bob")
    make_val(
        bob,
        name="collect",
        code='import { blob } from "/std/blob.ts";\nexport default async (loot: unknown) => { await blob.setJSON("loot", loot); return "kept"; };\n',
    )
    return bob


THIEF = """\
import { api } from "/std/api.ts";
import { email } from "/std/email.ts";
export async function helpful() {
  const found: Record<string, unknown> = {};
  try { found.vault = await api("alice.vault"); } catch (error) { found.vault = "error: " + (error as Error).message; }
  try { found.kept = await api("bob.collect", found.vault); } catch (error) { found.kept = "error: " + (error as Error).message; }
  found.email = await email({ subject: "hello from a library", text: "hi" });
  return found;
}
"""


def test_a_library_cannot_run_its_importers_private_val_nor_learn_her_address(server):
    alice, bob = alice_with_a_vault(), bob_the_collector()
    make_val(bob, name="helper", code=THIEF)
    app = make_val(alice, name="app", code='import { helpful } from "/v/bob/helper.ts";\nexport default () => helpful();\n')

    found = server.value_of(alice, app)

    assert found["vault"] == "error: api(): there is no val called 'alice.vault' that you can call."
    assert found["kept"] == "kept"  # bob's public val still runs, as bob, with nothing of alice's
    assert found["email"] == {"sent": True}
    assert "alice@example.com" not in json.dumps(found)
    assert not Evaluation.objects.filter(val__name="vault").exists()
    loot = Blob.objects.get(owner=bob, key="loot")
    assert "sk_live" not in loot.read().decode()
    # The mail itself went to the evaluation's principal, as a val's email does.
    sent = "".join(path.read_text() for path in server.mail_dir.iterdir())
    assert "hello from a library" in sent and "alice@example.com" in sent


def test_a_librarys_email_counts_apart_from_its_importers_own(server):
    alice, bob = make_user("alice"), make_user("bob")
    make_val(bob, name="spammer", code='import { email } from "/std/email.ts";\nexport const spam = () => email({ subject: "spam", text: "x" });\n')
    app = make_val(
        alice,
        name="app",
        code="""import { spam } from "/v/bob/spammer.ts";
import { email } from "/std/email.ts";
export default async () => {
  const out: string[] = [];
  for (let i = 0; i < 3; i++) { try { await spam(); out.push("library sent"); } catch (e) { out.push((e as Error).message); } }
  for (let i = 0; i < 2; i++) { try { await email({ subject: "mine", text: "x" }); out.push("alice sent"); } catch (e) { out.push((e as Error).message); } }
  return out;
};
""",
    )

    assert server.value_of(alice, app) == [
        "library sent",
        "library sent",
        "email() is limited to 2 messages an hour.",
        "alice sent",
        "alice sent",
    ]


def test_a_library_in_an_http_val_acts_as_nobody_too(server):
    alice, bob = alice_with_a_vault(), bob_the_collector()
    make_val(bob, name="helper", code=THIEF)
    make_val(
        alice,
        name="site",
        type="http",
        code='import { helpful } from "/v/bob/helper.ts";\nexport default async () => Response.json(await helpful());\n',
    )

    response = httpx.get(
        f"http://127.0.0.1:{server.port}/", headers={"Host": f"alice-site.web.localhost:{server.port}"}, timeout=60
    )

    assert response.status_code == 200, response.text
    assert response.json()["vault"].startswith("error: api(): there is no val called 'alice.vault'")
    assert "alice@example.com" not in response.text


def test_a_librarys_host_calls_besides_email_and_api_are_refused(server):
    alice, bob = make_user("alice"), make_user("bob")
    make_val(
        bob,
        name="prober",
        code="""export async function probe() {
  const call = (globalThis as any)[Symbol.for("valtown.host.call")];
  const out: string[] = [];
  for (const name of ["blob.list", "blob.set", "no.such"]) {
    try { await call(name, { key: "k", prefix: "" }); out.push("answered"); } catch (e) { out.push((e as Error).message); }
  }
  return out;
}
""",
    )
    app = make_val(alice, name="app", code='import { probe } from "/v/bob/prober.ts";\nexport default () => probe();\n')

    assert server.value_of(alice, app) == [
        "blob is not available to another user's val imported by yours (Restricted Library Mode): call it as an API with api() to use its owner's blob",
        "blob is not available to another user's val imported by yours (Restricted Library Mode): call it as an API with api() to use its owner's blob",
        "There is no host capability called 'no.such'.",
    ]


COOL_TOOL = """\
import { blob } from "/std/blob.ts";
export default async (text: string) => {
  console.log("cool tool running");
  const key = Deno.env.get("STRIPE_KEY") ?? null;
  let shipped = "not shipped";
  try { await blob.setJSON("loot", key); shipped = "shipped"; } catch (error) { shipped = (error as Error).message; }
  return { upper: text.toUpperCase(), key, envKeys: Object.keys(Deno.env.toObject()), shipped };
};
"""


def test_running_someone_elses_val_runs_it_without_your_secrets(server):
    alice, bob = alice_with_a_vault(), make_user("bob")
    cool_tool = make_val(bob, name="coolTool", code=COOL_TOOL)

    body = server.run(alice, cool_tool, ["hello"])

    assert body["status"] == "success", body
    result = body["result"]["value"]
    assert result["upper"] == "HELLO"
    assert result["key"] is None and result["envKeys"] == []
    assert result["shipped"].startswith("blob is not available to another user's val")
    assert "cool tool running" in [line["message"] for line in body["logs"]]
    # It ran as alice (her tracing log), and nothing reached either blob store.
    evaluation = Evaluation.objects.get(pk=body["id"])
    assert evaluation.principal == alice and evaluation.val == cool_tool
    assert not Blob.objects.exists()
    assert "sk_live" not in json.dumps(body)


def test_a_fork_of_someone_elses_val_runs_with_your_own_secrets(server):
    alice, bob = alice_with_a_vault(), make_user("bob")
    cool_tool = make_val(bob, name="coolTool", code=COOL_TOOL)
    remix = cool_tool.fork_for(alice)

    result = server.value_of(alice, remix, ["hello"])

    assert result["key"] == "sk_live_alice_1234567" or result["key"] == "****"
    assert result["shipped"] == "shipped"
    assert Blob.objects.filter(owner=alice, key="loot").exists()


def test_someone_elses_script_val_runs_its_top_level(server):
    alice, bob = make_user("alice"), make_user("bob")
    script = make_val(bob, name="script", code='console.log("top level ran", typeof Deno.env.get("HOME"));\n')

    body = server.run(alice, script)

    assert body["status"] == "success", body
    assert body["result"] == {"type": "undefined", "value": None}
    assert [line["message"] for line in body["logs"]] == ["top level ran undefined"]


def logged_in(server, user):
    """An httpx client with user's session on the live server, and the CSRF token."""
    client = httpx.Client(base_url=server.url, timeout=60, headers={"Referer": server.url + "/"})
    client.get("/accounts/login/")
    token = client.cookies["csrftoken"]
    response = client.post("/accounts/login/", data={"login": user.username, "password": "correct horse 1", "csrfmiddlewaretoken": token})
    assert response.status_code == 302, response.text
    return client, client.cookies["csrftoken"]


def finished(evaluation, timeout=60):
    deadline = time.monotonic() + timeout
    while evaluation.status == Evaluation.Status.RUNNING:
        assert time.monotonic() < deadline, "the evaluation never finished"
        time.sleep(0.05)
        evaluation.refresh_from_db()
    return evaluation


def test_a_stranger_runs_the_version_they_saw_not_one_swapped_in_later(server):
    alice, bob = make_user("alice"), make_user("bob")
    val = make_val(alice, name="swap", code="export default () => 'harmless';")
    val.save_version("export default () => 'swapped';")
    client, token = logged_in(server, bob)

    response = client.post(f"/vals/{val.pk}/run", data={"version": "0", "csrfmiddlewaretoken": token}, headers={"HX-Request": "true"})

    assert response.status_code == 200, response.text
    evaluation = finished(Evaluation.objects.filter(principal=bob).latest("id"))
    assert evaluation.val_version == 0 and evaluation.result == {"type": "json", "value": "harmless"}, evaluation.error
    response = client.post(f"/vals/{val.pk}/run", data={"version": "9", "csrfmiddlewaretoken": token}, headers={"HX-Request": "true"})
    assert b"does not exist" in response.content
