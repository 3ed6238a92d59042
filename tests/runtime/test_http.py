"""HTTP vals served by warm processes: what the visitor gets, what the val sees, and
what the owner's outcome records. Driven through a fake ASGI visitor, no server."""

import asyncio
import itertools
import json
import os
import signal
import time

import pytest

from runtime import Limits
from tests.runtime.helpers import start_engine
from tests.runtime.visitor import Visitor

_keys = itertools.count()


def fresh_key():
    """A key no other test uses: each test gets processes of its own."""
    return ("val", next(_keys), 1, "alice")


@pytest.fixture(scope="module")
def engine():
    engine = start_engine(pool_size=1, http_response_window_bytes=16 * 1024, http_wait_seconds=0.5)
    yield engine
    engine.shutdown()


async def serve(engine, code, visitor=None, key=None, **kwargs):
    visitor = visitor or Visitor()
    outcome = await engine.serve_http(
        key or fresh_key(), code=code, scope=visitor.scope, receive=visitor.receive, send=visitor.send, **kwargs
    )
    return outcome, visitor


ECHO_REQUEST = """
export default async (req: Request) => Response.json({
  method: req.method,
  url: req.url,
  accept: req.headers.get("accept"),
  many: req.headers.get("x-many"),
})
"""


async def test_the_val_sees_the_method_public_url_and_headers_the_visitor_sent(engine):
    visitor = Visitor(
        method="DELETE",
        path="/items/42",
        query=b"tag=a&tag=b",
        headers=[(b"accept", b"application/json"), (b"x-many", b"one"), (b"x-many", b"two")],
        host="alice-hello.example.com:8443",
    )

    outcome, visitor = await serve(engine, ECHO_REQUEST, visitor)

    assert outcome.status == "success" and outcome.http_status == 200
    assert json.loads(visitor.body) == {
        "method": "DELETE",
        "url": "https://alice-hello.example.com:8443/items/42?tag=a&tag=b",
        "accept": "application/json",
        "many": "one, two",
    }
    assert visitor.finished and outcome.response_complete


async def test_binary_bodies_arrive_intact_in_both_directions(engine):
    every_byte = bytes(range(256)) * 300  # 76.8 KB: more than one message each way
    val = """
    export default async (req: Request) => {
      const bytes = new Uint8Array(await req.arrayBuffer());
      return new Response(bytes.reverse(), { headers: { "content-type": "application/octet-stream" } });
    }
    """
    visitor = Visitor(method="POST", body_chunks=[every_byte[:1000], every_byte[1000:50000], every_byte[50000:]])

    outcome, visitor = await serve(engine, val, visitor)

    assert outcome.http_status == 200
    assert visitor.body == every_byte[::-1]
    assert visitor.headers("content-type") == ["application/octet-stream"]


async def test_several_set_cookie_headers_stay_separate(engine):
    val = """
    export default () => {
      const headers = new Headers();
      headers.append("set-cookie", "session=abc; HttpOnly");
      headers.append("set-cookie", "theme=dark; Path=/");
      return new Response("ok", { status: 201, headers });
    }
    """
    outcome, visitor = await serve(engine, val)

    assert visitor.status == 201
    assert visitor.headers("set-cookie") == ["session=abc; HttpOnly", "theme=dark; Path=/"]


async def test_a_redirect_is_passed_through_not_followed(engine):
    val = "export default () => Response.redirect('https://example.com/elsewhere', 307)"

    outcome, visitor = await serve(engine, val)

    assert outcome.http_status == 307
    assert visitor.headers("location") == ["https://example.com/elsewhere"]


async def test_a_declared_body_over_the_limit_gets_413_and_the_handler_is_never_called(engine):
    val = "export default () => { console.log('handler called'); return new Response('ok') }"
    visitor = Visitor(method="POST", headers=[(b"content-length", b"2000")], body=b"x" * 2000)

    outcome, visitor = await serve(engine, val, visitor, max_body_bytes=1000)

    assert visitor.status == 413
    assert outcome.error["name"] == "PayloadTooLarge"
    assert outcome.logs == []


