"""A val must not reach this machine through a proxy.

Deno checks a proxy's host as it is spelled, not the address it resolves to, so
`Deno.createHttpClient({ proxy: { url: "socks5://localhost:P" } })` (or the integer
spelling 2130706433, or ALL_PROXY set at run time) used to open a TCP connection to
127.0.0.1:P from inside the sandbox: a loopback port scanner. What stops it is in the
OS: the sandbox uids' firewall, which the runtime sets up itself when it runs as root.
"""

import ipaddress
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import Pool, PoolConfig, firewall, sandbox
from tests.runtime.helpers import Listener, can_unshare, needs_root, runtime_config, start_engine

# The test venv's interpreter may live where a sandbox uid can't read it (under /root).
SYSTEM_PYTHON = next((path for path in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(path, os.X_OK)),
                     None)

needs_nft = pytest.mark.skipif(
    os.geteuid() != 0 or firewall.find_nft() is None,
    reason="the runtime only sets up the firewall as root, with nft installed (.ci/run installs nftables)",
)
needs_a_python_for_sandbox_uids = pytest.mark.skipif(
    SYSTEM_PYTHON is None, reason="needs a system python3 that a sandbox uid can run"
)
needs_a_network_namespace = pytest.mark.skipif(
    not can_unshare("-n"), reason="needs root and unshare -n, for a network namespace with no other pools in it"
)


@pytest.fixture(scope="module")
def module_host():
    """Stands in for the module host: a listener on loopback the sandboxes may reach."""
    listener = Listener("127.0.0.1")
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def engine(module_host):
    engine = start_engine(pool_size=1, module_host=f"127.0.0.1:{module_host.port}")
    yield engine
    engine.shutdown()


# Each way of pointing a val's HTTP client at a proxy on this machine. The fetch itself
# goes to a public name; only the proxy is local.
THROUGH_A_PROXY = """
export default async (way: string, port: number) => {
  try {
    let client;
    if (way === "socks5 at localhost") {
      client = Deno.createHttpClient({ proxy: { url: `socks5://localhost:${port}` } });
    } else if (way === "socks5 at 2130706433") {
      client = Deno.createHttpClient({ proxy: { url: `socks5://2130706433:${port}` } });
    } else if (way === "ALL_PROXY set at run time") {
      Deno.env.set("ALL_PROXY", `socks5://localhost:${port}`);
      client = Deno.createHttpClient({});
    } else if (way === "HTTP_PROXY set at run time") {
      Deno.env.set("HTTP_PROXY", `http://localhost:${port}`);
      client = Deno.createHttpClient({});
    }
    await fetch("http://example.com/", { client, signal: AbortSignal.timeout(5000) });
    return "fetched";
  } catch (error) {
    return `failed: ${error} ${(error as Error).cause ?? ""}`;
  }
};
"""

WAYS = ("socks5 at localhost", "socks5 at 2130706433", "ALL_PROXY set at run time", "HTTP_PROXY set at run time")


@pytest.fixture
def loopback():
    listener = Listener("127.0.0.1")
    yield listener
    listener.close()


@needs_nft
@pytest.mark.parametrize("way", WAYS)
async def test_a_sandbox_cannot_reach_loopback_through_a_proxy(engine, loopback, way):
    result = await engine.evaluate(THROUGH_A_PROXY, args=[way, loopback.port])

    assert result.status == "success", result
    assert result.value.startswith("failed: "), result.value
    assert loopback.connections == 0


# --- The firewall itself ------------------------------------------------------------

# Connects to every TCP port of each address given, as whichever uid runs it. Blocking
# connects: on this machine's own addresses each is answered at once, so a port the
# firewall silently dropped would show up as a timeout rather than a refusal.
SCAN = """
import errno, json, socket, sys
found = {}
for address in sys.argv[1:]:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    target = socket.getaddrinfo(address, 0, family, socket.SOCK_STREAM)[0][4]
    connected, other = [], {}
    for port in range(1, 65536):
        probe = socket.socket(family, socket.SOCK_STREAM)
        probe.settimeout(3)
        try:
            outcome = probe.connect_ex((target[0], port, *target[2:]))
        except OSError as error:
            outcome = error.errno
        finally:
            probe.close()
        if outcome == 0:
            connected.append(port)
        elif outcome != errno.ECONNREFUSED:
            other[port] = errno.errorcode.get(outcome, str(outcome))
            if len(other) > 10:
                break
    found[address] = {"connected": connected, "other": other}
print(json.dumps(found))
"""


