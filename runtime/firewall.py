"""The sandbox uids' firewall: an nftables table of the runtime's own, set up by every
pool that runs as root and removed by the last one to stop.

Deno's --deny-net is not enough on its own: it checks a SOCKS proxy's host as spelled,
not the address it resolves to, so `socks5://localhost:P` once reached any port on
127.0.0.1. The kernel knows better. For packets from sockets owned by the sandbox uids
(`meta skuid`, on the output hook), the table accepts the module hosts' ports and the
resolver's port 53, refuses (TCP reset, else ICMP admin-prohibited, so a refusal is
immediate) every private, loopback, link-local and multicast range and this machine's
own addresses and subnets, and leaves the rest, the public internet, alone.

One table for every pool on the machine (they all lease uids from the same range, and
any uid may serve any of them). In nftables an accept in one table doesn't stop another
table from refusing, so pools with tables of their own would refuse each other's module
hosts. Each pool is an *owner* of the table instead: its rules carry a comment naming
it (process id, that process's start time, a serial), and whoever changes the table
rewrites it whole, in one atomic `nft -f`, with the rules of the owners still alive.
So a pool that stops takes out exactly its own rules, the last one deletes the table,
and a pool that crashed leaves rules that the next pool to start or stop drops. Two
pools on one module host (a web process and the scheduler) each have their own rule.

A lock around that read-and-rewrite (see _machine_lock): a file in the work dir, and an
abstract unix socket, which lives in the same network namespace as the table; both go
away with their holder, crashed or not.
"""

import atexit
import contextlib
import errno
import fcntl
import ipaddress
import itertools
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from runtime import sandbox

logger = logging.getLogger(__name__)

TABLE = "valtown_sandbox"
LOCK_NAME = b"\0valtown-sandbox-firewall"
NFT_TIMEOUT_SECONDS = 30
LOCK_TIMEOUT_SECONDS = 30

# IPv6 counterparts of sandbox.DENIED_IPV4_RANGES. The sandbox can't open IPv6 sockets
# (seccomp) unless RUNTIME_BLOCK_IPV6 is off; then these are what keeps it off them.
DENIED_IPV6_RANGES = (
    "::/128",
    "::1/128",
    "::ffff:0:0/96",  # IPv4-mapped
    "64:ff9b::/96",  # NAT64, which may map onto private IPv4 ranges
    "64:ff9b:1::/48",
    "fc00::/7",  # unique local
    "fe80::/10",  # link-local
    "ff00::/8",  # multicast
)

OWNER_COMMENT = re.compile(r"^pool (?P<owner>\d+\.\d+\.\d+) (?P<kind>uids|allows|denies) (?P<value>\S+)$")

_serials = itertools.count(1)
_registry_lock = threading.Lock()
_live = {}  # owner id -> work dir, for this process's pools whose rules are (meant to be) in the table


def find_nft():
    # systemd units and cron often have no sbin directories on PATH.
    found = shutil.which("nft")
    return found or next((path for path in ("/usr/sbin/nft", "/sbin/nft") if os.access(path, os.X_OK)), None)


class SandboxFirewall:
    """One pool's share of the table: open() before its first process starts, close()
    after its last one has died."""

    def __init__(self, config):
        self.config = config
        self.owner = f"{os.getpid()}.{_start_time(os.getpid())}.{next(_serials)}"
        self.applied = False
        self.problem = None  # why the firewall isn't applied, for the log

    def open(self):
        if not sandbox.is_root():
            self.problem = "not running as root, so vals run as this process's own uid"
            return
        nft = find_nft()
        if nft is None:
            self.problem = "the nft command (Debian package nftables) is not installed"
            return
        records = self._records()
        try:
            with _machine_lock(self.config.work_dir):
                with _registry_lock:
                    _live[self.owner] = self.config.work_dir
                try:
                    _rewrite(nft, extra=records)
                except BaseException:
                    with _registry_lock:
                        _live.pop(self.owner, None)
                    raise
        except (OSError, subprocess.SubprocessError, RuntimeError, ValueError) as error:
            self.problem = f"setting up nftables table inet {TABLE} failed: {error}"
            return
        self.applied = True

    def close(self):
        if not self.applied:
            return
        self.applied = False
        with _registry_lock:
            _live.pop(self.owner, None)
        try:
            with _machine_lock(self.config.work_dir):
                _rewrite(find_nft())
        except (OSError, subprocess.SubprocessError, RuntimeError, ValueError) as error:
            logger.warning("Could not take this pool's rules out of nftables table inet %s: %s", TABLE, error)

    def describe(self):
        if self.applied:
            return f"sandbox uids firewalled to the module hosts and the public internet (nftables table inet {TABLE})"
        return f"NO firewall for the sandbox uids ({self.problem}): only Deno's --deny-net keeps vals off this machine"

    def _records(self):
        """What this pool adds to the table: its uid range, the module hosts its
        sandboxes import from, and any extra addresses it denies."""
        first, last = self.config.sandbox_uid_range
        uids = f"{int(first)}-{int(last)}" if first != last else str(int(first))
        records = [(self.owner, "uids", uids)]
        for address, port in module_host_addresses(self.config):
            records.append((self.owner, "allows", _address_and_port(address, port)))
        for network in extra_denied_networks(self.config):
            records.append((self.owner, "denies", str(network)))
        return records