async def test_a_streamed_body_over_the_limit_aborts_the_handler_with_413(engine):
    val = """
    export default async (req: Request) => {
      req.signal.addEventListener("abort", () => console.log("aborted"));
      await req.arrayBuffer().catch((error) => console.log("body failed:", error.name));
      return new Response("read it all");
    }
    """
    visitor = Visitor(method="POST", body_chunks=[b"x" * 600, b"x" * 600])

    outcome, visitor = await serve(engine, val, visitor, max_body_bytes=1000)

    assert visitor.status == 413
    assert outcome.error["name"] == "PayloadTooLarge"
    assert "aborted" in [line.message for line in outcome.logs]


async def test_server_sent_events_reach_the_visitor_as_they_are_produced(engine):
    val = """
    export default () => {
      let sent = 0;
      const body = new ReadableStream({
        async pull(controller) {
          await new Promise((resolve) => setTimeout(resolve, 150));
          controller.enqueue(new TextEncoder().encode(`data: event ${sent}\\n\\n`));
          if (++sent === 4) controller.close();
        },
      });
      return new Response(body, { headers: { "content-type": "text/event-stream" } });
    }
    """
    outcome, visitor = await serve(engine, val)

    assert visitor.headers("content-type") == ["text/event-stream"]
    assert visitor.body_chunks == [f"data: event {n}\n\n".encode() for n in range(4)]
    gaps = [later - earlier for earlier, later in zip(visitor.chunk_times, visitor.chunk_times[1:])]
    assert all(gap > 0.1 for gap in gaps), gaps  # one by one, not all at the end
    assert outcome.response_complete


async def test_a_slow_visitor_holds_back_a_val_that_streams_as_fast_as_it_can(engine):
    # 1 KB chunks, produced whenever the stream asks for more; the window is 16 KB.
    val = """
    let produced = 0;
    export default () => new Response(new ReadableStream({
      pull(controller) { produced++; controller.enqueue(new Uint8Array(1024)); },
      cancel() { console.log(`produced ${produced}`); },
    }))
    """
    visitor = Visitor(seconds_per_chunk=0.01, leave_after_chunks=40)

    outcome, visitor = await serve(engine, val, visitor)

    assert outcome.client_disconnected
    delivered = len(visitor.body)
    produced = int(next(line.message for line in outcome.logs if line.message.startswith("produced")).split()[1])
    # Without backpressure it would have produced thousands by now.
    assert produced * 1024 <= delivered + 16 * 1024 + 4 * 1024, (produced, delivered)


async def test_a_visitor_who_stops_reading_does_not_hold_the_request_past_its_deadline(engine):
    # A server whose send() waits until the visitor takes the bytes waits forever for
    # one who never does: the request's deadline ends the wait, and the request.
    class StopsReading(Visitor):
        async def send(self, message):
            await super().send(message)
            if len(self.body_chunks) >= 3:
                await asyncio.Event().wait()

    val = """
    export default () => new Response(new ReadableStream({
      pull(controller) { controller.enqueue(new Uint8Array(1024)); },
      cancel() { console.log("stream cancelled"); },
    }))
    """
    async with asyncio.timeout(10):
        outcome, _ = await serve(engine, val, StopsReading(), limits=Limits(timeout_seconds=0.5))

    assert (outcome.status, outcome.kill_reason) == ("timeout", "timeout")
    assert not outcome.client_disconnected and not outcome.response_complete
    assert "stream cancelled" in [line.message for line in outcome.logs]


