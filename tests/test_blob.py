"""Vals keep data with the platform's /std/blob module: one store per user, always the
store of whoever the val runs as, in Django's "blobs" storage, within a quota."""

import base64
import threading
from pathlib import Path

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.db import connection

from accounts.models import ApiToken
from tests.factory import make_user, make_val
from tests.live import LiveServer
from vals import blob as blob_module
from vals.blob import Blob, BlobError, BlobStore
from vals.evaluations import runner
from vals.evaluations.models import Evaluation

BLOB_TS = (Path(django_settings.BASE_DIR) / "vals" / "std" / "blob.ts").read_text()
# The real module, imported the way a val imports any module, without a web server.
MODULE_URL = "data:application/typescript;base64," + base64.b64encode(BLOB_TS.encode()).decode()


def val_code(body, module_url=MODULE_URL):
    return f'import {{ blob, get, set, list, getJSON, setJSON }} from "{module_url}";\nexport default async (...args) => {{\n{body}\n}};\n'


@pytest.fixture(autouse=True)
def blob_root(settings, tmp_path):
    """Each test's blobs go to a folder of its own, through the storage API."""
    root = tmp_path / "blobs"
    settings.STORAGES = {
        **settings.STORAGES,
        "blobs": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}},
    }
    return root


def files_under(folder):
    return sorted(path for path in Path(folder).rglob("*") if path.is_file()) if Path(folder).exists() else []


async def run_as(principal, val, *args):
    evaluation = await runner.start(principal, val, list(args))
    await runner.wait_for(evaluation.pk)
    evaluation = await Evaluation.objects.aget(pk=evaluation.pk)
    assert evaluation.status == "success", (evaluation.status, evaluation.error)
    return evaluation.result["value"]


# --- Through the real runtime pool ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_val_keeps_strings_bytes_and_json_and_lists_and_deletes_them(blob_root, monkeypatch):
    alice = await sync_to_async(make_user)("alice")
    monkeypatch.setattr(blob_module, "LIST_PAGE_ROWS", 2)  # list() must follow the pages
    body = """
  await set("greeting", "héllo 👋");
  await blob.set("bytes", new Uint8Array([0, 1, 2, 255]));
  await set("buffer", new Uint8Array([7, 8]).buffer);
  await set("file", new Blob(["from a Blob"]));
  await setJSON("state", { count: 1, names: ["a", "b"] });
  await set("Logs/upper", "x");
  await set("logs/lower", "y");
  await set("greeting", "hello again");
  const bytes = await get("bytes");
  const listed = await list();
  const result = {
    greeting: await get("greeting"),
    bytes: [bytes instanceof Uint8Array, Array.from(bytes)],
    buffer: Array.from(await get("buffer")),
    file: new TextDecoder().decode(await get("file")),
    state: await getJSON("state"),
    missing: [await get("missing"), await getJSON("missing")],
    keys: listed.map((b) => b.key),
    sizes: Object.fromEntries(listed.map((b) => [b.key, b.size])),
    dated: listed.every((b) => !Number.isNaN(Date.parse(b.updatedAt))),
    lower: (await list("logs/")).map((b) => b.key),
    deleted: [await blob.delete("bytes"), await blob.delete("bytes")],
    afterDelete: await get("bytes"),
  };
  return result;
"""
    val = await sync_to_async(make_val)(alice, name="store", code=val_code(body))
    result = await run_as(alice, val)
    assert result["greeting"] == "hello again"
    assert result["bytes"] == [True, [0, 1, 2, 255]]
    assert result["buffer"] == [7, 8] and result["file"] == "from a Blob"
    assert result["state"] == {"count": 1, "names": ["a", "b"]}
    assert result["missing"] == [None, None]  # getJSON's undefined arrives as null
    assert result["keys"] == ["Logs/upper", "buffer", "bytes", "file", "greeting", "logs/lower", "state"]
    assert result["sizes"]["greeting"] == len("hello again") and result["sizes"]["bytes"] == 4
    assert result["dated"] is True
    assert result["lower"] == ["logs/lower"]  # prefixes are case-sensitive, SQLite too
    assert result["deleted"] == [True, False] and result["afterDelete"] is None

    # Every value is a file in the "blobs" storage, under alice's own folder; replaced and
    # deleted values left nothing behind.
    rows = await sync_to_async(list)(Blob.objects.filter(owner=alice))
    assert len(files_under(blob_root)) == len(rows) == 6
    assert {path.parent for path in files_under(blob_root)} == {blob_root / str(alice.pk)}
    greeting = next(row for row in rows if row.key == "greeting")
    assert (blob_root / greeting.path).read_bytes() == b"hello again" and greeting.is_text


