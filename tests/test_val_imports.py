"""Vals import vals through the module host, end to end: a real server, its real pool.

Covers pinned and unpinned imports, private vals, Restricted Library Mode cell by
cell, and api() calls that run another user's val as its author.
"""

import json
import subprocess

import httpx
import pytest

from accounts.secrets.models import Secret
from tests.factory import make_user, make_val
from tests.live import quiet_server_before_flush, server_that_mails_to  # noqa: F401 (an autouse fixture)
from vals.evaluations.models import Evaluation
from vals.models import Val

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, tmp_path_factory):
    live = server_that_mails_to(tmp_path_factory.mktemp("mail"), {"RUNTIME_POOL_SIZE": "5"})
    yield live
    live.stop()







def test_own_vals_import_by_root_relative_path_and_by_the_sites_url_private_ones_too(server):
    alice = make_user("alice")
    make_val(alice, name="helper", code="export const twice = (n: number) => n * 2;\n", privacy=Val.Privacy.PRIVATE)
    app = make_val(
        alice,
        name="app",
        code=f"""import {{ twice }} from "/v/alice/helper.ts";
import {{ twice as again }} from "{server.url}/v/alice/helper.ts";
export default () => [twice(2), again(3)];
""",
    )
    assert server.value_of(alice, app) == [4, 6]


def test_an_unpinned_import_sees_the_latest_save_and_a_pinned_one_never_changes(server):
    alice, bob = make_user("alice"), make_user("bob")
    lib = make_val(bob, name="lib", code="export default () => 'first';\n")
    app = make_val(
        alice,
        name="app",
        code="""import latest from "/v/bob/lib.ts";
import pinned from "/v/bob/lib.ts?v=0";
export default async () => [await latest(), await pinned()];
""",
    )
    assert server.value_of(alice, app) == ["first", "first"]
    lib.save_version("export default () => 'second';\n")
    assert server.value_of(alice, app) == ["second", "first"]


def test_a_private_val_is_an_import_error_for_everyone_but_its_owner(server):
    alice, bob = make_user("alice"), make_user("bob")
    make_val(alice, name="diary", code="export default 'dear diary';\n", privacy=Val.Privacy.PRIVATE)
    owner_run = make_val(alice, name="reader", code='import diary from "/v/alice/diary.ts";\nexport default () => diary;\n')
    assert server.value_of(alice, owner_run) == "dear diary"

    # bob imports the same URL right after alice's run put it in Deno's shared cache.
    snooper = make_val(bob, name="snooper", code='import diary from "/v/alice/diary.ts";\nexport default () => diary;\n')
    missing = make_val(bob, name="missing", code='import diary from "/v/alice/no_such_val.ts";\nexport default () => diary;\n')
    refused, absent = server.run(bob, snooper), server.run(bob, missing)
    assert refused["status"] == absent["status"] == "error"
    assert "dear diary" not in json.dumps(refused)
    assert "Module not found" in refused["error"]["message"] and "Module not found" in absent["error"]["message"]
    # The two errors differ only by the name in the URL.
    assert refused["error"]["message"].replace("diary", "X") == absent["error"]["message"].replace("no_such_val", "X")


def test_restricted_library_mode_cell_by_cell(server):
    alice, bob = make_user("alice"), make_user("bob")
    Secret.put(alice, "ALICE_SECRET", "alice-s3cret-value")
    Secret.put(bob, "BOB_SECRET", "bob-s3cret-value")
    make_val(alice, name="alice_private", code="export default 'alice private';\n", privacy=Val.Privacy.PRIVATE)
    make_val(bob, name="bob_private", code="export default 'bob private';\n", privacy=Val.Privacy.PRIVATE)
    make_val(
        bob,
        name="lib",
        code="""import { email } from "/std/email.ts";
import { blob } from "/std/blob.ts";
export async function probe() {
  const cells: Record<string, unknown> = {};
  cells.denoEnv = [typeof Deno.env.get("ALICE_SECRET"), typeof Deno.env.get("BOB_SECRET"), Object.keys(Deno.env.toObject()).length];
  cells.processEnv = [typeof (globalThis as any).process?.env?.ALICE_SECRET, typeof (globalThis as any).process?.env?.BOB_SECRET];
  for (const [cell, url] of [["bobPrivate", "/v/bob/bob_private.ts"], ["alicePrivate", "/v/alice/alice_private.ts"]]) {
    try { await import(url); cells[cell] = "imported"; } catch (error) { cells[cell] = "error: " + (error as Error).message.split("\\n")[0]; }
  }
  try { await blob.set("k", "v"); cells.blob = "written"; } catch (error) { cells.blob = "error: " + (error as Error).message; }
  cells.email = await email({ subject: "from bob's library", text: "hello" });
  console.log("bob's library was here");
  return cells;
}
""",
    )
    app = make_val(alice, name="app", code='import { probe } from "/v/bob/lib.ts";\nexport default () => probe();\n')

    body = server.run(alice, app)
    assert body["status"] == "success", (body, server.output()[-3000:])
    cells = body["result"]["value"]
    assert cells["denoEnv"] == ["undefined", "undefined", 0]
    assert cells["processEnv"] == ["undefined", "undefined"]
    assert cells["bobPrivate"].startswith("error:") and "bob private" not in cells["bobPrivate"]
    assert cells["alicePrivate"].startswith("error:") and "alice private" not in cells["alicePrivate"]
    assert cells["blob"].startswith("error: blob is not available to another user's val")
    assert cells["email"] == {"sent": True}  # the library isn't told whom it reached
    assert "bob's library was here" in [line["message"] for line in body["logs"]]
    assert "s3cret" not in json.dumps(body)
    sent = "".join(path.read_text() for path in server.mail_dir.iterdir())
    assert "from bob's library" in sent and "alice@example.com" in sent


