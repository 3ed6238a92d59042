"""The network is open to the public internet and closed to the host.

Every attempt targets a real listener on this machine that counts connections, so a
denial is proven by a connection that never arrived. No test sends traffic anywhere
but this machine's own addresses (the private ranges are checked with
Deno.permissions.query, which sends nothing).
"""

import os
import socket
import subprocess
import sys

import pytest

from runtime import sandbox
from tests.runtime.helpers import WORK_DIR, Listener, assert_still_works, can_unshare, runtime_config, start_engine

ATTACK = """
import dgram from "node:dgram";
import http from "node:http";
import net from "node:net";

type Attempt = { method: string; host: string; port: number };

const inUrl = (host: string) => host.includes(":") ? `[${host}]` : host;

function settle(start: (done: (outcome: string) => void) => void): Promise<string> {
  return new Promise((resolve) => {
    try { start(resolve) } catch (error) { resolve(`denied: ${error}`) }
  });
}

async function attempt({ method, host, port }: Attempt): Promise<string> {
  const url = `http://${inUrl(host)}:${port}/`;
  try {
    switch (method) {
      case "fetch":
        await fetch(url, { signal: AbortSignal.timeout(3000) });
        return "reached";
      case "connect":
        (await Deno.connect({ hostname: host, port })).close();
        return "reached";
      case "connectTls":
        (await Deno.connectTls({ hostname: host, port })).close();
        return "reached";
      case "websocket":
        return await settle((done) => {
          const socket = new WebSocket(`ws://${inUrl(host)}:${port}/`);
          socket.onopen = () => done("reached");
          socket.onerror = (event) => done(`denied: ${(event as ErrorEvent).message}`);
        });
      case "node:net":
        return await settle((done) => {
          const socket = net.createConnection({ host, port }, () => done("reached"));
          socket.on("error", (error) => done(`denied: ${error.message}`));
        });
      case "node:http":
        return await settle((done) => {
          http.get(url, () => done("reached")).on("error", (error) => done(`denied: ${error.message}`));
        });
      case "node:dgram":
        return await settle((done) => {
          const socket = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
          socket.on("error", (error) => done(`denied: ${error.message}`));
          socket.send("hello", port, host, (error) => done(error ? `denied: ${error.message}` : "sent"));
        });
    }
    return "unknown method";
  } catch (error) {
    return `denied: ${error} ${(error as Error).cause ?? ""}`;
  }
}

export default async (attempts: Attempt[]) => {
  const outcomes = [];
  for (const one of attempts) outcomes.push(`${one.method} ${one.host}: ${await attempt(one)}`);
  return outcomes;
};
"""

TCP_METHODS = ("fetch", "connect", "connectTls", "websocket", "node:net", "node:http")

# Ways to write a loopback IPv4 address that all land on 127.0.0.1.
LOOPBACK_SPELLINGS = (
    "127.0.0.1",
    "localhost",
    "127.1",
    "2130706433",  # decimal
    "0x7f000001",  # hex
    "0177.0.0.1",  # octal
    "::ffff:127.0.0.1",  # IPv4-mapped IPv6
    "::ffff:7f00:1",
    "0.0.0.0",
)


@pytest.fixture(scope="module")
def engine():
    engine = start_engine()
    yield engine
    engine.shutdown()


@pytest.fixture
def loopback():
    listener = Listener("127.0.0.1")
    yield listener
    listener.close()


@pytest.fixture
def loopback_v6():
    listener = Listener("::1")
    yield listener
    listener.close()


async def attack(engine, attempts):
    result = await engine.evaluate(ATTACK, args=[attempts], limits=None)
    assert result.status == "success", result
    return result.value


def assert_all_denied(outcomes):
    for outcome in outcomes:
        assert ": denied: " in outcome, outcome
        assert "reached" not in outcome and not outcome.endswith(": sent"), outcome


async def test_every_spelling_of_loopback_is_denied_for_every_method(engine, loopback):
    attempts = [
        {"method": method, "host": host, "port": loopback.port}
        for host in LOOPBACK_SPELLINGS
        for method in TCP_METHODS
        if not (method == "connectTls" and host.startswith("0"))
    ]

    outcomes = await attack(engine, attempts)

    assert_all_denied(outcomes)
    assert loopback.connections == 0
    # Deno names the address it refused: the spellings all resolved to loopback.
    assert sum("127.0.0.1:" in outcome for outcome in outcomes) > len(outcomes) // 2
    await assert_still_works(engine)