@pytest.mark.django_db(transaction=True)
async def test_bobs_val_uses_bobs_store_and_cannot_name_alices(blob_root):
    alice, bob = await sync_to_async(make_user)("alice"), await sync_to_async(make_user)("bob")
    body = f"""
  const [action] = args;
  if (action === "write") {{ await set("diary", "alice's secret"); return null; }}
  const sneaky = ["../{alice.pk}/diary", "/{alice.pk}/diary", "{alice.pk}/diary", "..\\\\{alice.pk}\\\\diary", "/etc/passwd"];
  for (const key of sneaky) await set(key, "bob was here");
  return {{
    diary: await get("diary"),
    sneaky: await Promise.all(sneaky.map((key) => get(key))),
    keys: (await list()).map((b) => b.key),
  }};
"""
    # The same code, saved by each of them: someone else's val runs without any store
    # (tests/security/test_foreign_code_authority.py).
    alices = await sync_to_async(make_val)(alice, name="diary", code=val_code(body))
    bobs = await sync_to_async(make_val)(bob, name="diary", code=val_code(body))
    await run_as(alice, alices, "write")
    seen_by_bob = await run_as(bob, bobs, "read")
    assert seen_by_bob["diary"] is None
    assert seen_by_bob["sneaky"] == ["bob was here"] * 5
    assert len(seen_by_bob["keys"]) == 5

    alices = await sync_to_async(list)(Blob.objects.filter(owner=alice).values_list("key", flat=True))
    assert alices == ["diary"]
    assert (blob_root / str(alice.pk)).is_dir() and len(files_under(blob_root / str(alice.pk))) == 1
    assert len(files_under(blob_root / str(bob.pk))) == 5
    assert len(files_under(blob_root)) == 6  # nothing landed anywhere else


@pytest.mark.django_db(transaction=True)
async def test_the_val_gets_clear_errors_for_bad_keys_big_values_and_a_full_quota(blob_root, settings):
    settings.BLOB_QUOTA_BYTES = 1000
    settings.BLOB_MAX_VALUE_BYTES = 800
    alice = await sync_to_async(make_user)("alice")
    body = """
  const attempt = async (f) => { try { await f(); return "ok"; } catch (error) { return error.message; } };
  return {
    empty: await attempt(() => set("", "x")),
    number: await attempt(() => set(5, "x")),
    long: await attempt(() => set("k".repeat(513), "x")),
    longest: await attempt(() => set("k".repeat(512), "x")),
    nul: await attempt(() => get("a\\u0000b")),
    value: await attempt(() => set("big", "x".repeat(801))),
    hostCall: await attempt(() => set("huge", new Uint8Array(800000))),
    notStorable: await attempt(() => set("object", { a: 1 })),
    first: await attempt(() => set("first", "a".repeat(600))),
    second: await attempt(() => set("second", "b".repeat(600))),
    replaced: await attempt(() => set("first", "c".repeat(700))),
    keys: (await list()).map((b) => b.key),
  };
"""
    val = await sync_to_async(make_val)(alice, name="errors", code=val_code(body))
    result = await run_as(alice, val)
    assert result["empty"] == result["number"] == "key must be a non-empty string"
    assert result["long"] == "key too long: 513 characters, at most 512"
    assert result["longest"] == "ok"
    assert result["nul"] == "key cannot contain NUL characters"
    assert result["value"] == "blob value too large: 801 bytes, at most 800"
    assert result["hostCall"] == "blob value too large: 800,000 bytes is more than one host call carries"
    assert "takes a string, Uint8Array, ArrayBuffer or Blob" in result["notStorable"]
    assert result["first"] == "ok"
    assert result["second"] == "blob quota exceeded: 601 bytes of 1000 bytes used, and this value is 600 bytes. Delete some blobs first."
    assert result["replaced"] == "ok"  # a replaced value's old size doesn't count
    assert result["keys"] == ["first", "k" * 512]

    # The refused writes wrote nothing: one file per key, and the first key holds the new value.
    assert len(files_under(blob_root)) == 2
    first = await Blob.objects.aget(owner=alice, key="first")
    assert first.size == 700 and (blob_root / first.path).read_bytes() == b"c" * 700


@pytest.mark.django_db(transaction=True)
def test_a_val_run_through_the_server_imports_std_blob_and_writes_to_blob_root(tmp_path):
    alice, bob = make_user("alice"), make_user("bob")
    root = tmp_path / "served-blobs"
    server = LiveServer({"BLOB_ROOT": str(root)})
    try:
        body = 'await setJSON("visits", ((await getJSON("visits")) ?? 0) + 1); return await getJSON("visits");'
        val = make_val(alice, name="counter", code=val_code(body, module_url=f"{server.url}/std/blob.ts"))
        _, raw = ApiToken.issue(alice, "t", "write")
        for expected in (1, 2):
            response = httpx.post(f"{server.url}/v1/vals/{val.pk}/run", json={"args": []}, headers={"Authorization": f"Bearer {raw}"}, timeout=60)
            body = response.json()
            assert body["status"] == "success", (body.get("error"), server.output())
            assert body["result"]["value"] == expected
    finally:
        server.stop()
    assert [path.parent for path in files_under(root)] == [root / str(alice.pk)]
    assert Blob.objects.get(owner=alice, key="visits").size == 1
    assert not Blob.objects.filter(owner=bob).exists()