def test_alices_own_imported_val_runs_with_her_permissions(server):
    alice = make_user("alice")
    Secret.put(alice, "ALICE_SECRET", "alice-s3cret-value")
    make_val(alice, name="config", code='export const secretLength = () => Deno.env.get("ALICE_SECRET")?.length;\n')
    app = make_val(alice, name="app", code='import { secretLength } from "/v/alice/config.ts";\nexport default () => secretLength();\n')
    assert server.value_of(alice, app) == len("alice-s3cret-value")


def test_a_library_cannot_monkey_patch_its_way_to_the_importers_secrets(server):
    alice, bob = make_user("alice"), make_user("bob")
    Secret.put(alice, "ALICE_SECRET", "alice-s3cret-value")
    make_val(
        bob,
        name="sneaky",
        code="""export function install() {
  const stolen: string[] = [];
  const originalFetch = globalThis.fetch;
  (globalThis as any).fetch = (...args: unknown[]) => { stolen.push(JSON.stringify(args)); return originalFetch(...(args as [string])); };
  Object.defineProperty(Object.prototype, "ALICE_SECRET", { get() { stolen.push("proto"); return undefined; }, configurable: true });
  (Deno as any).env = { get: (name: string) => { stolen.push(name); return undefined; } };
  Error.prepareStackTrace = (error: Error, frames: unknown[]) => { stolen.push(String(frames)); return ""; };
  (globalThis as any).__stolen = stolen;
  return "installed";
}
export function collect() { return (globalThis as any).__stolen ?? "nothing here"; }
""",
    )
    app = make_val(
        alice,
        name="app",
        code="""import { install, collect } from "/v/bob/sneaky.ts";
export default async () => {
  await install();
  const secret = Deno.env.get("ALICE_SECRET");
  const stack = new Error("mine").stack ?? "";
  return { secretLength: secret?.length, fetchIsNative: String(fetch).includes("native") || fetch.name === "fetch",
           protoClean: !("ALICE_SECRET" in {}), stackIntact: stack.includes("mine"), stolen: await collect() };
};
""",
    )
    result = server.value_of(alice, app)
    assert result["secretLength"] == len("alice-s3cret-value")
    assert result["fetchIsNative"] and result["protoClean"] and result["stackIntact"]
    assert "alice-s3cret-value" not in json.dumps(result["stolen"])
    assert "ALICE_SECRET" not in json.dumps(result["stolen"])


def test_api_runs_the_val_as_its_author_in_the_authors_trace(server):
    alice, bob = make_user("alice"), make_user("bob")
    Secret.put(bob, "WEATHER_KEY", "bobs-weather-key")
    bobs = make_val(
        bob,
        name="weather",
        code="""export default (city: string) => {
  console.log(`bob's val looked up ${city}`);
  return { city, keyLength: Deno.env.get("WEATHER_KEY")?.length, aliceSecret: Deno.env.get("ALICE_SECRET") ?? null };
};
""",
        privacy=Val.Privacy.UNLISTED,
    )
    Secret.put(alice, "ALICE_SECRET", "alice-s3cret-value")
    app = make_val(alice, name="app", code='import { api } from "/std/api.ts";\nexport default () => api("@bob/weather", "Oslo");\n')

    body = server.run(alice, app)
    assert body["status"] == "success", body
    assert body["result"]["value"] == {"city": "Oslo", "keyLength": len("bobs-weather-key"), "aliceSecret": None}
    assert "bob's val looked up Oslo" not in json.dumps(body["logs"])
    bobs_run = Evaluation.objects.get(val=bobs)
    assert bobs_run.principal == bob and bobs_run.trigger == "api"
    assert "bob's val looked up Oslo" in [line["message"] for line in bobs_run.logs]
    assert not Evaluation.objects.filter(val=bobs, principal=alice).exists()


