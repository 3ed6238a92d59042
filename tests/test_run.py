"""Pressing Run: a val runs through the real Deno pool as the viewer, and is recorded.

Running someone else's val (in Restricted Library Mode, which needs a module host) is in
tests/security/test_foreign_code_authority.py."""

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test import AsyncClient, override_settings

from accounts.secrets.models import Secret
from tests.factory import make_user, make_val
from vals.evaluations import runner
from vals.evaluations.models import Evaluation

pytestmark = pytest.mark.django_db(transaction=True)


async def logged_in(user):
    client = AsyncClient()
    await client.aforce_login(user)
    return client


async def run(client, val, args=""):
    response = await client.post(f"/vals/{val.pk}/run", {"args": args}, headers={"HX-Request": "true"})
    await runner.wait_for_all()
    return response


@pytest.fixture
def people():
    return {"alice": make_user("alice"), "bob": make_user("bob")}


async def latest_evaluation():
    return await Evaluation.objects.select_related("principal", "val").alatest("id")


async def test_alice_runs_her_val_and_sees_the_result(people):
    val = await sync_to_async(make_val)(people["alice"], name="greet", code='export default (name) => { console.log("hi", name); return { hello: name }; };')
    client = await logged_in(people["alice"])
    response = await run(client, val, '["Ada"]')
    assert response.status_code == 200
    evaluation = await latest_evaluation()
    assert f'ws-connect="/ws/evaluations/{evaluation.pk}"' in response.content.decode()
    assert evaluation.status == "success"
    assert evaluation.result == {"type": "json", "value": {"hello": "Ada"}}
    assert [line["message"] for line in evaluation.logs] == ["hi Ada"]
    assert evaluation.principal == people["alice"] and evaluation.trigger == "run"
    assert evaluation.val_version == 0 and evaluation.duration_ms is not None


async def test_the_saved_version_runs(people):
    val = await sync_to_async(make_val)(people["alice"], name="v", code="export default () => 'first';")
    await sync_to_async(val.save_version)("export default () => 'second';")
    await run(await logged_in(people["alice"]), val)
    evaluation = await latest_evaluation()
    assert evaluation.result["value"] == "second" and evaluation.val_version == 1


async def test_alice_reads_her_own_secret(people):
    await sync_to_async(Secret.put)(people["alice"], "GREETING", "alice-secret-value")
    val = await sync_to_async(make_val)(people["alice"], name="env", code='export default () => Deno.env.get("GREETING") === "alice-secret-value";')
    await run(await logged_in(people["alice"]), val)
    assert (await latest_evaluation()).result["value"] is True


async def test_secret_values_are_redacted_everywhere_they_could_leak(people):
    await sync_to_async(Secret.put)(people["alice"], "API_KEY", "sk-very-secret-42")
    code = """export default () => {
  const key = Deno.env.get("API_KEY");
  console.log("the key is", key);
  console.error(`again: ${key}`);
  throw new Error(`bad key ${key}`);
};"""
    val = await sync_to_async(make_val)(people["alice"], name="leaky", code=code)
    await run(await logged_in(people["alice"]), val)
    evaluation = await latest_evaluation()
    assert [line["message"] for line in evaluation.logs] == ["the key is ****", "again: ****"]
    assert evaluation.error["message"] == "bad key ****"
    assert "sk-very-secret-42" not in evaluation.error["stack"]
    returned = await sync_to_async(make_val)(people["alice"], name="returns", code='export default () => ({ key: Deno.env.get("API_KEY") });')
    await run(await logged_in(people["alice"]), returned)
    assert (await latest_evaluation()).result["value"] == {"key": "****"}

    def stored_anywhere():
        with connection.cursor() as cursor:
            for table in connection.introspection.table_names():
                cursor.execute(f'SELECT * FROM "{table}"')
                if "sk-very-secret-42" in repr(cursor.fetchall()):
                    return table
        return None

    assert await sync_to_async(stored_anywhere)() is None
    client = await logged_in(people["alice"])
    for url in ["/settings/evaluations", evaluation.get_absolute_url(), "/settings/secrets", "/v/alice/leaky"]:
        page = await client.get(url)
        assert b"sk-very-secret-42" not in page.content


async def test_anonymous_visitors_cannot_run_vals(people):
    val = await sync_to_async(make_val)(people["alice"], name="pub")
    response = await run(AsyncClient(), val)
    assert b"Log in to run vals." in response.content
    assert not await Evaluation.objects.aexists()


async def test_nobody_runs_a_private_val_of_someone_else(people):
    val = await sync_to_async(make_val)(people["alice"], name="hidden", privacy="private")
    response = await run(await logged_in(people["bob"]), val)
    assert response.status_code == 404
    assert not await Evaluation.objects.aexists()


@pytest.mark.parametrize(
    "args, message",
    [("[1, 2", "not valid JSON"), ('{"a": 1}', "must be a JSON array"), ("nope", "not valid JSON")],
)
async def test_malformed_arguments_get_a_clear_error(people, args, message):
    val = await sync_to_async(make_val)(people["alice"], name="f")
    response = await run(await logged_in(people["alice"]), val, args)
    assert message in response.content.decode()
    assert not await Evaluation.objects.aexists()


