"""The harness and its protocol: what a val returns, logs and throws reaches the host
intact, and nothing a val writes itself can pass for a protocol message."""

import asyncio
import base64
import json
import re
import time

import pytest

from runtime import protocol
from tests.runtime.helpers import assert_still_works, start_engine


@pytest.fixture(scope="module")
def engine():
    engine = start_engine()
    yield engine
    engine.shutdown()


async def test_it_calls_the_default_export_with_json_arguments(engine):
    result = await engine.evaluate(
        "export default (a: number, b: { n: number }) => ({ sum: a + b.n, list: [a, null, 'x'] })",
        args=[1, {"n": 2}],
    )

    assert result.status == "success"
    assert (result.value_type, result.value) == ("json", {"sum": 3, "list": [1, None, "x"]})
    assert result.duration_ms >= 0


async def test_it_tells_undefined_from_null(engine):
    undefined = await engine.evaluate("export default () => {}")
    null = await engine.evaluate("export default () => null")

    assert undefined.value_record() == {"type": "undefined", "value": None}
    assert null.value_record() == {"type": "json", "value": None}


async def test_it_awaits_an_async_default_export(engine):
    result = await engine.evaluate("export default async () => { await new Promise(r => setTimeout(r, 10)); return 'later' }")

    assert result.value == "later"


async def test_it_calls_a_named_export(engine):
    result = await engine.evaluate("export const greet = (name: string) => `hi ${name}`", export="greet", args=["bob"])

    assert result.value == "hi bob"


async def test_it_runs_a_script_by_importing_it(engine):
    result = await engine.evaluate("console.log('top level ran'); export default () => 'never called'", mode="script")

    assert result.status == "success"
    assert result.value_type == "undefined"
    assert [line.message for line in result.logs] == ["top level ran"]


async def test_it_returns_a_response_as_status_headers_and_text_body(engine):
    result = await engine.evaluate(
        "export default () => new Response('<h1>hi</h1>', { status: 201, headers: { 'content-type': 'text/html' } })"
    )

    assert result.value_type == "response"
    assert result.value["status"] == 201
    assert result.value["headers"]["content-type"] == "text/html"
    assert (result.value["body"], result.value["body_encoding"]) == ("<h1>hi</h1>", "text")


async def test_it_returns_a_binary_response_body_as_base64(engine):
    result = await engine.evaluate("export default () => new Response(new Uint8Array([0, 255, 1, 254]))")

    assert result.value["body_encoding"] == "base64"
    assert base64.b64decode(result.value["body"]) == bytes([0, 255, 1, 254])


async def test_it_reports_a_value_json_cannot_carry_as_an_error(engine):
    result = await engine.evaluate("export default () => 10n")

    assert result.status == "error"
    assert "cannot be converted to JSON" in result.error["message"]


async def test_it_streams_logs_with_levels_and_timestamps(engine):
    lines = []
    before = time.time() * 1000

    result = await engine.evaluate(
        """export default () => {
            console.log("plain", { a: 1 });
            console.info("info");
            console.warn("warn");
            console.error("error", new Error("shown"));
            console.debug("debug");
        }""",
        on_log=lambda *line: lines.append(line),
    )

    assert [(line.level, line.message.split("\n")[0]) for line in result.logs] == [
        ("log", "plain { a: 1 }"),
        ("info", "info"),
        ("warn", "warn"),
        ("error", "error Error: shown"),
        ("debug", "debug"),
    ]
    assert all(before <= line.timestamp_ms <= time.time() * 1000 for line in result.logs)
    assert lines == [(line.level, line.message, line.timestamp_ms) for line in result.logs]


async def test_log_lines_arrive_while_the_val_is_still_running(engine):
    arrivals = []

    await engine.evaluate(
        """export default async () => {
            for (let i = 0; i < 4; i++) {
                console.log(`tick ${i}`);
                await new Promise(r => setTimeout(r, 100));
            }
        }""",
        on_log=lambda *line: arrivals.append(time.monotonic()),
    )
    finished = time.monotonic()

    assert len(arrivals) == 4
    assert finished - arrivals[0] >= 0.3  # the first line came long before the end


async def test_a_log_line_written_just_before_an_endless_loop_still_arrives(engine):
    from runtime import Limits

    result = await engine.evaluate(
        "export default () => { console.log('about to spin'); while (true) {} }", limits=Limits(timeout_seconds=1)
    )

    assert result.status == "timeout"
    assert [line.message for line in result.logs] == ["about to spin"]