def run_as(uid, code, *args, timeout=300):
    """Runs a small Python program as a sandbox uid, with the sandbox group only."""
    return subprocess.run(
        [SYSTEM_PYTHON, "-I", "-S", "-c", code, *args], user=uid, group=PoolConfig().sandbox_gid, extra_groups=[],
        capture_output=True, text=True, timeout=timeout, cwd="/",
    )


def this_machines_addresses():
    """Loopback and every interface address, IPv6 ones with their interface (fe80::...%eth0)."""
    addresses = sorted(address for address in sandbox.local_ipv4_networks() if "/" not in address)
    for line in Path("/proc/net/if_inet6").read_text().splitlines():
        digits, *_, interface = line.split()
        address = ipaddress.IPv6Address(bytes.fromhex(digits))
        addresses.append(f"{address}%{interface}" if address.is_link_local else str(address))
    return addresses


def allowed_ports(table):
    """(address, port) of every module host the table lets the sandbox uids reach."""
    return {value for _, kind, value in firewall.owner_records(table) if kind == "allows"}


@needs_nft
@needs_a_python_for_sandbox_uids
def test_a_sandbox_uid_is_refused_on_every_port_of_this_machine_but_the_module_hosts(engine, module_host):
    addresses = this_machines_addresses()
    # A listener on each address (link-local ones aside: binding needs the interface), so
    # that every address has at least one port that is surely open.
    listeners = {address: Listener(address) for address in addresses if "%" not in address}
    lease = sandbox.UidLease(engine.config)
    try:
        scanned = run_as(lease.uid, SCAN, *addresses)
        # From this process's own uid they are reached: the firewall is all that differs.
        for address, listener in listeners.items():
            socket.create_connection((address, listener.port), timeout=3).close()
    finally:
        lease.release()
        for listener in listeners.values():
            listener.close()

    assert scanned.returncode == 0, scanned.stderr
    found = json.loads(scanned.stdout)
    allowed = allowed_ports(firewall.table_json())  # this pool's module host, and any other pool's
    for address in addresses:
        shown = f"[{address}]" if ":" in address else address
        reached = {f"{shown}:{port}" for port in found[address]["connected"]}
        assert reached <= allowed, f"{address}: the sandbox uid reached {sorted(reached - allowed)}"
        assert found[address]["other"] == {}, f"{address}: not refused at once: {found[address]['other']}"
    assert module_host.port in found["127.0.0.1"]["connected"]
    assert {address: listener.connections for address, listener in listeners.items()} == dict.fromkeys(listeners, 1)


# Where a packet from a sandbox uid would end up, by the table's own rules as nft lists
# them (nothing is sent). Any expression this doesn't know fails the test.


def _in_set(table, name, address):
    for item in table["nftables"]:
        if item.get("set", {}).get("name") == name:
            return any(_matches_address(element, address) for element in item["set"]["elem"])
    raise AssertionError(f"no set {name}")


def _matches_address(right, address):
    if isinstance(right, dict) and "prefix" in right:
        prefix = right["prefix"]
        return address in ipaddress.ip_network(f"{prefix['addr']}/{prefix['len']}")
    if isinstance(right, dict) and "range" in right:
        low, high = map(ipaddress.ip_address, right["range"])
        return low.version == address.version and low <= address <= high
    return ipaddress.ip_address(right) == address


