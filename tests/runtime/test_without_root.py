"""Without root the engine still works, with fewer OS protections (no uid of its own
per process, so no thread cap), and says so in its log."""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from runtime import sandbox
from tests.runtime.helpers import runtime_config

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534

SCRIPT = """
import asyncio, json, logging, sys
sys.path.insert(0, sys.argv[1])
logging.basicConfig(level=logging.WARNING)
from runtime import Limits, Pool, PoolConfig

async def main():
    config = PoolConfig(pool_size=1, work_dir=sys.argv[2], deno_path=sys.argv[3])
    async with Pool(config) as pool:
        results = [
            await pool.evaluate("export default () => 1 + 1"),
            await pool.evaluate("export default () => Deno.readTextFile('/etc/hostname')"),
            await pool.evaluate("export default () => Deno.env.toObject()", env={"KEY": "value"}),
            await pool.evaluate("export default () => { while (true) {} }", limits=Limits(timeout_seconds=0.5)),
        ]
    print(json.dumps([[result.status, result.value] for result in results]))

asyncio.run(main())
"""


def everyone_can_reach(path):
    """Every directory above path lets others through, and path lets them read it."""
    path = Path(path).resolve()
    if not os.stat(path).st_mode & 0o004:
        return False
    return all(os.stat(parent).st_mode & 0o001 for parent in path.parents)


def a_python_nobody_can_run():
    # The test venv's interpreter may live somewhere only root can read (e.g. /root).
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(candidate):
            return candidate
    return None


@pytest.mark.skipif(
    os.geteuid() != 0
    or not shutil.which("setpriv")
    or not a_python_nobody_can_run()
    or not everyone_can_reach(REPO / "runtime" / "pool.py")
    or not everyone_can_reach(sandbox.find_deno(runtime_config())),
    reason="needs root (to become an unprivileged user), a system python3, and a checkout others can read",
)
def test_it_runs_vals_as_an_unprivileged_user():
    work_dir = tempfile.mkdtemp()
    os.chown(work_dir, NOBODY, NOBODY)
    os.chmod(work_dir, 0o755)
    script = os.path.join(work_dir, "run.py")
    Path(script).write_text(SCRIPT)
    deno = sandbox.find_deno(runtime_config())
    try:
        finished = subprocess.run(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
             a_python_nobody_can_run(), script, str(REPO), os.path.join(work_dir, "rt"), deno],
            capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}, cwd=work_dir,
        )
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout) == [
        ["success", 2],
        ["error", None],
        ["success", {"KEY": "value"}],
        ["timeout", None],
    ]
    assert "not running as root" in finished.stderr
    assert "without the sandbox uids' firewall" in finished.stderr


def test_sandbox_uids_run_deno_and_the_harness_from_a_readable_install(tmp_path):
    """The checkout may be unreadable to other uids (a 0700 home or temp dir)."""
    if not sandbox.is_root():
        pytest.skip("processes only change uid when the host runs as root")
    config = runtime_config().with_changes(work_dir=str(tmp_path / "work"))
    sandbox.prepare_directories(config)
    for path in (sandbox.installed_deno(config), sandbox.installed_harness(config)):
        assert os.access(path, os.R_OK)
        mode = os.stat(path).st_mode
        assert mode & 0o004, f"{path} is not readable by other users"
        assert str(path).startswith(str(tmp_path / "work"))