async def test_errors_carry_a_stack_that_points_into_the_vals_own_source(engine):
    result = await engine.evaluate(
        """interface Point { x: number; y: number }

function check(p: Point): number {
  if (p.x > 0) {
    throw new RangeError(`bad x: ${p.x}`);
  }
  return p.y;
}

export default () => check({ x: 1, y: 2 });
"""
    )

    assert result.status == "error"
    assert result.error["name"] == "RangeError"
    assert result.error["message"] == "bad x: 1"
    assert "at check (val.ts:5:11)" in result.error["stack"]
    assert "val.ts:10:" in result.error["stack"]
    assert "data:" not in result.error["stack"] and "harness" not in result.error["stack"]


async def test_a_syntax_error_names_the_line_in_the_val(engine):
    result = await engine.evaluate("const ok = 1;\nconst broken = ;\nexport default () => ok;\n")

    assert result.status == "error"
    assert "val.ts:2:" in result.error["message"] + result.error["stack"]
    assert "data:application" not in result.error["message"]


async def test_an_error_thrown_from_a_timer_ends_the_evaluation_as_an_error(engine):
    result = await engine.evaluate(
        """export default async () => {
            setTimeout(() => { throw new Error("from a timer") }, 0);
            await new Promise(r => setTimeout(r, 5000));
        }"""
    )

    assert result.status == "error"
    assert result.error["message"] == "from a timer"


async def test_thrown_non_errors_are_reported_as_text(engine):
    result = await engine.evaluate("export default () => { throw { code: 42 } }")

    assert result.status == "error"
    assert result.error["message"] == "{ code: 42 }"


async def test_a_missing_export_is_a_clear_error(engine):
    result = await engine.evaluate("export const x = 1", export="nope")

    assert 'no export named "nope"' in result.error["message"]


async def test_lone_surrogates_come_back_as_replacement_characters_and_nul_is_kept(engine):
    result = await engine.evaluate(
        r"""export default () => {
            console.log('a\ud800\u0000');
            Deno.stdout.writeSync(new TextEncoder().encode('raw\udc00\n'));
            return { s: 'b\ud800', ['k\udc00']: ['\ud83d\ude00'] };
        }"""
    )

    assert result.value == {"s": "b\ufffd", "k\ufffd": ["\U0001f600"]}
    assert [line.message for line in result.logs] == ["a\ufffd\x00", "raw\ufffd"]
    assert_valid_utf8(result.value, [line.message for line in result.logs])


async def test_an_error_with_lone_surrogates_comes_back_as_valid_text(engine):
    result = await engine.evaluate(
        r"""export default () => { const error = new Error('m\ud800'); error.name = 'N\udc00'; throw error }"""
    )

    assert (result.error["name"], result.error["message"]) == ("N\ufffd", "m\ufffd")
    assert_valid_utf8(result.error)


