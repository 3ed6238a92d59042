"""One module, one URL, and no tenant's modules in another tenant's cache.

Deno caches what it imports by the URL as written. A module host that answered
`/%76/alice/x.ts` like `/v/alice/x.ts` let one private val live in the cache under
spellings that no reload rule matched, where any other tenant importing that spelling
was served it. So:

- the module host answers only the canonical spelling of a module's path (the raw
  path, before any decoding) and its query, and any other spelling is the same 404 as
  a val that doesn't exist;
- each sandboxed process has a module cache of its own for everything fetched from
  the module host and for the val's own code, removed with the process: only npm
  packages and the public CDNs' modules are shared between processes.
"""

import base64
import http.client
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from urllib.parse import unquote

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

import runtime
from runtime import Engine, sandbox
from tests.factory import make_user, make_val
from tests.live import ROOT, LiveServer
from tests.runtime.helpers import runtime_config
from vals.models import Val

# --- The module host answers only canonical paths ------------------------------------


def get(raw_path, query=""):
    """GETs raw_path as a client sent it, through Django's ASGI handler: the scope's
    raw_path as sent, its path percent-decoded, as ASGI servers (daphne) pass them."""
    return async_to_sync(AsyncClient().request)(
        method="GET", path=unquote(raw_path), raw_path=raw_path.encode(), query_string=query.encode()
    )


def page_of(response):
    return re.sub(rb'"X-CSRFToken": "[^"]*"|name="csrfmiddlewaretoken" value="[^"]*"|nonce="[^"]*"', b"", response.content)


@pytest.fixture
def alices_vals(db):
    alice = make_user("alice")
    public = make_val(alice, name="lib", code="export const where = 'public lib';\n")
    public.save_version("export const where = 'public lib, v1';\n")
    return alice, public


def test_the_canonical_paths_are_served(alices_vals):
    assert b"public lib, v1" in get("/v/alice/lib.ts").content
    assert b"'public lib'" in get("/v/alice/lib.ts", "v=0").content
    assert b"'public lib, v1'" in get("/v/alice/lib.ts", "v=1").content
    assert get("/std/email.ts").status_code == 200


NON_CANONICAL_VAL_PATHS = [
    ("/%76/alice/lib.ts", ""),  # a percent-encoded letter
    ("/v/%61lice/lib.ts", ""),
    ("/v/alice/%6Cib.ts", ""),
    ("/v/alice/lib%2Ets", ""),
    ("/v%2Falice%2Flib.ts", ""),  # an encoded slash
    ("/v/ALICE/lib.ts", ""),  # not the owner's own spelling of their name
    ("/v/alice/LIB.ts", ""),
    ("/v/alice/lib.ts", "v=0&v=1"),  # any query but one ?v=<number>
    ("/v/alice/lib.ts", "v=00"),
    ("/v/alice/lib.ts", "v=0&cache=bust"),
    ("/v/alice/lib.ts", "cache=bust"),
    ("/v/alice/lib.ts", "V=0"),
    ("/v/alice/lib.ts", "v=%30"),
    ("/v/alice/lib.ts", "v"),
    ("/v/alice/lib.ts", "v="),
]


@pytest.mark.parametrize(("raw_path", "query"), NON_CANONICAL_VAL_PATHS)
def test_any_other_spelling_of_a_val_is_the_same_404_as_a_missing_val(alices_vals, raw_path, query):
    response = get(raw_path, query)
    missing = get("/v/alice/no_such_val.ts")

    assert response.status_code == missing.status_code == 404
    assert page_of(response) == page_of(missing)
    assert b"public lib" not in response.content


@pytest.mark.parametrize(
    ("raw_path", "query"),
    [
        ("/std/%65mail.ts", ""),
        ("/std/email%2Ets", ""),
        ("/%73td/email.ts", ""),
        ("/std/email", ""),  # the name without .ts
        ("/std/email.ts", "v=1"),  # std modules take no query at all
        ("/std/email.ts", "x"),
    ],
)
def test_any_other_spelling_of_a_std_module_is_a_404(db, raw_path, query):
    response = get(raw_path, query)

    assert response.status_code == 404
    assert page_of(response) == page_of(get("/std/nothing.ts"))