async def test_ipv6_loopback_and_the_unspecified_address_are_denied(engine, loopback_v6):
    attempts = [
        {"method": method, "host": host, "port": loopback_v6.port}
        for host in ("::1", "::", "0:0:0:0:0:0:0:1")
        for method in TCP_METHODS
    ]

    outcomes = await attack(engine, attempts)

    assert_all_denied(outcomes)
    assert loopback_v6.connections == 0


async def test_udp_to_the_host_is_denied(engine):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(0.3)

    # node:dgram raises the permission error outside the send callback, so the
    # evaluation ends with it.
    result = await engine.evaluate(ATTACK, args=[[{"method": "node:dgram", "host": "127.0.0.1", "port": receiver.getsockname()[1]}]])

    assert result.status == "error" and "Requires net access" in result.error["message"]
    with pytest.raises(TimeoutError):
        receiver.recvfrom(100)
    receiver.close()
    await assert_still_works(engine)


async def test_the_hosts_own_interface_addresses_are_denied(engine):
    addresses = [address for address in sandbox.local_ipv4_networks() if "/" not in address]
    addresses += [address for address in sandbox.local_ipv6_addresses() if not address.startswith("fe80")]
    listeners = [Listener(address) for address in addresses]
    try:
        attempts = [
            {"method": method, "host": listener.socket.getsockname()[0], "port": listener.port}
            for listener in listeners
            for method in ("fetch", "connect", "node:net")
        ]

        outcomes = await attack(engine, attempts)

        assert_all_denied(outcomes)
        assert [listener.connections for listener in listeners] == [0] * len(listeners)
    finally:
        for listener in listeners:
            listener.close()


async def test_the_private_and_metadata_ranges_are_denied_without_sending_anything(engine):
    samples = [
        "10.0.0.1", "10.255.255.254", "172.16.0.1", "172.31.255.254", "192.168.0.1", "192.168.255.254",
        "169.254.169.254", "169.254.0.1", "100.64.0.1", "100.127.255.254", "0.0.0.0", "0.1.2.3",
        "127.255.255.254", "224.0.0.1", "255.255.255.255",
    ]
    result = await engine.evaluate(
        """export default async (hosts: string[]) => {
            const states = {};
            for (const host of hosts) states[host] = (await Deno.permissions.query({ name: "net", host })).state;
            return states;
        }""",
        args=[samples + ["example.com", "1.1.1.1"]],
    )

    states = result.value
    assert {host: states[host] for host in samples} == {host: "denied" for host in samples}
    assert states["example.com"] == states["1.1.1.1"] == "granted"  # the public internet is open


@pytest.mark.parametrize(
    "listen",
    [
        "Deno.listen({ hostname: '0.0.0.0', port: 0 })",
        "Deno.listen({ hostname: '127.0.0.1', port: 0 })",
        "Deno.listen({ hostname: '::', port: 0 })",
        "Deno.listen({ hostname: '::1', port: 0 })",
        "Deno.serve({ hostname: '0.0.0.0', port: 0 }, () => new Response('x'))",
        "(await import('node:net')).createServer().listen(0, '0.0.0.0')",
        "(await import('node:http')).createServer().listen(0)",
    ],
)
async def test_listening_on_the_host_is_denied(engine, listen):
    result = await engine.evaluate(
        f"export default async () => {{ {listen}; await new Promise(r => setTimeout(r, 200)); return 'listening' }}"
    )

    assert result.status == "error", result
    assert "Requires net access" in result.error["message"]


