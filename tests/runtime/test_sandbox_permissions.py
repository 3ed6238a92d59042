"""A val can't start processes, load native code, see the host's environment, or get
more permissions: not by asking, and not through a Worker."""

import os

import pytest

from runtime import sandbox
from tests.runtime.helpers import assert_still_works, runtime_config, start_engine

HOST_SECRET = "VALTOWN_TEST_HOST_SECRET"


@pytest.fixture(scope="module")
def engine():
    # The pool's own process has this variable: no val may see it.
    os.environ[HOST_SECRET] = "host-only"
    engine = start_engine()
    yield engine
    engine.shutdown()
    del os.environ[HOST_SECRET]


async def assert_denied(engine, code, *words):
    result = await engine.evaluate(code)
    assert result.status == "error", result
    for word in words:
        assert word in result.error["message"], result.error
    await assert_still_works(engine)


async def test_deno_command_is_denied(engine):
    await assert_denied(
        engine, "export default () => new Deno.Command('/usr/bin/id').outputSync()", "Requires run access"
    )


async def test_node_child_process_is_denied(engine):
    await assert_denied(
        engine,
        """import { spawn } from "node:child_process";
        export default () => new Promise((resolve, reject) => {
            const child = spawn("/usr/bin/id");
            child.on("error", reject);
            child.on("exit", resolve);
        })""",
        "Requires run access",
    )


async def test_ffi_is_denied(engine):
    await assert_denied(
        engine, "export default () => Deno.dlopen('libc.so.6', {})", "Requires ffi access"
    )


async def test_a_val_sees_exactly_its_own_secrets(engine):
    result = await engine.evaluate(
        "import process from 'node:process'; export default () => [Deno.env.toObject(), { ...process.env }]",
        env={"API_KEY": "alice-key", "OTHER": "x"},
    )

    assert result.status == "success"
    assert result.value == [{"API_KEY": "alice-key", "OTHER": "x"}, {"API_KEY": "alice-key", "OTHER": "x"}]


async def test_a_val_without_secrets_sees_an_empty_environment(engine):
    result = await engine.evaluate(
        f"export default () => [Deno.env.toObject(), Deno.env.get('{HOST_SECRET}'), Deno.env.get('DENO_DIR')]"
    )

    assert result.value == [{}, None, None]


async def test_secrets_do_not_carry_over_to_the_next_evaluation(engine):
    await engine.evaluate("export default () => 1", env={"API_KEY": "alice-key"})

    result = await engine.evaluate("export default () => Deno.env.toObject()")

    assert result.value == {}


async def test_asking_for_a_permission_is_refused(engine):
    result = await engine.evaluate(
        """export default async () => {
            const answer = await Deno.permissions.request({ name: "read" });
            let read = "no";
            try { Deno.readTextFileSync("/etc/hostname"); read = "yes"; } catch {}
            return [answer.state, read];
        }"""
    )

    assert result.value == ["denied", "no"]


async def test_a_worker_asking_for_more_permissions_is_refused(engine):
    await assert_denied(
        engine,
        """export default () => {
            new Worker("data:application/javascript,postMessage(1)",
                { type: "module", deno: { permissions: { read: true } } } as any);
            return "escalated";
        }""",
        # --unstable-worker-options is on (Restricted Library Mode's Worker needs fewer
        # permissions than the val), but Deno never lets a Worker have more.
        "Can't escalate parent thread permissions",
    )


async def test_a_worker_has_no_more_permissions_than_the_val(engine):
    result = await engine.evaluate(
        """export default () => new Promise((resolve) => {
            const source = `try { postMessage(Deno.readTextFileSync("/etc/hostname")) }
                            catch (e) { postMessage("denied: " + e.name) }`;
            const worker = new Worker("data:application/javascript," + encodeURIComponent(source), { type: "module" });
            worker.onmessage = (event) => { worker.terminate(); resolve(event.data) };
        })"""
    )

    assert result.value == "denied: NotCapable"


async def test_the_harness_gave_up_its_socket_permissions_before_the_val_ran(engine):
    result = await engine.evaluate(
        """export default async () => [
            (await Deno.permissions.query({ name: "read", path: Deno.args[0] })).state,
            (await Deno.permissions.query({ name: "write", path: Deno.args[0] })).state,
            (await Deno.permissions.query({ name: "read" })).state,
            (await Deno.permissions.query({ name: "run" })).state,
            (await Deno.permissions.query({ name: "ffi" })).state,
            (await Deno.permissions.query({ name: "sys" })).state,
        ]"""
    )

    assert "granted" not in result.value


def test_deno_starts_with_no_broad_permissions(tmp_path):
    command = sandbox.deno_command(runtime_config(), "/run/x/control.sock", ["127.0.0.0/8"])

    assert "--no-prompt" in command and "--no-config" in command
    assert "--allow-read=/run/x/control.sock" in command and "--allow-write=/run/x/control.sock" in command
    for flag in ("--allow-all", "-A", "--allow-run", "--allow-ffi", "--allow-sys"):
        assert not any(part == flag or part.startswith(flag + "=") for part in command), flag
    assert not any(part in ("--allow-read", "--allow-write") for part in command)


def test_deno_gets_no_host_variables(monkeypatch):
    monkeypatch.setenv("DENO_AUTH_TOKENS", "secret@127.0.0.1:8000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")

    environment = sandbox.sandbox_environment(runtime_config())

    assert set(environment) <= {"DENO_DIR", "NO_COLOR", "DENO_NO_UPDATE_CHECK", "DENO_NO_PROMPT",
                                "DENO_CERT", "DENO_TLS_CA_STORE", "NODE_EXTRA_CA_CERTS", "DENO_WEBGPU_BACKEND"}
