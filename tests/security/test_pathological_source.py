"""Pathological source can't stall the server (finding 4 of the attack review).

The host reads submitted and saved code for a few facts (is it a module, what it imports
and exports). It used to do so with regular expressions whose `^\\s*` ran across blank
lines under re.M, on the event loop: `POST /v1/eval` with "1" and thirty thousand blank
lines stopped every page, API call and HTTP val for seconds, and a megabyte for an hour.

Each test here keeps one request of the attacker's in flight (a val that waits until the
test lets it finish) while it sends pathological inputs, then asks for a page and an
HTTP val as a bystander. The bystander must be served while the attacker's request is
still waiting: a server stuck in the attacker's input would answer neither.
"""

import concurrent.futures
import time

import httpx
import pytest

from accounts.models import ApiToken
from tests.factory import make_user, make_val
from tests.live import LiveServer, quiet_server_before_flush  # noqa: F401 (an autouse fixture)
from vals.blob import BlobStore
from vals.models import Val

pytestmark = pytest.mark.django_db(transaction=True)

MEGABYTE = 1_000_000

# Each a megabyte of what cost the old regular expressions O(n²): they are the inputs
# the review named (blank lines, unclosed comments, deep nesting, huge lines) and the
# other shapes an unanchored `\s*`, `.*?` or `[^}]*` runs across.
PATHOLOGICAL = {
    "blank lines": "1" + "\n" * MEGABYTE,
    "blank lines then an export": "\n" * MEGABYTE + "export default 1;",
    "an unclosed comment": "/*" * (MEGABYTE // 2),
    "deep nesting": "(" * MEGABYTE,
    "a huge line": "x" * MEGABYTE,
    "unclosed export lists": "export {" * (MEGABYTE // 8),
    "unclosed strings": "'" * MEGABYTE,
    "template holes": "`${" * (MEGABYTE // 3),
    # Found by the second review: every new name was looked for in a list of the others.
    "a hundred thousand export names": "export const " + ",".join(f"e{n}=0" for n in range(110_000)) + ";",
}

# Says it has started, then waits until the test sets the blob "go", so that its request
# is in flight for as long as the test needs.
HOLDER = """\
import { blob } from "/std/blob.ts";
export default async () => {
  await blob.setJSON("holder-started", true);
  while (!(await blob.getJSON("go"))) await new Promise((resolve) => setTimeout(resolve, 50));
  return "held";
};
"""


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    live = LiveServer({"EVALUATION_TIMEOUT_SECONDS": "60", "ANONYMOUS_EVAL_RATE_LIMIT_PER_IP": "1000"})
    yield live
    live.stop()


def token_for(user):
    _, raw = ApiToken.issue(user, "attack", "write")
    return {"Authorization": f"Bearer {raw}"}


class Bystander:
    """Someone who only wants a page and an HTTP val, each answered within a bound that
    no healthy server comes near (the test fails there, it doesn't time anything)."""

    def __init__(self, server):
        self.server = server
        make_val(make_user("carol"), name="page", type="http", code="export default () => new Response('carol');")

    def is_served(self):
        home = httpx.get(f"{self.server.url}/", timeout=20)
        val = httpx.get(
            f"http://127.0.0.1:{self.server.port}/",
            headers={"Host": f"carol-page.web.localhost:{self.server.port}"},
            timeout=20,
        )
        return home.status_code == 200 and (val.status_code, val.text) == (200, "carol")


class Attacker:
    """Alice, with one request held in flight while she sends the rest."""

    def __init__(self, server):
        self.server = server
        self.user = make_user("alice")
        self.headers = token_for(self.user)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)
        self.held = self.pool.submit(self.evaluate, HOLDER)
        self._wait_until_the_holder_runs()

    def evaluate(self, code, headers=None):
        return httpx.post(
            f"{self.server.url}/v1/eval", json={"code": code}, headers=self.headers if headers is None else headers, timeout=120
        )

    def _wait_until_the_holder_runs(self):
        deadline = time.monotonic() + 60
        while BlobStore(self.user).find("holder-started") is None:
            assert not self.held.done(), self.held.result().text
            assert time.monotonic() < deadline, "the holder never started"
            time.sleep(0.05)

    def still_waiting(self):
        return not self.held.done()

    def release(self):
        BlobStore(self.user).set("go", b"true", is_text=True)
        return self.held.result(timeout=60)


@pytest.fixture
def attacker(server):
    attacker = Attacker(server)
    yield attacker
    if attacker.still_waiting():
        attacker.release()
    attacker.pool.shutdown(wait=True)


@pytest.mark.parametrize("shape", PATHOLOGICAL)
def test_pathological_code_sent_to_v1_eval_doesnt_keep_a_bystander_waiting(server, attacker, shape):
    bystander = Bystander(server)
    anonymous = attacker.pool.submit(attacker.evaluate, PATHOLOGICAL[shape], {})
    signed_in = attacker.pool.submit(attacker.evaluate, PATHOLOGICAL[shape])

    assert bystander.is_served()
    assert attacker.still_waiting()

    for answer in (anonymous.result(timeout=120), signed_in.result(timeout=120)):
        assert answer.status_code in (200, 400), answer.text  # a value, or the val's own error
    assert attacker.release().json()["result"] == "held"


@pytest.mark.parametrize(
    "shape", ["blank lines then an export", "an unclosed comment", "unclosed export lists", "deep nesting", "a hundred thousand export names"]
)
def test_running_a_saved_val_that_imports_a_pathological_library_doesnt_keep_a_bystander_waiting(server, attacker, shape):
    bob = make_user("bob")
    make_val(bob, name="lib", code=PATHOLOGICAL[shape] if shape.startswith("blank") else f"export const ok = 1;\n{PATHOLOGICAL[shape]}")
    importer = make_val(attacker.user, name="importer", code='import * as lib from "/v/bob/lib.ts";\nexport default () => Object.keys(lib);\n')
    bystander = Bystander(server)
    run = attacker.pool.submit(
        httpx.post, f"{server.url}/v1/vals/{importer.pk}/run", json={"args": []}, headers=attacker.headers, timeout=120
    )
    saved = attacker.pool.submit(
        httpx.post, f"{server.url}/v1/vals/{Val.objects.get(name='lib').pk}/run", json={"args": []}, headers=attacker.headers, timeout=120
    )

    assert bystander.is_served()
    assert attacker.still_waiting()

    assert run.result(timeout=120).status_code == 200
    assert saved.result(timeout=120).status_code == 200
    assert attacker.release().json()["result"] == "held"


def test_export_star_chains_spelled_many_ways_are_read_once(server, attacker):
    """`export * from` the same val in ten spellings (user and val names match ignoring
    case) made the module host merge its ten thousand names ten times, in a list."""
    bob = make_user("bob")
    make_val(bob, name="names", code="export {" + ",".join(f"s{n}" for n in range(10_000)) + "};\n" + "".join(f"const s{n} = {n};\n" for n in range(10_000)))
    spellings = ["bob/names", "BOB/names", "Bob/NAMES", "bOb/Names", "boB/nAmes", "BoB/namES", "bob/NAMES", "BOB/Names", "bOB/nameS", "Bob/names"]
    make_val(bob, name="chain", code="".join(f'export * from "/v/{spelling}.ts";\n' for spelling in spellings))
    bystander = Bystander(server)
    run = attacker.pool.submit(attacker.evaluate, 'import * as chain from "/v/bob/chain.ts";\nexport default () => Object.keys(chain).length;\n')

    assert bystander.is_served()
    assert attacker.still_waiting()
    answer = run.result(timeout=120)
    # The other spellings aren't the val's own, so the Worker's imports of them fail clearly.
    assert answer.status_code == 400 and 'Module not found "http://' in answer.json()["error"]["message"], answer.text
    assert attacker.release().json()["result"] == "held"
