"""One module, one URL, and no tenant's modules in another tenant's cache.

Deno caches what it imports by the URL as written. A module host that answered
`/%76/alice/x.ts` like `/v/alice/x.ts` let one private val live in the cache under
spellings that no reload rule matched, where any other tenant importing that spelling
was served it. So the module host answers only the canonical spelling of a module's
path (the raw path, before any decoding) and its query, and any other spelling is the
same 404 as a val that doesn't exist.
"""

import http.client
import json
import re
import shutil
import tempfile
import uuid
from urllib.parse import unquote

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from accounts.models import ApiToken
from tests.factory import make_user, make_val
from tests.live import LiveServer
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


def run(server, user, val):
    _, raw = ApiToken.issue(user, "t", "write")
    response = httpx.post(f"{server.url}/v1/vals/{val.pk}/run", json={"args": []}, headers={"Authorization": f"Bearer {raw}"}, timeout=60)
    assert response.status_code == 200, (response.text, server.output()[-3000:])
    return response.json()


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
    outcome = run(server, alice, own)
    assert outcome["result"]["value"] == marker, outcome
    for number, spelling in enumerate(spellings):
        url = f"http://{module_host(server)}{spelling}"
        alices = run(server, alice, make_val(alice, name=f"alices_{number}", code=importer.format(url=url)))
        bobs = run(server, bob, make_val(bob, name=f"bobs_{number}", code=importer.format(url=url)))
        for outcome in (alices, bobs):
            assert "Module not found" in outcome["result"]["value"], (spelling, outcome)
            assert marker not in json.dumps(outcome)


def module_host(server):
    return f"127.0.0.1:{server.port}"