def _holds(table, match, packet):
    left, right = match["left"], match["right"]
    assert match["op"] == "==", match
    if left.get("meta", {}).get("key") == "skuid":
        low, high = right["range"] if isinstance(right, dict) else (right, right)
        return low <= packet["uid"] <= high
    if left.get("meta", {}).get("key") == "l4proto":
        return packet["protocol"] in (right["set"] if isinstance(right, dict) else [right])
    payload = left["payload"]
    if payload["field"] == "daddr":
        if payload["protocol"] != ("ip6" if packet["address"].version == 6 else "ip"):
            return False
        if isinstance(right, str) and right.startswith("@"):
            return _in_set(table, right[1:], packet["address"])
        return _matches_address(right, packet["address"])
    if payload["field"] == "dport":
        if payload["protocol"] not in ("th", packet["protocol"]):
            return False
        return packet["port"] == right
    raise AssertionError(f"unknown match {match}")


def _run_chain(table, name, packet):
    """'accept', 'refuse' or None (the chain ran out without a verdict)."""
    for item in table["nftables"]:
        rule = item.get("rule")
        if not rule or rule["chain"] != name:
            continue
        matches, (verdict,) = rule["expr"][:-1], rule["expr"][-1:]
        if not all(_holds(table, expression["match"], packet) for expression in matches):
            continue
        if "accept" in verdict:
            return "accept"
        if "reject" in verdict:
            return "refuse"
        if "jump" in verdict:
            outcome = _run_chain(table, verdict["jump"]["target"], packet)
            if outcome is not None:
                return outcome
            continue
        raise AssertionError(f"unknown verdict {verdict}")
    return None


def verdict(table, uid, address, port, protocol="tcp"):
    packet = {"uid": uid, "address": ipaddress.ip_address(address), "port": port, "protocol": protocol}
    (chain,) = [item["chain"] for item in table["nftables"] if item.get("chain", {}).get("hook") == "output"]
    return _run_chain(table, chain["name"], packet) or chain["policy"]


@needs_nft
def test_the_rules_leave_the_public_internet_open_and_the_host_closed(engine, module_host):
    table = firewall.table_json()
    uid = engine.config.sandbox_uid_range[0]

    for address in ("1.1.1.1", "93.184.216.34", "203.0.113.80", "8.8.8.8", "2606:4700:4700::1111"):
        for port, protocol in ((443, "tcp"), (80, "tcp"), (25, "tcp"), (443, "udp")):
            assert verdict(table, uid, address, port, protocol) == "accept", (address, port, protocol)
    assert verdict(table, uid, "127.0.0.1", module_host.port) == "accept"
    for nameserver in firewall.resolvers():
        assert verdict(table, uid, str(nameserver), 53, "udp") == "accept"
    private = ["127.0.0.1", "127.0.0.53", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254",
               "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "fd00::1", "fe80::1",
               "::ffff:127.0.0.1", "64:ff9b::a00:1"]
    private += [address.split("%")[0] for address in this_machines_addresses()]
    for address in private:
        for port, protocol in ((22, "tcp"), (5432, "tcp"), (module_host.port + 1, "tcp"), (53, "tcp"), (123, "udp")):
            if any(ipaddress.ip_address(address) == nameserver and port == 53 for nameserver in firewall.resolvers()):
                continue
            assert verdict(table, uid, address, port, protocol) == "refuse", (address, port, protocol)
    # Only the sandbox uids: the host's own processes are left alone.
    assert verdict(table, 0, "127.0.0.1", 5432) == "accept"
    assert verdict(table, uid - 1, "127.0.0.1", 5432) == "accept"


# --- The table's life, with several pools ---------------------------------------------
#
# Each of these runs in a network namespace of its own (unshare -n), which has its own
# nftables tables and its own abstract sockets (the firewall's lock): the pools in it are
# the only ones, whatever else runs on this machine.

REPO = Path(__file__).resolve().parents[2]

