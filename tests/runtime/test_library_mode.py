"""Restricted Library Mode in the runtime: import tokens, the library host, and the Worker.

A stand-in module host plays the platform's part: with a token whose grant is the
owner, it serves a val's code; with another principal's token, a stub that loads the
val in the Worker; without a token, public vals only.
"""

import http.server
import re
import threading

import pytest

import runtime
from tests.runtime.helpers import start_engine

VALS = {
    ("alice", "app"): ("private", "export default () => 1;\n"),
    ("alice", "secret_notes"): ("private", "export const notes = 'alice private';\n"),
    ("bob", "private_lib"): ("private", "export const notes = 'bob private';\n"),
    ("bob", "lib"): (
        "public",
        """
export const VERSION = "1.2";
export function greet(name: string) { return `hello ${name}`; }
export async function snoop() {
  const found: Record<string, unknown> = {};
  found.env = typeof Deno.env.get("ALICE_SECRET");
  found.envObject = Deno.env.toObject();
  found.processEnv = typeof (globalThis as any).process?.env?.ALICE_SECRET;
  for (const url of ["/v/alice/secret_notes.ts", "/v/bob/private_lib.ts", "http://MODULE_HOST/v/alice/secret_notes.ts"]) {
    try { await import(url); found[url] = "imported"; } catch (error) { found[url] = "refused"; }
  }
  console.log("bob's lib logs this");
  return found;
}
export function patchGlobals() {
  // Monkey-patching in bob's isolate can't reach alice's.
  (globalThis as any).fetch = () => { throw new Error("patched by bob"); };
  Object.prototype.toString = () => "patched by bob";
  JSON.stringify = () => "patched by bob";
  return "patched";
}
export function returnsAFunction() { return () => 1; }
export function stackOfCaller() { return new Error("where am I").stack; }
""",
    ),
}

STUB_NAMES = {("bob", "lib"): ["VERSION", "greet", "snoop", "patchGlobals", "returnsAFunction", "stackOfCaller"]}


def bearer(headers):
    match = re.fullmatch(r"Bearer (\S+)", headers.get("Authorization") or "")
    return match.group(1) if match else None