async def test_a_visitor_leaving_aborts_the_request_and_cancels_the_stream(engine):
    val = """
    export default (req: Request) => {
      req.signal.addEventListener("abort", () => console.log("request aborted"));
      let timer: number;
      return new Response(new ReadableStream({
        start(controller) {
          timer = setInterval(() => controller.enqueue(new TextEncoder().encode("tick\\n")), 20);
        },
        cancel() { clearInterval(timer); console.log("stream cancelled"); },
      }));
    }
    """
    visitor = Visitor(leave_after_chunks=3)

    outcome, visitor = await serve(engine, val, visitor)

    assert outcome.status == "success"
    assert outcome.client_disconnected and not outcome.response_complete
    messages = [line.message for line in outcome.logs]
    assert "request aborted" in messages and "stream cancelled" in messages


async def test_a_handler_that_throws_gets_a_plain_500_and_the_owner_gets_the_stack(engine):
    val = """
    function handle(): Response {
      throw new Error("secret detail: db password is hunter2");
    }
    export default (req: Request) => handle()
    """
    outcome, visitor = await serve(engine, val)

    assert visitor.status == 500
    assert visitor.body == b"500 Internal Server Error\n"
    assert outcome.status == "error"
    assert outcome.error["message"] == "secret detail: db password is hunter2"
    assert "val.ts:3" in outcome.error["stack"]


async def test_a_val_that_fails_to_load_gets_500_with_the_error_for_its_owner(engine):
    outcome, visitor = await serve(engine, "export default (req: Request) => {{{")

    assert visitor.status == 500
    assert outcome.status == "error"
    assert "SyntaxError" in outcome.error["name"] + outcome.error["message"]


async def test_a_handler_must_return_a_response(engine):
    outcome, visitor = await serve(engine, "export default () => 'just a string'")

    assert visitor.status == 500
    assert "must return a Response" in outcome.error["message"]


async def test_a_handler_too_slow_to_answer_gets_504_and_its_process_lives_on(engine):
    key = fresh_key()
    val = """
    export default async (req: Request) => {
      if (new URL(req.url).pathname === "/slow") await new Promise((resolve) => setTimeout(resolve, 5000));
      return new Response(String(Deno.pid));
    }
    """
    slow, visitor = await serve(engine, val, Visitor(path="/slow"), key=key, limits=Limits(timeout_seconds=0.5))
    fast, _ = await serve(engine, val, key=key)

    assert visitor.status == 504
    assert (slow.status, slow.kill_reason) == ("timeout", "timeout")
    assert fast.http_status == 200 and fast.pid == slow.pid


async def test_a_handler_stuck_in_a_loop_gets_504_and_its_process_is_replaced(engine):
    key = fresh_key()
    val = """
    export default (req: Request) => {
      if (new URL(req.url).pathname === "/spin") while (true) {}
      return new Response("fine");
    }
    """
    stuck, visitor = await serve(engine, val, Visitor(path="/spin"), key=key, limits=Limits(timeout_seconds=0.5))
    after, _ = await serve(engine, val, key=key)

    assert visitor.status == 504 and stuck.status == "timeout"
    assert after.http_status == 200 and after.pid != stuck.pid


async def test_the_same_key_reuses_its_warm_process_and_its_globals(engine):
    key = fresh_key()
    val = "let count = 0; export default () => new Response(String(++count))"

    outcomes = [await serve(engine, val, key=key) for _ in range(3)]

    assert [visitor.body for _, visitor in outcomes] == [b"1", b"2", b"3"]
    assert len({outcome.pid for outcome, _ in outcomes}) == 1


async def test_another_val_version_or_principal_never_shares_a_process(engine):
    val = "let count = 0; export default () => new Response(String(++count))"
    keys = [("val", 7001, 1, "alice"), ("val", 7001, 2, "alice"), ("val", 7001, 1, "bob")]

    outcomes = [await serve(engine, val, key=key) for key in keys]

    assert [visitor.body for _, visitor in outcomes] == [b"1", b"1", b"1"]
    assert len({outcome.pid for outcome, _ in outcomes}) == 3


async def test_the_val_sees_its_owners_secrets_as_environment_variables(engine):
    val = "export default () => Response.json(Deno.env.toObject())"

    outcome, visitor = await serve(engine, val, env={"API_TOKEN": "t0ken"})

    assert json.loads(visitor.body) == {"API_TOKEN": "t0ken"}


