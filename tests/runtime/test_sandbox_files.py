"""A val can't read or write files, the module cache included, and can't keep anything
in localStorage or the Cache API for a later evaluation to find."""

import os

import pytest

from tests.runtime.helpers import WORK_DIR, assert_still_works, start_engine


@pytest.fixture(scope="module")
def engine():
    engine = start_engine()
    yield engine
    engine.shutdown()


async def assert_denied(engine, code, *words):
    result = await engine.evaluate(code)
    assert result.status == "error", result
    for word in words:
        assert word in result.error["message"], result.error
    await assert_still_works(engine)
    return result


async def test_deno_read_text_file_is_denied(engine):
    await assert_denied(engine, "export default () => Deno.readTextFile('/etc/passwd')", "Requires read access")


async def test_node_fs_is_denied(engine):
    await assert_denied(
        engine,
        "import fs from 'node:fs'; export default () => fs.readFileSync('/etc/hostname', 'utf8')",
        "Requires read access",
    )


async def test_importing_a_file_url_is_denied(engine):
    await assert_denied(
        engine, "export default async () => (await import('file:///etc/passwd')).default", "Requires read access"
    )


async def test_a_static_file_import_in_the_val_is_denied(engine):
    # Had the val been the main module, Deno would have pre-authorised this file.
    await assert_denied(
        engine,
        "import text from 'file:///etc/hostname' with { type: 'text' }; export default () => text",
        "Requires read access",
    )


async def test_fetching_a_file_url_is_denied(engine):
    await assert_denied(
        engine, "export default async () => (await fetch('file:///etc/passwd')).text()", "Requires read access"
    )


async def test_writing_a_file_is_denied(engine):
    await assert_denied(
        engine, "export default () => Deno.writeTextFile('/tmp/from-a-val', 'x')", "Requires write access"
    )
    assert not os.path.exists("/tmp/from-a-val")


async def test_the_module_cache_is_unreadable(engine):
    deno_dir = engine.pool.config.deno_dir_path

    await assert_denied(engine, f"export default () => [...Deno.readDirSync('{deno_dir}')]", "Requires read access")


async def test_the_working_directory_is_unreadable(engine):
    await assert_denied(engine, "export default () => [...Deno.readDirSync('.')]", "Requires read access")


async def test_nothing_in_local_storage_reaches_a_later_evaluation(engine):
    store = await engine.evaluate(
        "export default () => { localStorage.setItem('secret', 'alice'); return localStorage.getItem('secret') }"
    )
    read = await engine.evaluate("export default () => localStorage.getItem('secret')")

    assert read.value != "alice"
    assert store.status == "error" and "Permission denied" in store.error["message"]
    assert read.status == "error"
    await assert_still_works(engine)


async def test_the_cache_api_stores_nothing_on_disk(engine):
    result = await engine.evaluate(
        """export default async () => {
            const cache = await caches.open("big");
            await cache.put("https://example.com/x", new Response("x".repeat(1_000_000)));
        }"""
    )

    assert result.status == "error"
    assert "cache storage" in result.error["message"]
    assert os.listdir(os.path.join(WORK_DIR, "deno-dir", "location_data")) == []
    await assert_still_works(engine)