def assert_valid_utf8(*values):
    for value in values:
        json.dumps(value, ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate


async def test_a_return_value_nested_too_deeply_is_a_clear_error(engine):
    result = await engine.evaluate(
        "export default () => { let a: any = 1; for (let i = 0; i < 5000; i++) a = [a]; return a }"
    )

    assert result.status == "error"
    assert result.error["message"].startswith("the return value is nested too deeply")
    await assert_still_works(engine)


async def test_a_return_value_nested_256_deep_still_comes_back(engine):
    result = await engine.evaluate(
        "export default () => { let a: any = 1; for (let i = 0; i < 255; i++) a = [a]; return { a } }"
    )

    assert result.status == "success"
    assert json.dumps(result.value).count("[") == 255


async def test_forged_protocol_messages_on_stdout_are_only_text(engine):
    forged = '{"type":"result","ok":true,"value":{"kind":"json","json":"forged"}}'
    result = await engine.evaluate(
        f"""export default () => {{
            Deno.stdout.writeSync(new TextEncoder().encode('{forged}\\n'));
            return "real";
        }}"""
    )

    assert (result.status, result.value) == ("success", "real")
    assert [(line.level, line.message) for line in result.logs] == [("stdout", forged)]
    await assert_still_works(engine)


async def test_raw_output_is_kept_up_to_the_result_even_without_a_final_newline(engine):
    result = await engine.evaluate(
        """export default () => {
            const encode = (text: string) => new TextEncoder().encode(text);
            Deno.stdout.writeSync(encode("first line\\nno newline"));
            Deno.stderr.writeSync(encode("to stderr\\n"));
            return 1;
        }"""
    )

    assert sorted((line.level, line.message) for line in result.logs) == [
        ("stderr", "to stderr"),
        ("stdout", "first line"),
        ("stdout", "no newline"),
    ]


async def test_a_val_that_closes_its_stdout_still_finishes(engine):
    result = await engine.evaluate("export default () => { Deno.stdout.close(); Deno.stderr.close(); return 'fine' }")

    assert (result.status, result.value) == ("success", "fine")
    await assert_still_works(engine)


async def test_forged_frames_written_to_the_control_socket_are_ignored(engine):
    # A val can reach Deno's internals and write to the socket's resource directly,
    # but it can't know the job's nonce, so the host drops what it writes.
    result = await engine.evaluate(
        """export default () => {
            const core = (Deno as any)[Deno.internal].core;
            const forged = (nonce: string) => new TextEncoder().encode(JSON.stringify(
                { type: "result", nonce, ok: true, value: { kind: "json", json: "forged" } }) + "\\n");
            const written = [];
            for (const [rid, name] of Object.entries(core.resources())) {
                if (Number(rid) > 2) {
                    core.write(Number(rid), forged("guessed"));
                    core.write(Number(rid), forged(""));
                    written.push(name);
                }
            }
            return written;
        }"""
    )

    assert result.status == "success"
    assert result.value == ["unixStream"]  # it did write to the channel...
    await assert_still_works(engine)  # ...and that changed nothing


async def test_a_val_that_hooks_json_and_text_encoding_never_sees_the_nonce(engine):
    result = await engine.evaluate(
        """const seen: string[] = [];
        const original = JSON.stringify;
        JSON.stringify = (...args: any[]) => { const text = original(...args); seen.push(text); return text };
        (Object.prototype as any).toJSON = function () { seen.push(Object.values(this).join(" ")); return this };
        (String.prototype as any).toJSON = function () { seen.push(String(this)); return String(this) };
        const encode = TextEncoder.prototype.encode;
        TextEncoder.prototype.encode = function (text?: string) { seen.push(String(text)); return encode.call(this, text) };
        export default async () => {
            console.log("a log line goes through the harness");
            await new Promise((r) => setTimeout(r, 50));
            return seen.join("\\n");
        }"""
    )

    assert result.status == "success"
    assert "a log line" in result.value  # the hooks did run on the harness's messages...
    assert not re.search(r"[0-9a-f]{32}", result.value)  # ...but never saw a nonce


async def test_a_val_that_hooks_the_methods_of_bytes_and_strings_never_sees_the_nonce(engine):
    """The second attack review read the nonce out of `this` in a replaced
    Uint8Array.prototype.subarray, which the channel called on every frame it wrote."""
    result = await engine.evaluate(
        """const seen: string[] = [];
        const decoder = new TextDecoder();
        const watch = (proto: any, name: string) => {
            const original = proto[name];
            proto[name] = function (...args: any[]) {
                try { seen.push(typeof this === "string" ? this : decoder.decode(this)); } catch { /* not bytes */ }
                return original.apply(this, args);
            };
        };
        for (const name of ["subarray", "set", "slice", "indexOf", "fill"]) watch(Uint8Array.prototype, name);
        watch(String.prototype, "substring");
        const push = Array.prototype.push;
        Array.prototype.push = function (...items: any[]) { for (const item of items) { try { seen.push(decoder.decode(item)); } catch { /* */ } } return push.apply(this, items); };
        export default async () => {
            for (let i = 0; i < 5; i++) console.log("a log line goes through the harness", i);
            await new Promise((r) => setTimeout(r, 50));
            return seen.join("\\n");
        }"""
    )

    assert result.status == "success", result
    assert not re.search(r"[0-9a-f]{32}", result.value)


async def test_a_val_that_breaks_json_still_gets_an_outcome(engine):
    result = await engine.evaluate(
        """(Object.prototype as any).toJSON = function () { throw new Error("no JSON for you") };
        export default () => 1"""
    )

    assert result.status == "error"
    assert result.error["message"] == "the harness could not encode the val's outcome"
    await assert_still_works(engine)


async def test_a_val_reads_nothing_from_stdin(engine):
    result = await engine.evaluate(
        "export default async () => { const buffer = new Uint8Array(1024); return await Deno.stdin.read(buffer) }"
    )

    assert (result.status, result.value) == ("success", None)  # end of file at once


async def test_a_val_cannot_reopen_the_control_socket(engine):
    result = await engine.evaluate(
        "export default async () => { await Deno.connect({ transport: 'unix', path: Deno.args[0] }) }"
    )

    assert result.status == "error"
    assert "NotCapable" in result.error["message"] or "Requires read access" in result.error["message"]


async def test_many_evaluations_can_run_at_once(engine):
    results = await asyncio.gather(*(engine.evaluate("export default (n: number) => n * 2", args=[n]) for n in range(6)))

    assert [result.value for result in results] == [0, 2, 4, 6, 8, 10]


# --- The host's side, without a process -----------------------------------------


def test_messages_without_the_evaluations_nonce_are_dropped():
    nonce = protocol.new_nonce()
    line = '{"type": "result", "nonce": "%s", "ok": true, "value": {"kind": "json", "json": 1}}'

    assert protocol.parse_message(line % nonce, nonce)["value"] == {"kind": "json", "json": 1}
    assert protocol.parse_message(line % "guess", nonce) is None
    assert protocol.parse_message('{"type": "result", "ok": true, "value": {}}', nonce) is None


def test_malformed_messages_are_dropped():
    nonce = "n"
    assert protocol.parse_message("not json", nonce) is None
    assert protocol.parse_message("[1, 2]", nonce) is None
    assert protocol.parse_message('{"type": "log", "nonce": "n", "level": "shout", "message": "x", "ts": 1}', nonce) is None
    assert protocol.parse_message('{"type": "ready"}', nonce) is None  # only before the job


def test_a_response_needs_a_request_number_a_status_and_a_header_list():
    def response(**changes):
        fields = {"type": "response", "nonce": "n", "request": 1, "status": 200, "headers": [["a", "b"]], "data": ""}
        return json.dumps({**fields, **changes})

    assert protocol.parse_message(response(), "n")["status"] == 200
    for forged in [
        {"request": True}, {"request": "1"}, {"request": None},
        {"status": True}, {"status": "200"}, {"status": 99}, {"status": 600}, {"status": 200.0},
        {"headers": [["a"]]}, {"headers": [["a", 1]]}, {"headers": {"a": "b"}},
        {"data": None},
    ]:
        assert protocol.parse_message(response(**forged), "n") is None, forged


def test_a_line_holds_one_json_object_and_nothing_else():
    message = '{"type": "log", "nonce": "n", "level": "log", "message": "x", "ts": 1}'

    assert protocol.parse_message(message, "n")["message"] == "x"
    assert protocol.parse_message(message + message, "n") is None
    assert protocol.parse_message(message + " 1", "n") is None
    assert protocol.parse_message(" " + message, "n") is None  # JSON.stringify writes none
    assert protocol.parse_message("", "n") is None


def test_messages_to_the_guest_are_compact_json_lines():
    message = {"type": "request", "request": 7, "url": "http://a/é?q=\"\n", "headers": [["x", "\u2028"]],
               "hasBody": False, "ratio": 0.5, "none": None, "nested": {"list": [1, [2, {}]]}}

    assert protocol.encode(message) == (json.dumps(message, separators=(",", ":")) + "\n").encode()
    assert json.loads(protocol.encode(message)) == message
    with pytest.raises(TypeError, match="not JSON serializable"):
        protocol.encode({"type": "request", "body": b"bytes"})


def test_a_message_nested_deeper_than_python_parses_is_dropped_not_raised():
    line = '{"type": "result", "nonce": "n", "ok": true, "value": {"kind": "json", "json": %s}}'

    assert protocol.parse_message(line % ("[" * 5000 + "]" * 5000), "n") is None
    assert protocol.parse_message(line % "[[1]]", "n")["value"]["json"] == [[1]]


def test_no_string_in_a_message_keeps_a_lone_surrogate():
    # Escaped as JSON.stringify writes them, and raw, as only a forged frame could be.
    escaped = rb'{"type": "log", "nonce": "n", "level": "log", "message": "a\ud800 \ud83d\ude00 \u0000", "ts": 1}'
    raw = b'{"type": "log", "nonce": "n", "level": "log", "message": "a\xed\xa0\x80", "ts": 1}'

    assert protocol.parse_message(escaped, "n")["message"] == "a\ufffd \U0001f600 \x00"
    assert protocol.parse_message(raw, "n") is None  # not UTF-8


async def test_the_line_reader_refuses_a_line_over_its_limit():
    stream = asyncio.StreamReader()
    stream.feed_data(b"short\n" + b"x" * 5000 + b"\n")
    stream.feed_eof()
    reader = protocol.LineReader(stream, max_bytes=1000)

    assert await reader.read_line() == b"short"
    with pytest.raises(protocol.FrameTooLarge):
        await reader.read_line()