LIFE = """
import asyncio, json, signal, socket, subprocess, sys
sys.path.insert(0, sys.argv[1])
from runtime import Pool, firewall
from tests.runtime.helpers import runtime_config

subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(3)]
a, b, c = [listener.getsockname()[1] for listener in listeners]
CONNECT = "import socket, sys; print(socket.socket().connect_ex(('127.0.0.1', int(sys.argv[1]))))"

def pool(port):
    return Pool(runtime_config(pool_size=0, module_host=f"127.0.0.1:{port}"))

NAMES = {a: "a", b: "b", c: "c"}

def table():
    listed = firewall.table_json()
    if listed is None:
        return None
    records = firewall.owner_records(listed)
    allows = sorted(NAMES[int(value.rpartition(":")[2])] for _, kind, value in records if kind == "allows")
    return {"pools": len({owner for owner, _, _ in records}), "allows": allows}

def reachable():
    # Which of the three listeners a sandbox uid may connect to.
    config = runtime_config()
    names = []
    for port, name in NAMES.items():
        probe = subprocess.run([sys.argv[2], "-I", "-S", "-c", CONNECT, str(port)], user=config.sandbox_uid_range[1],
                               group=config.sandbox_gid, extra_groups=[], capture_output=True, text=True, check=True)
        if probe.stdout.strip() == "0":
            names.append(name)
    return names

async def main(scenario):
    seen = {}
    def look(step):
        seen[step] = {"table": table(), "reachable": reachable()}
    if scenario == "two pools":
        first, second = pool(a), pool(b)
        await first.start(); await second.start(); look("both running")
        await second.stop(); look("the second stopped")
        await first.stop(); look("both stopped")
    elif scenario == "one module host":
        first, second = pool(a), pool(a)
        await first.start(); await second.start(); look("both running")
        await first.stop(); look("the first stopped")
        await second.stop(); look("both stopped")
    elif scenario == "a crash":
        child = subprocess.Popen([sys.executable, "-c", CHILD, sys.argv[1], str(a)], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "started"
        look("the first running")
        child.send_signal(signal.SIGKILL); child.wait()
        look("the first killed")
        second = pool(b)
        await second.start(); look("the second running")
        await second.stop(); look("the second stopped")
    elif scenario == "an exit without stopping":
        child = subprocess.Popen([sys.executable, "-c", CHILD, sys.argv[1], str(a), "exit"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "started"
        look("the first running")
        child.stdin.close()
        assert child.wait() == 0
        look("the first exited")
    print(json.dumps(seen))

CHILD = '''
import asyncio, sys
sys.path.insert(0, sys.argv[1])
from runtime import Pool
from tests.runtime.helpers import runtime_config
async def main():
    await Pool(runtime_config(pool_size=0, module_host=f"127.0.0.1:{sys.argv[2]}")).start()
    print("started", flush=True)
    if sys.argv[3:] == ["exit"]:
        sys.stdin.read()  # until the driver has looked; then out, without stopping the pool
    else:
        await asyncio.Event().wait()
asyncio.run(main())
'''

asyncio.run(main(sys.argv[3]))
"""

def life_of_the_table(scenario):
    finished = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", LIFE, str(REPO), SYSTEM_PYTHON, scenario],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert finished.returncode == 0, finished.stderr
    return json.loads(finished.stdout.splitlines()[-1])


@needs_nft
@needs_a_python_for_sandbox_uids
@needs_a_network_namespace
def test_each_pool_opens_its_module_host_and_the_last_to_stop_removes_the_table():
    seen = life_of_the_table("two pools")

    assert seen == {
        "both running": {"table": {"pools": 2, "allows": ["a", "b"]}, "reachable": ["a", "b"]},
        "the second stopped": {"table": {"pools": 1, "allows": ["a"]}, "reachable": ["a"]},
        "both stopped": {"table": None, "reachable": ["a", "b", "c"]},
    }


@needs_nft
@needs_a_python_for_sandbox_uids
@needs_a_network_namespace
def test_a_pool_that_stops_leaves_a_module_host_it_shares_open_for_the_other():
    seen = life_of_the_table("one module host")

    assert seen == {
        "both running": {"table": {"pools": 2, "allows": ["a", "a"]}, "reachable": ["a"]},
        "the first stopped": {"table": {"pools": 1, "allows": ["a"]}, "reachable": ["a"]},
        "both stopped": {"table": None, "reachable": ["a", "b", "c"]},
    }