def test_a_private_val_is_refused_under_any_spelling_even_to_its_owner(alices_vals):
    alice, _ = alices_vals
    make_val(alice, name="diary", code="export default 'dear diary';\n", privacy=Val.Privacy.PRIVATE)
    client = AsyncClient()
    client.force_login(alice)

    def owner_get(raw_path):
        return async_to_sync(client.request)(method="GET", path=unquote(raw_path), raw_path=raw_path.encode(), query_string=b"")

    assert b"dear diary" in owner_get("/v/alice/diary.ts").content
    assert owner_get("/%76/alice/diary.ts").status_code == 404
    assert owner_get("/v/alice/%64iary.ts").status_code == 404


# --- The runtime: no process is served another's cache ---------------------------------
#
# A module host as lenient as the old one (it decodes the path and ignores the query),
# so that the cache is the only wall left.

ALICES_SECRET_CODE = "export default 'alice private module';\n"


class LenientModuleHost(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        principal = runtime.import_grant(token)
        self.server.requests.append((self.path, principal))
        if unquote(self.path.split("?")[0]) == "/v/alice/x.ts" and principal == "alice":
            body, status = ALICES_SECRET_CODE.encode(), 200
        else:
            body, status = b"not found", 404
        self.send_response(status)
        self.send_header("Content-Type", "application/typescript")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def lenient_host():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), LenientModuleHost)
    server.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def engine(lenient_host):
    work_dir = tempfile.mkdtemp(prefix="valtown-module-cache-")
    engine = Engine(runtime_config(work_dir=work_dir, module_host=f"127.0.0.1:{lenient_host.server_address[1]}"))
    engine.start()
    engine.work_dir = work_dir
    yield engine
    engine.shutdown()
    shutil.rmtree(work_dir, ignore_errors=True)


IMPORTER = "export default async () => { try { return (await import(URL)).default; } catch (error) { return String(error); } };"


@pytest.mark.parametrize("spelling", ["/%76/alice/x.ts", "/v/%61lice/x.ts", "/v/alice/x.ts?fresh=1", "/v/alice/x.ts"])
async def test_what_one_tenant_imported_is_never_served_to_another_from_the_cache(engine, lenient_host, spelling):
    url = f"http://127.0.0.1:{lenient_host.server_address[1]}{spelling}"
    code = IMPORTER.replace("URL", json.dumps(url))

    alices = await engine.evaluate(code, import_grant="alice")
    lenient_host.requests.clear()
    bobs = await engine.evaluate(code, import_grant="bob")

    assert alices.value == "alice private module"
    assert "alice private" not in json.dumps(bobs.value) and "Module not found" in bobs.value
    assert lenient_host.requests == [(spelling, "bob")]  # asked the host, which said no



def test_a_processs_own_cache_is_its_uids_alone_and_links_only_to_what_is_shared(engine, lenient_host, tmp_path):
    config = runtime_config(work_dir=engine.work_dir, module_host=f"127.0.0.1:{lenient_host.server_address[1]}")
    process_dir = tmp_path / "p"
    process_dir.mkdir()

    deno_dir = sandbox.process_deno_dir(config, str(process_dir), 64999 if sandbox.is_root() else None)

    info = os.stat(deno_dir)
    assert info.st_mode & 0o777 == 0o700
    assert info.st_uid == (64999 if sandbox.is_root() else os.geteuid())
    links = {}
    for root, directories, names in os.walk(deno_dir):
        for name in directories + names:
            path = os.path.join(root, name)
            if os.path.islink(path):
                links[os.path.relpath(path, deno_dir)] = os.readlink(path)
    assert all(target == os.path.join(config.deno_dir_path, path) for path, target in links.items())
    assert {"npm", "node_analysis_cache_v2", "location_data", "gen/file", "remote/https/esm.sh", "gen/https/esm.sh"} <= set(links)
    assert not [path for path in links if "127.0.0.1" in path or path.startswith(("gen/data", "dep_analysis", "v8_code"))]