async def test_a_warm_process_has_the_same_sandbox_as_an_evaluation(engine):
    val = """
    export default async () => {
      const attempts = {
        file: () => Deno.readTextFile("/etc/hostname"),
        loopback: () => fetch("http://127.0.0.1:8000/"),
        run: () => new Deno.Command("/usr/bin/id").output(),
      };
      const results: Record<string, string> = {};
      for (const [name, attempt] of Object.entries(attempts)) {
        try { await attempt(); results[name] = "allowed"; } catch (error) { results[name] = (error as Error).message; }
      }
      return Response.json(results);
    }
    """
    outcome, visitor = await serve(engine, val)

    refusals = json.loads(visitor.body)
    assert "Requires read access" in refusals["file"]
    assert "Requires net access" in refusals["loopback"]
    assert "Requires run access" in refusals["run"]


async def test_concurrent_requests_in_one_process_each_get_their_own_logs(engine):
    key = fresh_key()
    val = """
    export default async (req: Request) => {
      const n = new URL(req.url).searchParams.get("n");
      for (let step = 0; step < 3; step++) {
        console.log(`request ${n} step ${step}`);
        await new Promise((resolve) => setTimeout(resolve, 10 + Math.random() * 20));
      }
      return new Response(n);
    }
    """
    await serve(engine, val, key=key)  # warm it up, so all four share one process
    visitors = [Visitor(query=f"n={n}".encode()) for n in range(4)]

    results = await asyncio.gather(*(serve(engine, val, visitor, key=key) for visitor in visitors))

    assert len({outcome.pid for outcome, _ in results}) == 1
    for n, (outcome, visitor) in enumerate(results):
        assert visitor.body == str(n).encode()
        assert [line.message for line in outcome.logs] == [f"request {n} step {step}" for step in range(3)]


async def test_on_log_gets_each_requests_lines_as_they_happen(engine):
    seen = []
    val = "export default () => { console.log('one'); console.warn('two'); return new Response('') }"

    outcome, _ = await serve(engine, val, on_log=lambda level, message, ts: seen.append((level, message)))

    assert seen == [("log", "one"), ("warn", "two")]


async def test_a_request_flooding_stdout_with_empty_lines_gets_a_capped_log_at_little_cost(engine):
    started = time.process_time()
    val = """
    export default () => {
      const newlines = new Uint8Array(1 << 20).fill(10);
      const end = Date.now() + 1000;
      while (Date.now() < end) Deno.stdout.writeSync(newlines);
      return new Response("done");
    }
    """

    outcome, visitor = await serve(engine, val)

    assert visitor.body == b"done"
    assert len(outcome.logs) <= 1_000_000 // 32 + 1
    assert outcome.logs[-1].message.startswith("logs truncated")
    assert time.process_time() - started < 1.0


async def test_an_http_vals_lone_surrogates_reach_the_outcome_as_replacement_characters(engine):
    val = r"""export default () => { console.log('a\ud800'); throw new Error('m\udc00') }"""

    outcome, visitor = await serve(engine, val)

    assert visitor.status == 500
    assert outcome.logs[0].message == "a\ufffd"
    assert outcome.error["message"] == "m\ufffd"
    assert "\ud800" not in outcome.error["stack"] and "\udc00" not in outcome.error["stack"]


async def test_a_process_killed_mid_request_gets_502_and_the_next_request_a_fresh_one(engine):
    key = fresh_key()
    val = """
    export default async (req: Request) => {
      if (new URL(req.url).pathname === "/hang") await new Promise(() => {});
      return new Response(String(Deno.pid));
    }
    """
    first, _ = await serve(engine, val, key=key)
    request = asyncio.ensure_future(serve(engine, val, Visitor(path="/hang"), key=key))
    await asyncio.sleep(0.3)
    os.kill(first.pid, signal.SIGKILL)
    killed, visitor = await request
    after, after_visitor = await serve(engine, val, key=key)

    assert visitor.status == 502
    assert (killed.status, killed.kill_reason) == ("error", "crashed")
    assert after_visitor.status == 200 and after.pid != first.pid