async def test_a_val_that_throws_shows_the_error_and_its_line(people):
    code = "export default () => {\n  const x = 1;\n  throw new TypeError('nope ' + x);\n};\n"
    val = await sync_to_async(make_val)(people["alice"], name="thrower", code=code)
    await run(await logged_in(people["alice"]), val)
    evaluation = await latest_evaluation()
    assert evaluation.status == "error"
    assert evaluation.error["name"] == "TypeError" and evaluation.error["message"] == "nope 1"
    assert ":3:" in evaluation.error["stack"]


async def test_a_syntax_error_shows_the_typescript_error_and_its_line(people):
    code = "export default () => {\n  return 1 +;\n};\n"
    val = await sync_to_async(make_val)(people["alice"], name="broken", code=code)
    await run(await logged_in(people["alice"]), val)
    evaluation = await latest_evaluation()
    assert evaluation.status == "error"
    assert ":2:" in evaluation.error["message"] + evaluation.error["stack"]


@override_settings(EVALUATION_TIMEOUT_SECONDS=1)
async def test_a_val_that_runs_too_long_is_stopped(people):
    val = await sync_to_async(make_val)(people["alice"], name="forever", code="export default () => { while (true) {} };")
    await run(await logged_in(people["alice"]), val)
    evaluation = await latest_evaluation()
    assert evaluation.status == "timeout"
    assert "timeout" in evaluation.kill_reason.lower() or "timed out" in evaluation.kill_reason.lower()


async def test_results_of_every_kind_are_recorded(people):
    client = await logged_in(people["alice"])
    cases = {
        "s": ('export default () => "text";', {"type": "json", "value": "text"}),
        "n": ("export default () => 4.5;", {"type": "json", "value": 4.5}),
        "o": ("export default () => ({a: [1, null]});", {"type": "json", "value": {"a": [1, None]}}),
        "nul": ("export default () => null;", {"type": "json", "value": None}),
        "u": ("export default () => undefined;", {"type": "undefined"}),
        "scr": ('console.log("a script");', {"type": "undefined"}),
    }
    for name, (code, expected) in cases.items():
        val = await sync_to_async(make_val)(people["alice"], name=name, code=code)
        await run(client, val)
        result = (await latest_evaluation()).result
        assert {k: v for k, v in result.items() if k in expected} == expected, name


async def test_a_returned_response_shows_status_headers_and_body(people):
    code = 'export default () => new Response("made it", { status: 201, headers: { "x-thing": "yes" } });'
    val = await sync_to_async(make_val)(people["alice"], name="resp", code=code)
    await run(await logged_in(people["alice"]), val)
    result = (await latest_evaluation()).result
    assert result["type"] == "response"
    assert result["value"]["status"] == 201 and result["value"]["body"] == "made it"
    assert result["value"]["headers"]["x-thing"] == "yes"


@override_settings(EVALUATION_MAX_RUNNING_PER_USER=2)
async def test_one_user_cannot_fill_the_pool(people):
    val = await sync_to_async(make_val)(people["alice"], name="slow", code="export default () => new Promise((r) => setTimeout(r, 1500));")
    client = await logged_in(people["alice"])
    responses = [await client.post(f"/vals/{val.pk}/run", headers={"HX-Request": "true"}) for _ in range(3)]
    assert b"runs in progress" in responses[2].content
    bob_val = await sync_to_async(make_val)(people["bob"], name="quick", code="export default () => 1;")
    await run(await logged_in(people["bob"]), bob_val)
    assert await Evaluation.objects.filter(principal=people["bob"], status="success").aexists()


@override_settings(EVALUATION_MAX_LOG_BYTES=10_000)
async def test_a_flood_of_empty_lines_is_capped_too(people):
    code = 'export default () => { for (let i = 0; i < 20000; i++) console.log(""); };'
    val = await sync_to_async(make_val)(people["alice"], name="flood", code=code)
    await run(await logged_in(people["alice"]), val)
    evaluation = await latest_evaluation()
    assert len(evaluation.logs) < 400
    assert evaluation.logs[-1]["message"].startswith("logs truncated")


@override_settings(EVALUATION_MAX_LOG_BYTES=3_000_000)
async def test_the_log_cap_is_the_one_in_settings_all_the_way_down_to_the_runtime(people):
    code = 'export default () => { for (let i = 0; i < 1500; i++) console.log("x".repeat(1000)); };'
    val = await sync_to_async(make_val)(people["alice"], name="chatty", code=code)
    await run(await logged_in(people["alice"]), val)
    evaluation = await latest_evaluation()
    assert evaluation.status == "success"
    assert len(evaluation.logs) == 1500  # 1.5 MB: past the runtime's own default cap
    assert not any(line["message"].startswith("logs truncated") for line in evaluation.logs)


async def test_text_no_database_can_store_is_made_storable(people):
    code = r"""export default () => { console.log('a\ud800\u0000b'); let deep: any = 1; for (let i = 0; i < 200; i++) deep = [deep]; return { s: 'b\ud800', deep }; };"""
    val = await sync_to_async(make_val)(people["alice"], name="weird", code=code)
    client = await logged_in(people["alice"])
    await run(client, val)
    evaluation = await latest_evaluation()
    assert evaluation.status == "success"
    assert "\x00" not in evaluation.logs[0]["message"]
    page = await client.get(evaluation.get_absolute_url())
    assert page.status_code == 200


async def test_deeply_nested_arguments_get_a_clear_error(people):
    val = await sync_to_async(make_val)(people["alice"], name="f")
    response = await run(await logged_in(people["alice"]), val, "[" * 20000 + "]" * 20000)
    assert b"nested too deeply" in response.content or b"not valid JSON" in response.content