def test_a_shared_cache_from_before_loses_what_only_a_processs_own_may_hold(engine, tmp_path):
    config = runtime_config(work_dir=engine.work_dir, deno_dir=str(tmp_path / "shared"))
    left_over = {
        "gen/data/1234.js": "alice's val, compiled",
        "remote/http/127.0.0.1_port_8000/5678": "alice's private val",
        "gen/http/127.0.0.1_port_8000/5678.js": "alice's private val, compiled",
        "remote/https/valtown.example.com/9abc": "a val once public",
        "v8_code_cache_v2": "every module's compiled code",
        "v8_code_cache_v2-wal": "more of it",
        "dep_analysis_cache_v2": "every module's imports",
    }
    kept = {"npm/registry.npmjs.org/is-number/registry.json": "{}", "remote/https/esm.sh/def0": "a CDN module"}
    for path, text in {**left_over, **kept}.items():
        os.makedirs(os.path.dirname(tmp_path / "shared" / path), exist_ok=True)
        (tmp_path / "shared" / path).write_text(text)

    sandbox.prepare_directories(config)

    assert [path for path in left_over if (tmp_path / "shared" / path).exists()] == []
    assert all((tmp_path / "shared" / path).read_text() == text for path, text in kept.items())



def test_the_directories_of_a_killed_servers_processes_are_removed_by_the_next_pool(engine):
    config = runtime_config(work_dir=engine.work_dir)  # where the engine's own processes live on
    processes = os.path.join(engine.work_dir, "processes")
    engines_own = set(os.listdir(processes))
    orphan, alive = (tempfile.mkdtemp(prefix="p-", dir=processes) for _ in range(2))
    for directory in (orphan, alive):
        os.makedirs(os.path.join(directory, "deno-dir", "gen", "data"))
        with open(os.path.join(directory, "deno-dir", "gen", "data", "1234.js"), "w") as file:
            file.write("alice's val, compiled")
    os.close(sandbox.lock_process_dir(orphan))  # its server is gone, and its lock with it
    held = sandbox.lock_process_dir(alive)

    sandbox.prepare_directories(config)

    assert not os.path.exists(orphan)
    assert os.path.exists(os.path.join(alive, "deno-dir", "gen", "data", "1234.js"))
    assert engines_own and engines_own <= set(os.listdir(processes))
    os.close(held)