def module_host_addresses(config):
    """(address, port) for every address the module host and the library host resolve to."""
    found = []
    for scheme, host in ((config.module_scheme, config.module_host), (config.library_scheme, config.library_host)):
        if not host:
            continue
        try:
            name, port = _split_host(host, 443 if scheme == "https" else 80)
            infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except (ValueError, OSError) as error:
            # Its sandboxes will fail to import from it, and say so; the rest still works.
            logger.warning("The sandbox firewall can't let the sandboxes reach %s: %s", host, error)
            continue
        for family, _, _, _, address in infos:
            if family in (socket.AF_INET, socket.AF_INET6):
                found.append((ipaddress.ip_address(address[0].split("%")[0]), port))
    return list(dict.fromkeys(found))


def extra_denied_networks(config):
    """The entries of extra_denied_hosts that are addresses or ranges (Deno alone denies names)."""
    networks = []
    for entry in config.extra_denied_hosts:
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            continue
    return networks


def resolvers(resolv_conf="/etc/resolv.conf"):
    """The nameservers Deno's resolver asks, as the sandbox does it in its own process."""
    found = []
    try:
        lines = Path(resolv_conf).read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                found.append(ipaddress.ip_address(words[1].split("%")[0]))
            except ValueError:
                continue
    return list(dict.fromkeys(found))


def host_networks():
    """Everything on this machine and its networks: (IPv4 networks, IPv6 networks), merged."""
    v4 = [ipaddress.ip_network(network) for network in sandbox.DENIED_IPV4_RANGES]
    v4 += [ipaddress.ip_network(network, strict=False) for network in sandbox.local_ipv4_networks()]
    v6 = [ipaddress.ip_network(network) for network in DENIED_IPV6_RANGES]
    v6 += sandbox.local_ipv6_networks()
    return list(ipaddress.collapse_addresses(v4)), list(ipaddress.collapse_addresses(v6))


# --- The table --------------------------------------------------------------------


