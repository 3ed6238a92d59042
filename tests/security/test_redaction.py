"""A secret never shows through the ways a val prints it: console.log's Deno.inspect
quoting, JSON.stringify's escapes, Deno's long-string splitting and truncation, or the
bytes of a binary response body. Every val here runs through the real runtime."""

import base64
import json
import re
import time

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from accounts.secrets.models import Redactor, Secret
from tests.factory import make_val
from vals.evaluations import runner
from vals.evaluations.models import Evaluation

pytestmark = pytest.mark.django_db(transaction=True)

# Secrets whose escapes differ from their text. Every run of three or more letters and
# digits is unusual, so finding one anywhere in what was stored means a leak.
TRICKY_SECRETS = {
    "double_quote": 'Qx7"Vb3m',
    "apostrophe": "Ap4'Kz9w",
    "both_quotes": "Bt5'Lq\"Np8",
    "all_three_quotes": "Tr6'Mw\"Hc`Jd2",
    "backslash": "Bs3\\Fy8\\Gq",
    "trailing_newline": "Nl5Wr8Kt\n",
    "inner_newline": "Ln4Wx\nKp7Rt",
    "tab": "Tb2\tPz7Xe",
    "carriage_return": "Cr3Hq\r\nVm6",
    "unicode": "Üñï9çødë",
    "emoji": "Em4😀Rq8Zv",
    "control_characters": "Ct1\x01Vk\x7fDw5\x1bQz",
    "template_dollar": "Dl8${Hx}`Ms",
}

PRINTS_THE_SECRET_EVERY_WAY = """\
export default () => {
  const key = Deno.env.get("SECRET");
  console.log({ key });
  console.log([key], new Map([[key, key]]), new Set([key]));
  console.log({ [key]: 1 });
  console.log({ nested: { deeper: { key } } });
  console.log({ mixed: "\\"'`" + key });
  console.log({ padded: "x".repeat(90) + key + "y".repeat(90) });
  console.log(JSON.stringify({ key }));
  console.log({ body: JSON.stringify({ key }) });
  console.log(JSON.stringify({ body: JSON.stringify({ key }) }));
  console.log(Deno.inspect({ shown: Deno.inspect({ key }) }));
  console.error(Symbol(key), new String(key));
  throw { reason: { key } };
};
"""

RETURNS_THE_SECRET_EVERY_WAY = """\
export default () => {
  const key = Deno.env.get("SECRET");
  return { key, json: JSON.stringify({ key }), shown: Deno.inspect({ key }) };
};
"""


def runs_of(secret):
    """The secret's runs of three or more letters or digits."""
    return re.findall(r"[^\W_]{3,}", secret)


def stored(evaluation):
    return json.dumps([evaluation.logs, evaluation.result, evaluation.error], ensure_ascii=False)


def leaks(secret, evaluation):
    text = stored(evaluation)
    return [run for run in runs_of(secret) if run in text]


async def run_as(user, code, name="leaky"):
    val = await sync_to_async(make_val)(user, name=name, code=code)
    client = AsyncClient()
    await client.aforce_login(user)
    await client.post(f"/vals/{val.pk}/run", {"args": ""}, headers={"HX-Request": "true"})
    await runner.wait_for_all()
    return await Evaluation.objects.alatest("id")


async def alice_with_secret(alice, value):
    await sync_to_async(Secret.put)(alice, "SECRET", value)
    return alice


@pytest.mark.parametrize("secret", TRICKY_SECRETS.values(), ids=TRICKY_SECRETS.keys())
async def test_alices_secret_never_shows_in_what_her_val_logs_or_throws(alice, secret):
    await alice_with_secret(alice, secret)
    evaluation = await run_as(alice, PRINTS_THE_SECRET_EVERY_WAY)
    assert len(evaluation.logs) == 11 and evaluation.status == "error"
    assert "****" in evaluation.logs[0]["message"] and "****" in evaluation.error["message"]
    assert leaks(secret, evaluation) == []


@pytest.mark.parametrize("secret", TRICKY_SECRETS.values(), ids=TRICKY_SECRETS.keys())
async def test_alices_secret_never_shows_in_what_her_val_returns(alice, secret):
    await alice_with_secret(alice, secret)
    evaluation = await run_as(alice, RETURNS_THE_SECRET_EVERY_WAY)
    assert evaluation.status == "success" and evaluation.result["value"]["key"] == "****"
    assert leaks(secret, evaluation) == []