# --- The store itself ------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, message",
    [(None, "non-empty string"), ("", "non-empty string"), (["a"], "non-empty string"), ("x" * 513, "key too long"), ("a\x00", "NUL")],
)
def test_malformed_keys_are_refused_before_anything_is_written(alice, blob_root, key, message):
    with pytest.raises(BlobError, match=message):
        BlobStore(alice).set(key, b"value")
    assert files_under(blob_root) == [] and not Blob.objects.exists()


def test_malformed_host_calls_are_refused_clearly(alice):
    for payload, message in [(None, "malformed"), ({"key": "k"}, "takes a string"), ({"key": "k", "base64": "@@@"}, "not valid base64")]:
        with pytest.raises(BlobError, match=message):
            blob_module.blob_set(alice, payload)
    with pytest.raises(BlobError, match="prefix must be a string"):
        blob_module.blob_list(alice, {"prefix": 5})


def test_the_host_replies_with_base64_and_the_kind_of_value(alice):
    blob_module.blob_set(alice, {"key": "k", "base64": base64.b64encode("ünïcode".encode()).decode(), "text": True})
    assert blob_module.blob_get(alice, {"key": "k"}) == {"base64": base64.b64encode("ünïcode".encode()).decode(), "text": True}
    assert blob_module.blob_get(alice, {"key": "nope"}) is None


def test_a_full_disk_is_a_clear_error_and_writes_nothing(alice, settings, tmp_path):
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("the storage can't write under a file")
    settings.STORAGES = {**settings.STORAGES, "blobs": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(not_a_folder)}}}
    with pytest.raises(BlobError, match="blob storage is unavailable or full; nothing was written"):
        BlobStore(alice).set("k", b"value")
    assert not Blob.objects.exists()


def test_a_replaced_value_leaves_no_file_behind(alice, blob_root, django_capture_on_commit_callbacks):
    store = BlobStore(alice)
    with django_capture_on_commit_callbacks(execute=True):
        store.set("k", b"one")
        store.set("k", b"two")
    assert [path.read_bytes() for path in files_under(blob_root)] == [b"two"]
    assert store.get("k") == (b"two", False)


def test_too_many_keys_is_a_clear_error(alice, settings):
    settings.BLOB_MAX_KEYS = 2
    store = BlobStore(alice)
    store.set("a", b"")
    store.set("b", b"")
    store.set("a", b"replacing is fine")
    with pytest.raises(BlobError, match="blob quota exceeded: you have 2 keys"):
        store.set("c", b"")


@pytest.mark.django_db(transaction=True)
def test_concurrent_writes_cannot_overshoot_the_quota_together(settings, blob_root):
    settings.BLOB_QUOTA_BYTES = 1000
    alice = make_user("alice")
    start, outcomes = threading.Barrier(4), []

    def write(number):
        start.wait()
        try:
            BlobStore(alice).set(f"key{number}", b"x" * 400)
            outcomes.append("stored")
        except BlobError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused", "refused", "stored", "stored"]
    assert Blob.objects.usage() == 800 and len(files_under(blob_root)) == 2


def test_deleting_an_account_deletes_its_blobs_and_files(alice, bob, blob_root, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        BlobStore(alice).set("a", b"alice's")
        BlobStore(bob).set("b", b"bob's")
    with django_capture_on_commit_callbacks(execute=True):
        alice.delete()
    assert [path.read_bytes() for path in files_under(blob_root)] == [b"bob's"]


def test_the_std_module_is_served(anonymous_client):
    response = anonymous_client.get("/std/blob.ts")
    assert response["Content-Type"] == "application/typescript; charset=utf-8"
    assert b"export const blob = { get, set, delete: del, list, getJSON, setJSON }" in response.content


# --- The settings page -------------------------------------------------------------------


def test_alice_sees_her_blobs_and_how_much_of_her_quota_they_use(alice, bob, alice_client):
    BlobStore(alice).set("notes/today", b"x" * 2048, is_text=True)
    BlobStore(bob).set("bobs-key", b"y")
    page = alice_client.get("/settings/blobs").content.decode()
    assert "notes/today" in page and "bobs-key" not in page
    assert "2.0\xa0KB of 50.0\xa0MB used" in page


def test_alice_deletes_a_blob_from_her_settings(alice, alice_client, blob_root, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        blob = BlobStore(alice).set("old", b"x")
        response = alice_client.post(f"/settings/blobs/{blob.pk}/delete")
    assert response.status_code == 302 and response["Location"] == "/settings/blobs"
    assert not Blob.objects.exists() and files_under(blob_root) == []
    assert alice_client.get(f"/settings/blobs/{blob.pk}/delete").status_code == 405


def test_bob_cannot_delete_alices_blobs(alice, bob_client):
    blob = BlobStore(alice).set("mine", b"x")
    assert bob_client.post(f"/settings/blobs/{blob.pk}/delete").status_code == 404
    assert Blob.objects.filter(pk=blob.pk).exists()


def test_anonymous_visitors_are_sent_to_log_in(anonymous_client):
    assert anonymous_client.get("/settings/blobs")["Location"].startswith("/accounts/login/")