def ruleset(records):
    """The whole table, as `nft -f` reads it, for these owners' records."""
    v4, v6 = host_networks()
    uid_rules, allow_rules, deny_rules = [], [], []
    for owner, kind, value in records:
        comment = f'comment "pool {owner} {kind} {value}"'
        if kind == "uids":
            uid_rules.append(f"meta skuid {value} jump sandbox {comment}")
        elif kind == "allows":
            address, port = _parse_address_and_port(value)
            allow_rules.append(f"{_match(address)} tcp dport {port} accept {comment}")
        elif kind == "denies":
            deny_rules.append(f"{_match(ipaddress.ip_network(value))} jump refuse {comment}")
    resolver_rules = [f'{_match(address)} meta l4proto {{ tcp, udp }} th dport 53 accept comment "resolver"'
                      for address in resolvers()]
    return "\n".join([
        # Replaced whole, in one transaction: the table is never missing, nor half built.
        f"table inet {TABLE} {{}}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        "set host_v4 {",
        "type ipv4_addr; flags interval;",
        f"elements = {{ {', '.join(map(str, v4))} }}",
        "}",
        "set host_v6 {",
        "type ipv6_addr; flags interval;",
        f"elements = {{ {', '.join(map(str, v6))} }}",
        "}",
        "chain refuse {",
        # At once, rather than dropped: a refused connect fails now, not after a timeout.
        "meta l4proto tcp reject with tcp reset",
        "reject with icmpx admin-prohibited",
        "}",
        "chain sandbox {",
        *allow_rules,
        *resolver_rules,
        *deny_rules,
        "ip daddr @host_v4 jump refuse",
        "ip6 daddr @host_v6 jump refuse",
        "}",
        "chain output {",
        "type filter hook output priority filter; policy accept;",
        *uid_rules,
        "}",
        "}",
        "",
    ])


def table_json(nft=None):
    """The table as `nft -j list table` gives it, or None if there is none."""
    nft = nft or find_nft()
    listed = subprocess.run([nft, "-j", "list", "table", "inet", TABLE], capture_output=True, text=True,
                            timeout=NFT_TIMEOUT_SECONDS)
    if listed.returncode != 0:
        if "No such file or directory" in listed.stderr:
            return None
        raise RuntimeError(f"nft list table: {listed.stderr.strip()}")
    return json.loads(listed.stdout)


def owner_records(table):
    """(owner, kind, value) from the comments of the table's rules."""
    records = []
    for item in (table or {}).get("nftables", []):
        match = OWNER_COMMENT.match(item.get("rule", {}).get("comment", ""))
        if match:
            records.append((match["owner"], match["kind"], match["value"]))
    return list(dict.fromkeys(records))


def _rewrite(nft, extra=()):
    """Rewrites the table with the records of the owners alive (and `extra`), or deletes
    it when none is left. Called with the machine lock held."""
    records = [record for record in owner_records(table_json(nft)) if _alive(record[0])]
    records += [record for record in extra if record not in records]
    if not any(kind == "uids" for _, kind, _ in records):
        if table_json(nft) is not None:
            _nft(nft, f"delete table inet {TABLE}\n")
        return
    _nft(nft, ruleset(records))


def _nft(nft, text):
    applied = subprocess.run([nft, "-f", "-"], input=text, capture_output=True, text=True,
                             timeout=NFT_TIMEOUT_SECONDS)
    if applied.returncode != 0:
        raise RuntimeError(f"nft -f: {applied.stderr.strip()}")


def _alive(owner):
    pid, start, _ = owner.split(".")
    if int(pid) == os.getpid():
        with _registry_lock:
            return owner in _live
    if start == "0":  # its start time was unknown: all there is to go on is the pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(int(pid), 0)
            return True
        return False
    return _start_time(int(pid)) == start


def _start_time(pid):
    """When the process started, in clock ticks since boot: with the pid, it names one
    process for good (a pid alone may have been reused). "0" if /proc can't say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "0"
    return stat.rpartition(")")[2].split()[19]


@contextlib.contextmanager
def _machine_lock(work_dir=None):
    """Held while the table is read and rewritten. Two locks: a file in the work dir, which
    only root can open, then an abstract socket, which reaches the pools of other work
    dirs too but which any local user could bind first. Whoever squats the socket's name
    only costs the pools of other work dirs their serialisation, never the firewall."""
    with contextlib.ExitStack() as held:
        if work_dir is not None:
            with contextlib.suppress(OSError):  # a work dir removed since: the socket alone
                file = held.enter_context(open(os.path.join(work_dir, "firewall.lock"), "a"))
                fcntl.flock(file, fcntl.LOCK_EX)
        lock = held.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
        while True:
            try:
                lock.bind(LOCK_NAME)
                break
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    raise
                if time.monotonic() > deadline:
                    logger.warning("The sandbox firewall's lock %r has been held for %d s: going ahead without it",
                                   LOCK_NAME, LOCK_TIMEOUT_SECONDS)
                    break
                time.sleep(0.01)  # another pool is rewriting the table: a few milliseconds
        yield


def _match(address_or_network):
    return f"{'ip6' if address_or_network.version == 6 else 'ip'} daddr {address_or_network}"


def _split_host(host, default_port):
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        return name, int(rest[1:]) if rest.startswith(":") else default_port
    name, colon, port = host.rpartition(":")
    if not colon:
        return host, default_port
    return name, int(port)


def _address_and_port(address, port):
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def _parse_address_and_port(value):
    name, port = _split_host(value, None)
    return ipaddress.ip_address(name), int(port)


def _close_at_exit():
    """At exit: take out the rules of this process's pools that were never stopped."""
    with _registry_lock:
        work_dirs = list(_live.values())
        _live.clear()
    nft = find_nft()
    if work_dirs and nft:
        try:
            with _machine_lock(work_dirs[0]):
                _rewrite(nft)
        except (OSError, subprocess.SubprocessError, RuntimeError, ValueError) as error:
            logger.warning("Could not take this process's rules out of nftables table inet %s: %s", TABLE, error)


atexit.register(_close_at_exit)