@pytest.mark.parametrize(
    "secret, shown",
    [
        ('Qx7"Vb3m', "{ key: '****' }"),
        ("Ap4'Kz9w", '{ key: "****" }'),
        ("Bt5'Lq\"Np8", "{ key: `****` }"),
        ("Nl5Wr8Kt\n", '{ key: "****" }'),
        ("Bs3\\Fy8\\Gq", '{ key: "****" }'),
    ],
)
async def test_a_logged_object_keeps_its_shape_around_the_redacted_secret(alice, secret, shown):
    await alice_with_secret(alice, secret)
    evaluation = await run_as(alice, 'export default () => { const key = Deno.env.get("SECRET"); console.log({ key }); console.log(JSON.stringify({ key })); };')
    assert [line["message"] for line in evaluation.logs] == [shown, '{"key":"****"}']


async def test_a_multi_line_key_that_deno_splits_across_lines_never_shows(alice):
    body = base64.b64encode(bytes(range(192))).decode()
    pem = "-----BEGIN TEST KEY-----\n" + "\n".join(body[i : i + 64] for i in range(0, len(body), 64)) + "\n-----END TEST KEY-----\n"
    await alice_with_secret(alice, pem)
    code = 'export default () => { const key = Deno.env.get("SECRET"); console.log({ key }); console.log({ wrapped: { key } }); console.log([key]); console.log(new Map([["k", key]])); };'
    evaluation = await run_as(alice, code)
    assert len(evaluation.logs) == 4
    # Deno writes the key in one quoted piece per line, each masked where it stands.
    assert all(line["message"].count("****") == pem.count("\n") for line in evaluation.logs)
    assert leaks(pem, evaluation) == []


async def test_the_shown_part_of_a_secret_too_long_for_deno_to_print_whole_never_shows(alice):
    secret = "".join(f"Lg{n:05d}" for n in range(1700))  # 11,900 characters; Deno shows 10,000
    await alice_with_secret(alice, secret)
    evaluation = await run_as(alice, 'export default () => { const key = Deno.env.get("SECRET"); console.log({ key }); console.log([key]); };')
    assert all("more characters" in line["message"] for line in evaluation.logs)
    text = stored(evaluation)
    assert [secret[i : i + 16] for i in range(0, 10_000, 16) if secret[i : i + 16] in text] == []


async def test_a_secret_inside_a_binary_response_body_is_redacted_from_its_bytes(alice):
    await alice_with_secret(alice, "Bn7\"Xq4'Rv")
    code = """export default () => {
  const key = new TextEncoder().encode(Deno.env.get("SECRET"));
  const json = new TextEncoder().encode(JSON.stringify({ key: Deno.env.get("SECRET") }));
  return new Response(new Uint8Array([0xff, 0x00, ...key, 0xfe, ...json, 0x80]));
};"""
    evaluation = await run_as(alice, code)
    response = evaluation.result["value"]
    assert evaluation.result["type"] == "response" and response["body_encoding"] == "base64"
    assert base64.b64decode(response["body"]) == b'\xff\x00****\xfe{"key":"****"}\x80'


async def test_a_secret_inside_a_text_response_body_is_redacted_in_each_escaped_form(alice):
    await alice_with_secret(alice, "Tx5\"Wq8\nZm")
    code = 'export default () => { const key = Deno.env.get("SECRET"); return new Response(`${key} ${JSON.stringify({ key })}`); };'
    evaluation = await run_as(alice, code)
    assert evaluation.result["value"]["body"] == '**** {"key":"****"}'


def test_redacting_a_megabyte_takes_linear_time_even_for_a_self_similar_secret():
    # A backtracking alternation of the two (one alone would be searched as a literal)
    # tries the long one afresh at every position of a log that repeats its beginning:
    # 10,000 steps at each of a million positions.
    secret = "a" * 9_999 + "b"
    redactor = Redactor([secret, "another-secret"])
    log = "a" * 1_000_000
    started = time.perf_counter()
    assert redactor.text(log) == log
    assert redactor.text(log + "b") == "a" * (1_000_000 - 9_999) + "****"
    assert time.perf_counter() - started < 1


def test_the_redactor_leaves_short_values_and_other_text_alone():
    redactor = Redactor(['it"s-a-secret', "ab"])
    assert redactor.text('ab "it\\"s-a-secret" \'it"s-a-secret\' it"s-a-secret') == 'ab "****" \'****\' ****'
    assert redactor.value({"body": "aXQicy1hLXNlY3JldA==", "body_encoding": "text"}) == {"body": "aXQicy1hLXNlY3JldA==", "body_encoding": "text"}
