"""A val can't make Deno load native code of its choosing (the second attack review).

WebGPU's drivers, native code inside Deno, read the process's environment when an
adapter is asked for: a val that set __EGL_VENDOR_LIBRARY_FILENAMES to a manifest of its
own had glvnd dlopen() the library it named, which then ran as the sandbox uid outside
every permission (it read the platform's files). Now no WebGPU backend is on, and the
process's environment is closed to vals: their Deno.env is a view of their secrets.
"""

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.runtime.helpers import start_engine

CONSTRUCTOR = r"""
#include <stdio.h>
__attribute__((constructor)) static void ran(void) {
  FILE *marker = fopen("MARKER", "w");
  if (marker) { fputs("native code ran", marker); fclose(marker); }
}
"""

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build the library a val would load")


@pytest.fixture
def planted():
    """A library and a glvnd manifest naming it, where any uid can read them (as a file an
    attacker got onto the machine would be), and the marker the library would write.
    Not under pytest's temporary folder, which only its owner may enter."""
    place = Path(tempfile.mkdtemp(prefix="valtown-planted-"))
    place.chmod(0o777)
    marker = place / "ran.txt"
    (place / "evil.c").write_text(CONSTRUCTOR.replace("MARKER", str(marker)))
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(place / "evil.so"), str(place / "evil.c")], check=True)
    manifest = place / "vendor.json"
    manifest.write_text(json.dumps({"file_format_version": "1.0.0", "ICD": {"library_path": str(place / "evil.so")}}))
    for path in place.iterdir():
        path.chmod(0o755)
    yield manifest, marker
    shutil.rmtree(place)


@pytest.fixture(scope="module")
def engine():
    engine = start_engine(pool_size=1)
    yield engine
    engine.shutdown()


async def test_a_val_cannot_have_webgpu_load_a_library_it_names(engine, planted):
    manifest, marker = planted
    result = await engine.evaluate(
        """export default async (manifest: string) => {
          Deno.env.set("__EGL_VENDOR_LIBRARY_FILENAMES", manifest);
          (globalThis as any).process.env.__EGL_VENDOR_LIBRARY_FILENAMES = manifest;
          const adapter = await navigator.gpu?.requestAdapter();
          return adapter === null || adapter === undefined ? "no adapter" : "an adapter";
        }""",
        args=[str(manifest)],
    )

    assert result.status == "success", result
    assert result.value == "no adapter"
    assert not marker.exists(), marker.read_text()


async def test_a_val_still_reads_and_changes_its_own_environment(engine):
    result = await engine.evaluate(
        """export default () => {
          Deno.env.set("COLOR", "blue");
          (globalThis as any).process.env.SIZE = 3;
          Deno.env.delete("TOKEN");
          return [Deno.env.toObject(), (globalThis as any).process.env.COLOR, "TOKEN" in (globalThis as any).process.env];
        }""",
        env={"TOKEN": "t-123", "NAME": "alice"},
    )

    assert result.status == "success", result
    assert result.value == [{"NAME": "alice", "COLOR": "blue", "SIZE": "3"}, "blue", False]