async def test_a_process_killed_mid_stream_cuts_the_stream(engine):
    key = fresh_key()
    val = """
    export default () => new Response(new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(`pid ${Deno.pid}\\n`));
        setInterval(() => controller.enqueue(new TextEncoder().encode("more\\n")), 50);
      },
    }))
    """
    visitor = Visitor()
    request = asyncio.ensure_future(serve(engine, val, visitor, key=key))
    while not visitor.body_chunks:
        await asyncio.sleep(0.02)
    os.kill(int(visitor.body_chunks[0].split()[1]), signal.SIGKILL)
    outcome, visitor = await request

    assert visitor.status == 200  # already sent
    assert outcome.status == "error" and not outcome.response_complete


async def test_a_response_without_a_body_ends_at_once(engine):
    outcome, visitor = await serve(engine, "export default () => new Response(null, { status: 204 })")

    assert visitor.status == 204 and visitor.body == b"" and visitor.finished
    assert visitor.headers("content-length") == []


async def test_a_body_ready_at_once_gets_a_content_length_and_a_streamed_one_does_not(engine):
    # As under Deno's own server: a known length is declared, an unknown one is chunked.
    whole = await serve(engine, "export default () => new Response('Hello, world!')")
    declared = await serve(engine, "export default () => new Response('abc', { headers: { 'content-length': '3' } })")
    streamed = await serve(engine, """
    export default () => new Response(new ReadableStream({
      async start(controller) {
        controller.enqueue(new TextEncoder().encode("one "));
        await new Promise((resolve) => setTimeout(resolve, 20));
        controller.enqueue(new TextEncoder().encode("two"));
        controller.close();
      },
    }))
    """)

    assert whole[1].headers("content-length") == ["13"] and whole[1].body == b"Hello, world!"
    assert declared[1].headers("content-length") == ["3"]
    assert streamed[1].headers("content-length") == [] and streamed[1].body == b"one two"


async def test_an_error_thrown_from_a_timer_is_logged_and_the_process_lives_on(engine):
    key = fresh_key()
    val = """
    export default () => {
      setTimeout(() => { throw new Error("thrown later"); }, 0);
      Promise.reject(new Error("rejected later"));
      return new Promise((resolve) => setTimeout(() => resolve(new Response(String(Deno.pid))), 30));
    }
    """
    first, _ = await serve(engine, val, key=key)
    second, _ = await serve(engine, val, key=key)

    assert first.http_status == second.http_status == 200 and first.pid == second.pid
    messages = " ".join(line.message for line in first.logs)
    assert "thrown later" in messages and "rejected later" in messages


async def test_a_server_whose_receive_never_waits_does_not_stall_a_slow_answer(engine):
    # serve_http runs on the caller's loop: asking such a receive() for a disconnect
    # again and again would never let the loop run anything else.
    class Impatient(Visitor):
        async def receive(self):
            return {"type": "http.request", "body": b"", "more_body": False}

    val = "export default () => new Promise((r) => setTimeout(() => r(new Response('late')), 150))"
    async with asyncio.timeout(5):
        outcome, visitor = await serve(engine, val, Impatient())

    assert visitor.body == b"late" and outcome.status == "success"


async def test_a_whole_response_and_a_streamed_one_reach_the_visitor_alike(engine):
    small = await serve(engine, "export default () => new Response('x'.repeat(1000), { status: 201 })")
    large = await serve(engine, "export default () => new Response('y'.repeat(200_000), { status: 201 })")

    for (outcome, visitor), size in ((small, 1000), (large, 200_000)):
        assert (outcome.status, visitor.status, len(visitor.body)) == ("success", 201, size)
        assert visitor.finished and outcome.response_complete
    assert len(small[1].body_chunks) == 1  # head, body and end in one message, one send