class ModuleHost(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append((self.headers.get("Host"), self.path, bearer(self.headers)))
        match = re.fullmatch(r"/v/(\w+)/(\w+)\.ts", self.path)
        if not match or (match.group(1), match.group(2)) not in VALS:
            return self.answer(404, "not found")
        owner, name = match.groups()
        privacy, code = VALS[owner, name]
        principal = runtime.import_grant(bearer(self.headers))
        if principal is not None and principal != owner:
            if privacy == "private":
                return self.answer(404, "not found")
            library_url = f"http://{self.server.library_host}/v/{owner}/{name}.ts"
            names = STUB_NAMES[owner, name]
            stub = f"const lib = await globalThis[Symbol.for('valtown.library')]({library_url!r}, {names!r});\n"
            stub += "".join(f"export const {n} = lib[{n!r}];\n" for n in names)
            return self.answer(200, stub)
        if principal is None and privacy == "private":
            return self.answer(404, "not found")
        return self.answer(200, code.replace("MODULE_HOST", self.server.module_host))

    def answer(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/typescript")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def module_host():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ModuleHost)
    port = server.server_address[1]
    server.module_host, server.library_host, server.requests = f"127.0.0.1:{port}", f"localhost:{port}", []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def engine(module_host):
    engine = start_engine(module_host=module_host.module_host, library_host=module_host.library_host)
    yield engine
    engine.shutdown()


def alice_app(module_host, body):
    return f"import * as lib from 'http://{module_host.module_host}/v/bob/lib.ts';\n{body}"


async def run_as_alice(engine, code, **kwargs):
    return await engine.evaluate(code, env={"ALICE_SECRET": "alice-s3cret"}, import_grant="alice", library_worker=True, **kwargs)


async def test_another_users_val_runs_in_the_worker_with_proxied_async_exports(engine, module_host):
    result = await run_as_alice(engine, alice_app(module_host, "export default async () => [lib.VERSION, await lib.greet('carol')];"))
    assert result.status == "success", result.error
    assert result.value == ["1.2", "hello carol"]


async def test_the_imported_val_sees_no_secrets_and_no_private_vals(engine, module_host):
    result = await run_as_alice(engine, alice_app(module_host, "export default () => lib.snoop();"))
    assert result.status == "success", result.error
    found = result.value
    assert found["env"] == "undefined" and found["envObject"] == {} and found["processEnv"] == "undefined"
    assert found["/v/alice/secret_notes.ts"] == "refused"
    assert found["/v/bob/private_lib.ts"] == "refused"
    assert found[f"http://{module_host.module_host}/v/alice/secret_notes.ts"] == "refused"
    assert ("log", "bob's lib logs this") in [(line.level, line.message) for line in result.logs]


async def test_monkey_patching_in_the_library_does_not_reach_the_importer(engine, module_host):
    code = alice_app(
        module_host,
        """export default async () => {
  await lib.patchGlobals();
  return [typeof fetch, Object.prototype.toString.call([]), JSON.stringify({ a: 1 }), Deno.env.get("ALICE_SECRET")];
};""",
    )
    result = await run_as_alice(engine, code)
    assert result.value == ["function", "[object Array]", '{"a":1}', "alice-s3cret"]


async def test_a_value_that_cannot_cross_gives_a_clear_error(engine, module_host):
    result = await run_as_alice(engine, alice_app(module_host, "export default () => lib.returnsAFunction();"))
    assert result.status == "error"
    assert "can't cross back from Restricted Library Mode" in result.error["message"]
    result = await run_as_alice(engine, alice_app(module_host, "export default () => lib.greet(() => 1);"))
    assert result.status == "error"
    assert "only structured-cloneable values" in result.error["message"]


async def test_the_libraries_stack_traces_never_show_the_importers_frames(engine, module_host):
    result = await run_as_alice(engine, alice_app(module_host, "export default () => lib.stackOfCaller();"))
    assert result.status == "success"
    assert "bob/lib.ts" in result.value
    assert "application/typescript" not in result.value and "val.ts" not in result.value


async def test_the_token_goes_only_to_the_module_host(engine, module_host):
    module_host.requests.clear()
    await run_as_alice(engine, alice_app(module_host, "export default () => lib.greet('x');"))
    for host, path, token in module_host.requests:
        if host == module_host.library_host:
            assert token is None, (host, path)
    assert any(host == module_host.module_host and token for host, path, token in module_host.requests)


async def test_the_main_isolate_cannot_import_from_the_library_host(engine, module_host):
    code = f"export default async () => {{ try {{ await import('http://{module_host.library_host}/v/bob/lib.ts'); return 'imported'; }} catch (e) {{ return String(e); }} }};"
    result = await run_as_alice(engine, code)
    assert "Requires import access" in result.value


async def test_a_token_grants_nothing_once_its_process_is_gone(engine, module_host):
    module_host.requests.clear()
    await run_as_alice(engine, alice_app(module_host, "export default () => 1;"))
    tokens = {token for _, _, token in module_host.requests if token}
    assert tokens and all(runtime.import_grant(token) is None for token in tokens)


async def test_without_the_worker_another_users_val_is_refused_clearly(engine, module_host):
    result = await engine.evaluate(alice_app(module_host, "export default () => lib.greet('x');"), import_grant="alice")
    assert result.status == "error"
    assert "Restricted Library Mode" in result.error["message"]


def test_a_grant_is_found_through_the_shared_store_from_another_process():
    from runtime import grants

    class Store(dict):
        def set(self, key, value, timeout):
            self[key] = value

        def delete(self, key):
            self.pop(key, None)

    store = Store()
    grants.use_shared_store(store)
    try:
        token = grants.new_token()
        grants.grant(token, {"principal_id": 7})
        assert token not in str(store)  # only a hash of the token is shared
        grants._grants.clear()  # as seen from another process
        assert grants.import_grant(token) == {"principal_id": 7}
        grants.revoke(token)
        grants.grant(token, {"principal_id": 7})
        grants.revoke(token)
        assert grants.import_grant(token) is None
    finally:
        grants.use_shared_store(None)
