"""Imports: from the platform's module host (on loopback) and the allowed CDNs only,
while fetch to the module host stays denied. npm: and jsr: specifiers work."""

import functools
import http.server
import os
import shutil
import socket
import tempfile
import threading

import pytest

from tests.runtime.helpers import Listener, assert_still_works, start_engine


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".ts": "application/typescript"}

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def module_host():
    """A stand-in for the platform's module host: serves vals as modules on loopback."""
    directory = tempfile.mkdtemp()
    files = {
        "v/alice/greet.ts": "export default (name: string) => `hello ${name}`;\n",
        "v/alice/uses_greet.ts": "import greet from './greet.ts';\nexport default () => greet('bob');\n",
        "v/alice/script.ts": "console.log('script ran');\n",
        "v/mallory/static_file.ts": "import text from 'file:///etc/hostname' with { type: 'text' };\nexport default () => text;\n",
        "v/alice/throws.ts": "\n\nexport default () => {\n  throw new Error('from a module');\n};\n",
    }
    for path, source in files.items():
        os.makedirs(os.path.join(directory, os.path.dirname(path)), exist_ok=True)
        with open(os.path.join(directory, path), "w") as file:
            file.write(source)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=directory))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    shutil.rmtree(directory)


@pytest.fixture(scope="module")
def engine(module_host):
    engine = start_engine(module_host=module_host)
    yield engine
    engine.shutdown()


def reachable(host, port=443):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return True
    except OSError:
        return False


async def test_it_runs_a_val_from_the_module_host_by_url(engine, module_host):
    result = await engine.evaluate(url=f"http://{module_host}/v/alice/greet.ts", args=["carol"])

    assert result.value == "hello carol"


async def test_a_module_from_the_module_host_can_import_its_neighbours(engine, module_host):
    result = await engine.evaluate(url=f"http://{module_host}/v/alice/uses_greet.ts")

    assert result.value == "hello bob"


async def test_a_url_runs_as_a_script(engine, module_host):
    result = await engine.evaluate(url=f"http://{module_host}/v/alice/script.ts", mode="script")

    assert result.status == "success"
    assert [line.message for line in result.logs] == ["script ran"]


async def test_a_stack_from_a_url_val_points_into_its_source(engine, module_host):
    result = await engine.evaluate(url=f"http://{module_host}/v/alice/throws.ts")

    assert f"http://{module_host}/v/alice/throws.ts:4:9" in result.error["stack"]


async def test_inline_code_can_import_from_the_module_host(engine, module_host):
    result = await engine.evaluate(
        f"import greet from 'http://{module_host}/v/alice/greet.ts'; export default () => greet('dave')"
    )

    assert result.value == "hello dave"


async def test_fetching_from_the_module_host_is_still_denied(engine, module_host):
    result = await engine.evaluate(f"export default async () => (await fetch('http://{module_host}/v/alice/greet.ts')).text()")

    assert result.status == "error"
    assert "Requires net access" in result.error["message"]


async def test_a_module_from_the_module_host_cannot_read_files_either(engine, module_host):
    result = await engine.evaluate(url=f"http://{module_host}/v/mallory/static_file.ts")

    assert result.status == "error"
    assert "Remote modules are not allowed to import local modules" in result.error["message"]
    await assert_still_works(engine)


async def test_imports_from_other_hosts_are_denied():
    listener = Listener("127.0.0.1")
    engine = start_engine(pool_size=1)  # no module host configured
    try:
        result = await engine.evaluate(f"export default async () => await import('http://127.0.0.1:{listener.port}/x.ts')")
    finally:
        engine.shutdown()
        listener.close()

    assert result.status == "error"
    assert "Requires import access" in result.error["message"]
    assert listener.connections == 0


@pytest.mark.skipif(not reachable("registry.npmjs.org"), reason="the npm registry is not reachable from here")
async def test_npm_specifiers_work(engine):
    result = await engine.evaluate(
        "import isNumber from 'npm:is-number@7.0.0'; export default () => [isNumber(5), isNumber('x')]",
        limits=None,
    )

    assert result.status == "success", result.error
    assert result.value == [True, False]


@pytest.mark.skipif(not reachable("jsr.io"), reason="jsr.io is not reachable from here")
async def test_jsr_specifiers_work(engine):
    result = await engine.evaluate(
        "import { assertEquals } from 'jsr:@std/assert@1'; export default () => { assertEquals(1, 1); return 'ok' }"
    )

    assert result.value == "ok", result.error