@needs_nft
@needs_a_python_for_sandbox_uids
@needs_a_network_namespace
def test_the_rules_of_a_crashed_pool_are_dropped_by_the_next_pool():
    seen = life_of_the_table("a crash")

    assert seen == {
        "the first running": {"table": {"pools": 1, "allows": ["a"]}, "reachable": ["a"]},
        "the first killed": {"table": {"pools": 1, "allows": ["a"]}, "reachable": ["a"]},
        "the second running": {"table": {"pools": 1, "allows": ["b"]}, "reachable": ["b"]},
        "the second stopped": {"table": None, "reachable": ["a", "b", "c"]},
    }


@needs_root
async def test_without_nft_vals_still_run_and_the_log_says_the_firewall_is_not_applied(monkeypatch, caplog):
    monkeypatch.setattr(firewall, "find_nft", lambda: None)

    with caplog.at_level(logging.INFO, logger="runtime"):
        async with Pool(runtime_config(pool_size=1)) as pool:
            result = await pool.evaluate("export default () => 1 + 1")

    assert (result.status, result.value) == ("success", 2)
    assert "firewall is NOT applied (the nft command (Debian package nftables) is not installed)" in caplog.text
    assert "NO firewall for the sandbox uids" in caplog.text


# --- The proxy variables ----------------------------------------------------------------
#
# A second wall, in Deno's permissions: the variables Deno reads a proxy from are denied
# to vals (--deny-env), so a val can't set them at run time, and no secret may carry one.

PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy",
                   "NO_PROXY", "no_proxy", "NODE_USE_ENV_PROXY")


async def test_vals_can_neither_set_nor_read_the_proxy_variables(engine):
    """A val's Deno.env is a view of its secrets (harness/environment.ts): setting a proxy
    variable there changes nothing Deno's own HTTP client reads, as the process's
    environment is closed to the val by its permission."""
    result = await engine.evaluate(
        """export default (names: string[]) => names.map((name) => {
            Deno.env.set(name, "socks5://localhost:1");
            const state = Deno.permissions.querySync({ name: "env", variable: name }).state;
            return `${name}: ${Deno.env.get(name) === "socks5://localhost:1"}, ${state === "granted" ? "granted" : "closed"}`;
        })""",
        args=[list(PROXY_VARIABLES)],
    )

    assert result.status == "success", result
    assert result.value == [f"{name}: true, closed" for name in PROXY_VARIABLES]


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "all_proxy", "NODE_USE_ENV_PROXY"])
async def test_a_secret_named_like_a_proxy_variable_is_refused_before_any_process_gets_it(engine, name):
    with pytest.raises(ValueError, match=f"{name} can't be one of a val's environment variables"):
        await engine.evaluate("export default () => 1", env={name: "socks5://localhost:1"})

    result = await engine.evaluate("export default () => Deno.env.toObject()", env={"PROXY_HOST": "fine"})
    assert result.value == {"PROXY_HOST": "fine"}


@needs_nft
@needs_a_python_for_sandbox_uids
@needs_a_network_namespace
def test_a_process_that_exits_without_stopping_its_pool_takes_its_rules_out():
    seen = life_of_the_table("an exit without stopping")

    assert seen == {
        "the first running": {"table": {"pools": 1, "allows": ["a"]}, "reachable": ["a"]},
        "the first exited": {"table": None, "reachable": ["a", "b", "c"]},
    }


@needs_nft
async def test_a_squatted_lock_doesnt_keep_a_pool_from_setting_up_its_firewall(monkeypatch, caplog):
    # Any local user can bind an abstract socket's name; the lock file in the work dir,
    # which only root can open, still keeps pools that share it apart.
    monkeypatch.setattr(firewall, "LOCK_TIMEOUT_SECONDS", 0.2)
    squatter = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    squatter.bind(firewall.LOCK_NAME)
    try:
        async with Pool(runtime_config(pool_size=0)) as pool:
            applied = pool.firewall.applied
            owner = pool.firewall.owner
            records = firewall.owner_records(firewall.table_json())
    finally:
        squatter.close()

    assert applied
    assert (owner, "uids", "64200-64999") in records
    assert "going ahead without it" in caplog.text
    assert owner not in {record[0] for record in firewall.owner_records(firewall.table_json())}
