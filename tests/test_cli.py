"""The `valtown` command-line client, driven against a live test server."""

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from accounts.models import ApiToken
from tests.factory import make_user, make_val
from tests.live import LiveServer
from vals.models import Val

pytestmark = pytest.mark.django_db(transaction=True)

VALTOWN = str(Path(sys.executable).parent / "valtown")


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    live = LiveServer()
    yield live
    live.stop()


@pytest.fixture
def alice_token():
    alice = make_user("alice")
    _, raw = ApiToken.issue(alice, "cli", "write")
    return alice, raw


def valtown(*args, env, cwd, input=None, timeout=60):
    return subprocess.run([VALTOWN, *args], env=env, cwd=cwd, input=input, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def env(tmp_path, server, alice_token):
    return {**os.environ, "VALTOWN_CONFIG": str(tmp_path / "config.json"), "VALTOWN_URL": "", "VALTOWN_TOKEN": ""}


def test_login_checks_the_token_and_saves_it(server, alice_token, env, tmp_path):
    _, raw = alice_token
    done = valtown("login", "--url", server.url, "--token", raw, env=env, cwd=tmp_path)
    assert done.returncode == 0 and "as @alice" in done.stdout
    assert oct((tmp_path / "config.json").stat().st_mode)[-3:] == "600"
    refused = valtown("login", "--url", server.url, "--token", "vt_wrong", env=env, cwd=tmp_path)
    assert refused.returncode == 1 and "401" in refused.stderr


def test_pull_edit_push_makes_a_new_version(server, alice_token, env, tmp_path):
    alice, raw = alice_token
    valtown("login", "--url", server.url, "--token", raw, env=env, cwd=tmp_path)
    make_val(alice, name="greet", code="export default () => 'v0';\n")
    pulled = valtown("pull", "alice/greet", env=env, cwd=tmp_path)
    assert pulled.returncode == 0
    assert (tmp_path / "greet.ts").read_text() == "export default () => 'v0';\n"
    (tmp_path / "greet.ts").write_text("export default () => 'v1';\n")
    pushed = valtown("push", "greet.ts", env=env, cwd=tmp_path)
    assert pushed.returncode == 0 and "v1" in pushed.stdout
    assert Val.objects.get(name="greet").code == "export default () => 'v1';\n"
    again = valtown("push", "greet.ts", env=env, cwd=tmp_path)
    assert "already has this code" in again.stdout


def test_push_creates_a_val_that_does_not_exist_yet(server, alice_token, env, tmp_path):
    _, raw = alice_token
    valtown("login", "--url", server.url, "--token", raw, env=env, cwd=tmp_path)
    (tmp_path / "brandNew.ts").write_text("export default () => 1;\n")
    done = valtown("push", "brandNew.ts", "--type", "http", env=env, cwd=tmp_path)
    assert done.returncode == 0 and "Created @alice/brandNew" in done.stdout
    assert Val.objects.get(name="brandNew").type == "http"


def test_run_prints_logs_and_the_result_and_fails_on_errors(server, alice_token, env, tmp_path):
    alice, raw = alice_token
    valtown("login", "--url", server.url, "--token", raw, env=env, cwd=tmp_path)
    make_val(alice, name="add", code="export default (a, b) => { console.log('adding', a, b); return { sum: a + b }; };")
    done = valtown("run", "alice/add", "2", "3", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "adding 2 3" in done.stdout and '"sum": 5' in done.stdout
    make_val(alice, name="boom", code="export default () => { throw new Error('kaboom'); };")
    failed = valtown("run", "alice/boom", env=env, cwd=tmp_path)
    assert failed.returncode == 1 and "kaboom" in failed.stderr


def test_evals_lists_your_runs(server, alice_token, env, tmp_path):
    alice, raw = alice_token
    valtown("login", "--url", server.url, "--token", raw, env=env, cwd=tmp_path)
    make_val(alice, name="one", code="export default () => 1;")
    valtown("run", "alice/one", env=env, cwd=tmp_path)
    listed = valtown("evals", env=env, cwd=tmp_path)
    assert listed.returncode == 0 and "ok" in listed.stdout and "api" in listed.stdout


def test_logs_follow_streams_new_runs_live(server, alice_token, env, tmp_path):
    alice, raw = alice_token
    valtown("login", "--url", server.url, "--token", raw, env=env, cwd=tmp_path)
    val = make_val(alice, name="ticker", code="export default async () => { for (let i = 0; i < 5; i++) { console.log('tick ' + i); await new Promise(r => setTimeout(r, 100)); } };")
    follower = subprocess.Popen([VALTOWN, "logs", "alice/ticker", "--follow", "--count", "1"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)  # let it connect
        httpx.post(f"{server.url}/v1/vals/{val.pk}/run", json={"args": []}, headers={"Authorization": f"Bearer {raw}"}, timeout=30)
        output, errors = follower.communicate(timeout=30)
    finally:
        follower.kill()
    assert follower.returncode == 0, errors
    assert [line.split()[-1] for line in output.splitlines() if "tick" in line] == ["0", "1", "2", "3", "4"]
    assert "success" in output


def test_without_a_login_it_says_what_to_do(tmp_path):
    env = {**os.environ, "VALTOWN_CONFIG": str(tmp_path / "none.json"), "VALTOWN_URL": "", "VALTOWN_TOKEN": ""}
    done = valtown("evals", env=env, cwd=tmp_path)
    assert done.returncode == 1 and "valtown login" in done.stderr


def test_a_vals_output_reaches_the_terminal_without_its_control_characters(capsys):
    """Another user's library (or mail an email val logs) must not drive the terminal."""
    from vals.cli import print_line, print_outcome

    print_line({"level": "log", "message": "fine\x1b]52;c;c3RvbGVu\x07\x1b[1A\x1b[2Kfaked\ttab"})
    print_outcome({"status": "success", "result": {"type": "json", "value": "\x1b]0;owned\x07"}})
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "fine\\x1b]52;c;c3RvbGVu\\x07\\x1b[1A\\x1b[2Kfaked\ttab" in out