@pytest.mark.skipif(not sandbox.is_root() or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_a_root_without_cap_dac_override_still_removes_a_processs_cache(tmp_path):
    """docs/deploy.md runs the server as root with six capabilities only: it can't read
    or write a directory a sandbox uid owns with mode 0700 until it makes it its own."""
    process_dir = tmp_path / "p-1"
    compiled = process_dir / "deno-dir" / "gen" / "data"
    compiled.mkdir(parents=True)
    (compiled / "1234.js").write_text("alice's val, compiled")
    for path in (process_dir / "deno-dir", process_dir / "deno-dir" / "gen", compiled, compiled / "1234.js"):
        os.chown(path, 64999, 64200)
    os.chmod(process_dir / "deno-dir", 0o700)
    os.chmod(compiled, 0o2775)
    capabilities = "-all,+setuid,+setgid,+chown,+fsetid,+kill,+fowner"
    remove = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from runtime import sandbox; sandbox.remove_process_dir({str(process_dir)!r})"

    subprocess.run(["setpriv", f"--bounding-set={capabilities}", sys.executable, "-c", remove], check=True)

    assert not process_dir.exists()


# --- Through the real server: daphne, the module host and the pool ----------------------


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    # Where every sandbox uid can reach the installed deno (pytest's tmp_path is 0700).
    work_dir = tempfile.mkdtemp(prefix="valtown-module-cache-")
    # One evaluation process: an evaluation starts only once the previous one's process
    # is gone and its slot has cleaned up after it, so a test can look at what is left.
    live = LiveServer({"RUNTIME_POOL_SIZE": "1", "RUNTIME_WORK_DIR": str(work_dir), "EMBEDDED_SCHEDULER": "false"})
    live.work_dir = work_dir
    yield live
    live.stop()
    shutil.rmtree(work_dir, ignore_errors=True)




def raw_get(server, target):
    """A GET of exactly `target`, byte for byte (httpx would normalise some spellings)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("GET", target, headers={"Host": f"localhost:{server.port}"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_the_real_server_checks_the_path_as_sent_not_as_decoded(server):
    make_val(make_user("alice"), name="lib", code="export const where = 'public lib';\n")

    assert raw_get(server, "/v/alice/lib.ts")[0] == 200
    assert raw_get(server, "/std/email.ts")[0] == 200
    for target in ["/%76/alice/lib.ts", "/v/%61lice/lib.ts", "/v%2Falice%2Flib.ts", "/v/alice/lib.ts?v=0&x=1", "/%73td/email.ts"]:
        status, body = raw_get(server, target)
        assert status == 404, target
        assert b"public lib" not in body


@pytest.mark.django_db(transaction=True)
def test_a_private_val_imported_under_another_spelling_reaches_neither_its_owner_nor_anyone_else(server):
    alice, bob = make_user("alice"), make_user("bob")
    marker = f"alice-private-{uuid.uuid4().hex}"
    make_val(alice, name="x", code=f"export default '{marker}';\n", privacy=Val.Privacy.PRIVATE)
    importer = "export default async () => {{ try {{ return (await import('{url}')).default; }} catch (error) {{ return String(error); }} }};\n"
    spellings = ["/%76/alice/x.ts", "/v/%61lice/x.ts", "/v/alice/x%2Ets", "/v/alice/x.ts?v=0&x=1"]

    own = make_val(alice, name="own", code=importer.format(url="/v/alice/x.ts"))
    outcome = server.run(alice, own)
    assert outcome["result"]["value"] == marker, outcome
    for number, spelling in enumerate(spellings):
        url = f"http://{module_host(server)}{spelling}"
        alices = server.run(alice, make_val(alice, name=f"alices_{number}", code=importer.format(url=url)))
        bobs = server.run(bob, make_val(bob, name=f"bobs_{number}", code=importer.format(url=url)))
        for outcome in (alices, bobs):
            assert "Module not found" in outcome["result"]["value"], (spelling, outcome)
            assert marker not in json.dumps(outcome)


def module_host(server):
    return f"127.0.0.1:{server.module_port}"


def files_holding(directory, *markers):
    """Every file under directory (symlinks not followed, the installed deno binary left
    out) holding one of the markers, as text or as any alignment of its base64 (inline
    code reaches Deno as a base64 data: URL)."""
    needles = set()
    for marker in markers:
        needles.add(marker.encode())
        for offset in range(3):
            encoded = base64.b64encode(b"x" * offset + marker.encode())
            needles.add(encoded[4:-4] if offset else encoded[:-4])  # the part that doesn't depend on neighbours
    found = []
    for root, directories, names in os.walk(directory):
        directories[:] = [d for d in directories if not os.path.islink(os.path.join(root, d))]
        for name in names:
            path = os.path.join(root, name)
            if os.path.islink(path) or name.startswith("deno-"):
                continue
            try:
                content = open(path, "rb").read()
            except OSError:
                continue
            if any(needle in content for needle in needles):
                found.append(os.path.relpath(path, directory))
    return found


@pytest.mark.django_db(transaction=True)
def test_after_her_evaluation_and_after_deleting_the_val_alices_private_source_is_nowhere_in_the_cache(server):
    alice, bob = make_user("alice"), make_user("bob")
    imported, inline = f"imported-{uuid.uuid4().hex}", f"inline-{uuid.uuid4().hex}"
    x = make_val(alice, name="x", code=f"export default '{imported}';\n", privacy=Val.Privacy.PRIVATE)
    reader = make_val(
        alice, name="reader", privacy=Val.Privacy.PRIVATE,
        code=f"import x from '/v/alice/x.ts';\nconst mine: string = '{inline}';\nexport default () => [x, mine];\n",
    )
    assert server.run(alice, reader)["result"]["value"] == [imported, inline]

    # The only evaluation process had to be cleaned up after before this one could start.
    assert server.run(bob, make_val(bob, name="noop", code="export default () => 1;\n"))["status"] == "success"
    assert files_holding(server.work_dir, imported, inline) == []

    x.delete()
    reader.delete()
    assert server.run(bob, make_val(bob, name="noop_again", code="export default () => 1;\n"))["status"] == "success"
    assert files_holding(server.work_dir, imported, inline) == []
