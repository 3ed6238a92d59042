"""Host calls: a val asks the platform for something through one well-known function,
and the caller's on_call answers, for evaluations and HTTP requests alike."""

import asyncio
import json

import pytest

from runtime import Limits
from tests.runtime.helpers import start_engine
from tests.runtime.visitor import Visitor

CALL = "(globalThis as any)[Symbol.for('valtown.host.call')]"


@pytest.fixture(scope="module")
def engine():
    engine = start_engine()
    yield engine
    engine.shutdown()


async def test_a_val_gets_the_hosts_reply_to_its_call(engine):
    calls = []

    async def on_call(name, payload):
        calls.append((name, payload))
        return {"sent": True, "to": payload["to"]}

    result = await engine.evaluate(
        f"export default () => {CALL}('email.send', {{ to: 'bob@example.com', subject: 'hi' }})", on_call=on_call
    )

    assert result.value == {"sent": True, "to": "bob@example.com"}
    assert calls == [("email.send", {"to": "bob@example.com", "subject": "hi"})]


async def test_calls_run_concurrently_and_each_gets_its_own_reply(engine):
    async def on_call(name, payload):
        await asyncio.sleep(payload["wait"])
        return payload["n"]

    val = f"export default () => Promise.all([0.3, 0.1, 0.2].map((wait, n) => {CALL}('echo', {{ wait, n }})))"
    result = await engine.evaluate(val, on_call=on_call)

    assert result.value == [0, 1, 2]
    assert result.duration_ms < 550  # side by side, not one after another


async def test_on_call_runs_on_the_callers_event_loop(engine):
    caller_loop = asyncio.get_running_loop()
    seen = []

    async def on_call(name, payload):
        seen.append(asyncio.get_running_loop() is caller_loop)
        return None

    await engine.evaluate(f"export default () => {CALL}('noop', null)", on_call=on_call)

    assert seen == [True]


async def test_the_hosts_refusal_reaches_the_val_as_an_error(engine):
    async def on_call(name, payload):
        raise PermissionError("alice may not send email from this val")

    val = f"export default () => {CALL}('email.send', {{}}).catch((error) => `${{error.constructor.name}}: ${{error.message}}`)"
    result = await engine.evaluate(val, on_call=on_call)

    assert result.value == "Error: alice may not send email from this val"


async def test_without_on_call_a_call_fails_clearly(engine):
    result = await engine.evaluate(f"export default () => {CALL}('blob.get', {{ key: 'x' }})")

    assert result.status == "error"
    assert result.error["message"] == "host calls are not available here"


async def test_a_payload_over_the_size_cap_is_refused_before_it_reaches_the_host(engine):
    calls = []

    async def on_call(name, payload):
        calls.append(name)

    val = f"export default () => {CALL}('blob.set', 'x'.repeat(2000)).catch((error) => error.message)"
    result = await engine.evaluate(val, on_call=on_call, limits=Limits(max_host_call_bytes=1000))

    assert result.value == "host call payload too large: 2002 bytes of JSON, the limit is 1000"
    assert calls == []


async def test_a_payload_nested_too_deeply_is_refused_before_it_reaches_the_host(engine):
    calls = []

    async def on_call(name, payload):
        calls.append(name)

    val = f"""export default () => {{
        let deep: any = 1;
        for (let i = 0; i < 5000; i++) deep = [deep];
        return {CALL}('blob.set', deep).catch((error) => error.message);
    }}"""
    result = await engine.evaluate(val, on_call=on_call)

    assert result.value.startswith("the host call payload is nested too deeply")
    assert calls == []


async def test_a_reply_over_the_size_cap_is_refused(engine):
    async def on_call(name, payload):
        return "y" * 2000

    val = f"export default () => {CALL}('blob.get', null).catch((error) => error.message)"
    result = await engine.evaluate(val, on_call=on_call, limits=Limits(max_host_call_bytes=1000))

    assert result.value == "host call reply too large: the limit is 1000 bytes of JSON"


async def test_the_number_of_calls_per_evaluation_is_capped(engine):
    async def on_call(name, payload):
        return payload

    val = f"""
    export default async () => {{
      const outcomes = [];
      for (let n = 0; n < 3; n++) outcomes.push(await {CALL}('echo', n).catch((error) => error.message));
      return outcomes;
    }}
    """
    result = await engine.evaluate(val, on_call=on_call, limits=Limits(max_host_calls=2))

    assert result.value == [0, 1, "too many host calls: the limit is 2 per evaluation"]


async def test_a_call_made_after_the_evaluation_ended_is_refused(engine):
    # An HTTP val's process lives on, so a call started after its request ended can be seen.
    async def on_call(name, payload):
        return "should not be reached"

    val = f"""
    let late: Promise<string> | null = null;
    export default async () => {{
      if (late === null) {{
        late = new Promise((resolve) => setTimeout(() => {CALL}('late', null).then(resolve, (error) => resolve(error.message)), 50));
        return new Response('first');
      }}
      return new Response(await late);
    }}
    """
    key = ("val", "late-call", 1, "alice")
    for _ in range(2):
        visitor = Visitor()
        await asyncio.sleep(0.1)
        await engine.serve_http(
            key, code=val, scope=visitor.scope, receive=visitor.receive, send=visitor.send, on_call=on_call
        )

    assert visitor.body == b"host call refused: the request has ended"


async def test_an_http_val_can_make_host_calls_for_its_request(engine):
    async def on_call(name, payload):
        return {"name": name, "payload": payload}

    val = f"export default async () => Response.json(await {CALL}('vals.call', {{ val: 'bob/greet' }}))"
    visitor = Visitor()
    await engine.serve_http(
        ("val", "calls", 1, "alice"), code=val, scope=visitor.scope, receive=visitor.receive, send=visitor.send,
        on_call=on_call,
    )

    assert json.loads(visitor.body) == {"name": "vals.call", "payload": {"val": "bob/greet"}}


def test_evaluate_sync_can_answer_host_calls_too(engine):
    async def on_call(name, payload):
        await asyncio.sleep(0)
        return payload * 2

    result = engine.evaluate_sync(f"export default () => {CALL}('double', 21)", on_call=on_call)

    assert result.value == 42


async def test_the_call_function_cannot_be_replaced_by_the_val(engine):
    val = f"""
    export default () => {{
      try {{ {CALL} = () => 'forged'; }} catch {{}}
      return typeof {CALL};
    }}
    """
    result = await engine.evaluate(val)

    assert result.value == "function"