def test_api_refuses_someone_elses_private_val_and_stops_runaway_recursion(server):
    alice, bob = make_user("alice"), make_user("bob")
    make_val(bob, name="hidden", code="export default () => 'hidden';\n", privacy=Val.Privacy.PRIVATE)
    make_val(alice, name="loop", code='import { api } from "/std/api.ts";\nexport default () => api("alice.loop");\n')
    app = make_val(
        alice,
        name="app",
        code="""import { api } from "/std/api.ts";
export default async () => {
  const out: string[] = [];
  for (const name of ["bob.hidden", "bob.nothing", "alice.loop"]) {
    try { await api(name); out.push("ran"); } catch (error) { out.push((error as Error).message); }
  }
  return out;
};
""",
    )
    hidden, nothing, loop = server.value_of(alice, app)
    assert hidden == "api(): there is no val called 'bob.hidden' that you can call."
    assert nothing == "api(): there is no val called 'bob.nothing' that you can call."
    assert "nest too deeply" in loop


def test_a_public_val_url_works_from_a_plain_deno_run(server, tmp_path):
    import deno

    bob = make_user("bob")
    make_val(bob, name="shout", code="export default (text: string): string => text.toUpperCase() + '!';\n")
    main = tmp_path / "main.ts"
    main.write_text(f'import shout from "{server.url}/v/bob/shout.ts";\nconsole.log(shout("hello"));\n')
    completed = subprocess.run(
        [deno.find_deno_bin(), "run", "--quiet", "--reload", f"--allow-import=localhost:{server.port}", str(main)],
        capture_output=True, text=True, timeout=60, env={"DENO_DIR": str(tmp_path / "deno"), "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )
    assert completed.stdout.strip() == "HELLO!", completed.stderr



def test_an_http_val_imports_its_owners_vals_and_other_users_vals_in_library_mode(server):
    alice, bob = make_user("alice"), make_user("bob")
    Secret.put(alice, "ALICE_SECRET", "alice-s3cret-value")
    make_val(alice, name="layout", code="export const page = (body: string) => `<main>${body}</main>`;\n", privacy=Val.Privacy.PRIVATE)
    make_val(bob, name="shout", code="export const shout = (text: string) => text.toUpperCase() + (Deno.env.get('ALICE_SECRET') ?? '');\n")
    make_val(
        alice,
        name="site",
        type=Val.Type.HTTP,
        code="""import { page } from "/v/alice/layout.ts";
import { shout } from "/v/bob/shout.ts";
export default async (req: Request) => new Response(page(await shout("hello")));
""",
    )
    response = httpx.get(f"http://127.0.0.1:{server.port}/", headers={"Host": f"alice-site.web.localhost:{server.port}"}, timeout=30)
    assert (response.status_code, response.text) == (200, "<main>HELLO</main>"), server.output()[-2000:]


def npm_reachable():
    import socket

    try:
        socket.create_connection(("registry.npmjs.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not npm_reachable(), reason="the npm registry is not reachable from here")
def test_npm_packages_work_in_vals_and_in_libraries_and_are_cached_once(server):
    import os

    from runtime.config import PoolConfig

    alice, bob = make_user("alice"), make_user("bob")
    make_val(bob, name="numbers", code="import isNumber from 'npm:is-number@7.0.0';\nexport const check = (x: unknown) => isNumber(x);\n")
    app = make_val(
        alice,
        name="app",
        code="""import isNumber from "npm:is-number@7.0.0";
import { check } from "/v/bob/numbers.ts";
export default async () => [isNumber(5), isNumber("x"), await check(7)];
""",
    )
    assert server.value_of(alice, app) == [True, False, True]
    assert os.path.isdir(os.path.join(PoolConfig().deno_dir_path, "npm", "registry.npmjs.org", "is-number", "7.0.0"))
    assert server.value_of(alice, app) == [True, False, True]


def test_the_module_host_and_the_library_host_must_differ(settings):
    from vals.apps import check_module_hosts

    assert check_module_hosts(None) == []
    settings.RUNTIME_LIBRARY_HOST = settings.RUNTIME_MODULE_HOST
    assert [error.id for error in check_module_hosts(None)] == ["vals.E001"]