@pytest.mark.skipif(not can_unshare("-m"), reason="needs root and unshare -m for a private /etc/hosts")
async def test_a_name_that_resolves_to_loopback_is_denied(loopback, tmp_path):
    # The hosts entry exists only in the sandbox's own mount namespace: the real
    # /etc/hosts is never touched.
    hosts = os.path.join(WORK_DIR, "hosts-for-test")
    with open(hosts, "w") as file:
        file.write("127.0.0.1 localhost\n127.0.0.1 sneaky.example.com\n")
    os.chmod(hosts, 0o644)
    bind_hosts = ("unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', hosts)
    engine = start_engine(pool_size=1, command_prefix=bind_hosts)
    try:
        attempts = [{"method": method, "host": "sneaky.example.com", "port": loopback.port} for method in TCP_METHODS]

        outcomes = await attack(engine, attempts)

        assert_all_denied(outcomes)
        assert loopback.connections == 0
        # The name did resolve (to loopback), and the resolved address was refused.
        assert any(f"127.0.0.1:{loopback.port}" in outcome for outcome in outcomes)
    finally:
        engine.shutdown()
        os.unlink(hosts)


@pytest.mark.skipif(not can_unshare("-n"), reason="needs root and unshare -n")
async def test_ipv6_sockets_are_refused_so_private_ipv6_ranges_are_closed():
    # Deno can't deny IPv6 ranges, so the sandbox refuses IPv6 sockets altogether. This
    # runs in an empty network namespace: even if the filter failed, nothing could leave.
    engine = start_engine(pool_size=1, command_prefix=("unshare", "-n"))
    try:
        hosts = ["fd00::1", "fc00::1", "fe80::1", "2001:db8::1", "64:ff9b::a00:1"]
        outcomes = await attack(engine, [{"method": "connect", "host": host, "port": 80} for host in hosts])
        ipv4 = await attack(engine, [{"method": "connect", "host": "198.51.100.1", "port": 80}])
    finally:
        engine.shutdown()

    for outcome in outcomes:
        assert "Address family not supported" in outcome, outcome
    # IPv4 sockets are still made (this namespace just has no route).
    assert "Address family not supported" not in ipv4[0] and "Network is unreachable" in ipv4[0]


def test_the_ipv6_filter_refuses_ipv6_sockets_but_not_ipv4_ones(loopback, loopback_v6, tmp_path):
    # jail.py on its own, around a Deno with every network permission: only the
    # seccomp filter stands between it and [::1].
    probe = os.path.join(WORK_DIR, "ipv6_probe.ts")
    with open(probe, "w") as file:
        file.write(
            """for (const hostname of Deno.args) {
                try { (await Deno.connect({ hostname, port: Number(Deno.env.get(hostname.includes(":") ? "V6" : "V4")) })).close(); console.log(hostname, "connected") }
                catch (error) { console.log(hostname, String(error)) }
            }"""
        )
    os.chmod(probe, 0o644)
    deno = sandbox.find_deno(runtime_config())
    command = [sys.executable, "-I", "-S", str(sandbox.JAIL), "--block-ipv6", "--",
               deno, "run", "--no-prompt", "--allow-net", "--allow-env", probe, "::1", "127.0.0.1"]
    environment = {"DENO_DIR": os.path.join(WORK_DIR, "deno-dir"), "NO_COLOR": "1",
                   "V4": str(loopback.port), "V6": str(loopback_v6.port)}

    output = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60).stdout

    assert "::1 Address family not supported" in output.replace("Error: ", "")
    assert "127.0.0.1 connected" in output
    assert loopback_v6.connections == 0 and loopback.connections == 1
    os.unlink(probe)


def test_the_deny_list_covers_private_ranges_and_this_machines_addresses():
    denied = sandbox.denied_hosts(runtime_config())

    for network in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
                    "0.0.0.0/8", "100.64.0.0/10", "[::1]", "[::]"):
        assert network in denied
    for address in sandbox.local_ipv6_addresses():
        assert f"[{address}]" in denied
    for address in sandbox.local_ipv4_networks():
        assert address in denied


async def test_unix_sockets_on_the_host_are_denied(engine):
    path = os.path.join(WORK_DIR, "host-service.sock")
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o777)
    server.listen(1)
    server.settimeout(0.3)
    try:
        result = await engine.evaluate(f"export default () => Deno.connect({{ transport: 'unix', path: '{path}' }})")

        assert result.status == "error"
        assert "Requires read access" in result.error["message"]
        with pytest.raises(TimeoutError):
            server.accept()
    finally:
        server.close()
        os.unlink(path)
