"""How a sandboxed Deno process is started: its command line, environment and OS limits.

Layers, outermost first (see runtime/README.md for the whole security model):
1. jail.py: rlimits, an unprivileged uid per process when root, no_new_privs, and a
   seccomp filter (one ABI only, no self-sent SIGTRAP/SIGXCPU, no IPv6 sockets).
2. Deno's permissions: no read/write/run/ffi/sys; network allowed except the host's
   own addresses and private ranges; imports only from the module host and the CDNs.
3. The harness: revokes its socket access and replaces the environment before it loads
   user code, which it only ever loads through a non-literal import().
"""

import fcntl
import functools
import hashlib
import ipaddress
import logging
import os
import shutil
import sys
from pathlib import Path

from runtime import jail

logger = logging.getLogger(__name__)

RUNTIME_DIR = Path(__file__).resolve().parent
HARNESS = RUNTIME_DIR / "harness" / "main.ts"
JAIL = RUNTIME_DIR / "jail.py"

# Ranges no val may reach. Deno checks these against resolved addresses, so a public
# name that resolves to 127.0.0.1 is refused too. Deno 2.9 accepts IPv4 CIDR here but
# only single IPv6 addresses; the IPv6 ranges are closed by jail.py's seccomp filter.
DENIED_IPV4_RANGES = (
    "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the host's own services
    "10.0.0.0/8",
    "100.64.0.0/10",  # carrier-grade NAT
    "127.0.0.0/8",
    "169.254.0.0/16",  # link-local, and cloud metadata at 169.254.169.254
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",  # benchmarking
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and the broadcast address
)
DENIED_IPV6_ADDRESSES = ("::1", "::")

# Deno's own SQLite caches. Created ahead, group-writable, so that every sandbox uid
# can update them (SQLite gives its -wal and -shm files the same mode).
DENO_CACHE_DATABASES = ("dep_analysis_cache_v2", "node_analysis_cache_v2", "v8_code_cache_v2")


def sandbox_environment(config, import_token=None):
    """Deno's environment: a few variables it needs at start-up and nothing else of the
    host's. The harness deletes all of them before user code runs (Deno has read them
    by then). `import_token` is sent with every import from the module host."""
    environment = {
        "DENO_DIR": config.deno_dir_path,
        "NO_COLOR": "1",
        "DENO_NO_UPDATE_CHECK": "1",
        "DENO_NO_PROMPT": "1",
        # Trust what the host trusts (e.g. a TLS-inspecting proxy's CA), and Mozilla's list.
        "DENO_TLS_CA_STORE": "system,mozilla",
    }
    if import_token and config.module_host:
        environment["DENO_AUTH_TOKENS"] = f"{import_token}@{config.module_host}"
    for name in config.deno_env_passthrough:
        if name in os.environ:
            environment[name] = os.environ[name]
    return environment


def find_deno(config):
    if config.deno_path:
        return config.deno_path
    import deno

    return deno.find_deno_bin()


def is_root():
    return os.geteuid() == 0


# --- This machine's own addresses -------------------------------------------------


def local_ipv4_networks(fib_trie="/proc/net/fib_trie"):
    """This machine's IPv4 addresses, and the subnets its interfaces are attached to.

    /proc/net/fib_trie lists them without needing any tool: each "|-- a.b.c.d" line is
    followed by lines like "/32 host LOCAL" (an address of ours) or "/24 link UNICAST"
    (a directly connected subnet).
    """
    found = set()
    try:
        lines = Path(fib_trie).read_text().splitlines()
    except OSError:
        return found
    address = None
    for line in lines:
        text = line.strip()
        if text.startswith("|--"):
            address = text[3:].strip()
        elif address and text.startswith("/"):
            prefix, _, kind = text.partition(" ")
            if kind.endswith("host LOCAL"):
                found.add(address)
            elif kind.endswith("link UNICAST"):
                found.add(str(ipaddress.ip_network(f"{address}{prefix}", strict=False)))
    return found


def local_ipv6_addresses(if_inet6="/proc/net/if_inet6"):
    """This machine's IPv6 addresses, from /proc/net/if_inet6 (32 hex digits a line)."""
    found = set()
    try:
        lines = Path(if_inet6).read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        digits = line.split()[0] if line.split() else ""
        if len(digits) == 32:
            found.add(str(ipaddress.IPv6Address(bytes.fromhex(digits))))
    return found


def denied_hosts(config):
    """Every value for --deny-net: private ranges, loopback, and this machine's addresses."""
    hosts = list(DENIED_IPV4_RANGES)
    hosts += sorted(local_ipv4_networks())
    hosts += [f"[{address}]" for address in DENIED_IPV6_ADDRESSES]
    hosts += sorted(f"[{address}]" for address in local_ipv6_addresses())
    hosts += list(config.extra_denied_hosts)
    return list(dict.fromkeys(hosts))  # without duplicates, in order


# --- The command line -------------------------------------------------------------


def import_hosts(config):
    hosts = list(config.import_hosts)
    if config.library_host:
        hosts.insert(0, config.library_host)
    if config.module_host:
        hosts.insert(0, config.module_host)
    return hosts


def library_import_hosts(config):
    """Where Restricted Library Mode's Worker may import from: never the module host
    that knows this process's token."""
    hosts = list(config.import_hosts)
    if config.library_host:
        hosts.insert(0, config.library_host)
    return hosts


def reloaded_prefixes(config):
    """URL prefixes Deno must fetch afresh on every import, never from its cache: vals
    change at every save, and a private val cached for its owner must not be served
    from the shared cache to anyone else. (Deno matches these as plain prefixes, and
    one ending in "/" matches nothing.)"""
    prefixes = []
    for scheme, host in ((config.module_scheme, config.module_host), (config.library_scheme, config.library_host)):
        if host:
            prefixes += [f"{scheme}://{host}/v", f"{scheme}://{host}/std"]
    return prefixes


def deno_command(config, socket_path, denied):
    deno_path, harness = installed_deno(config), installed_harness(config)
    reloaded = reloaded_prefixes(config)
    return [
        deno_path,
        "run",
        "--no-prompt",
        "--quiet",  # no "Download ..." lines among the val's own output
        "--no-config",
        "--no-lock",
        f"--v8-flags=--max-old-space-size={config.heap_mb}",
        "--allow-net",
        "--deny-net=" + ",".join(denied),
        "--allow-import=" + ",".join(import_hosts(config)),
        *(["--reload=" + ",".join(reloaded)] if reloaded else []),
        # Lets the harness start Restricted Library Mode's Worker with fewer permissions.
        "--unstable-worker-options",
        # The harness sets the evaluation's secrets, and must delete everything else.
        "--allow-env",
        # Only to connect to the control socket; the harness revokes both at once.
        f"--allow-read={socket_path}",
        f"--allow-write={socket_path}",
        str(harness),
        socket_path,
    ]


def jail_arguments(config, uid):
    mb = 1024 * 1024
    limits = {
        "DATA": config.max_data_mb * mb,
        "FSIZE": config.max_file_mb * mb,
        "CORE": 0,
        "NOFILE": config.max_open_files,
        # A backstop: the host's wall-clock timeout normally kills first.
        "CPU": int(config.max_timeout_seconds) + 30,
    }
    if uid is not None:
        # RLIMIT_NPROC counts the threads of the real uid, so it only caps this process
        # when the uid is its own. Root ignores it, hence only with a uid.
        limits["NPROC"] = config.max_threads
    arguments = [f"--limit={name}={value}" for name, value in limits.items()]
    # Group-writable files, so the shared module cache works for every sandbox uid.
    arguments.append("--umask=002")
    if uid is not None:
        arguments += [f"--uid={uid}", f"--gid={config.sandbox_gid}"]
    if config.block_ipv6 and jail.can_filter():
        arguments.append("--block-ipv6")
    return arguments


def sandbox_command(config, socket_path, denied, uid):
    """The full command line: test prefix, then jail.py, then deno."""
    return [
        *config.command_prefix,
        sys.executable,
        "-I",  # ignore PYTHON* variables and the user's site-packages
        "-S",
        str(JAIL),
        *jail_arguments(config, uid),
        "--",
        *deno_command(config, socket_path, denied),
    ]


# --- Directories ------------------------------------------------------------------


def make_owned_dir(path, mode):
    """Creates path (or accepts it) only if it is ours and not a symlink."""
    os.makedirs(path, exist_ok=True)
    info = os.lstat(path)
    if os.path.islink(path) or info.st_uid != os.geteuid():
        raise RuntimeError(f"{path} must be a directory owned by this user")
    os.chmod(path, mode)


# --- What the sandbox uids run -------------------------------------------------------
#
# A sandbox uid must be able to read the deno binary and the harness. The checkout may
# sit where only its owner can look (a 0700 home or temp dir), so when processes run as
# other uids, both are installed into the work dir, readable by all.


def _install_dir(config):
    return os.path.join(config.work_dir, "install")


@functools.cache
def _harness_digest():
    digest = hashlib.sha256()
    for path in sorted((RUNTIME_DIR / "harness").glob("*.ts")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def installed_harness(config):
    if not is_root():
        return HARNESS
    return Path(_install_dir(config)) / f"harness-{_harness_digest()}" / HARNESS.name


def installed_deno(config):
    original = find_deno(config)
    if not is_root():
        return original
    info = os.stat(original)
    return os.path.join(_install_dir(config), f"deno-{info.st_size}-{info.st_mtime_ns}")


def install_runnables(config):
    """Copies deno and the harness where every sandbox uid can read them, once per version."""
    make_owned_dir(_install_dir(config), 0o755)
    deno_copy = installed_deno(config)
    if not os.path.exists(deno_copy):
        partial = deno_copy + ".partial"
        shutil.copy2(find_deno(config), partial)
        os.chmod(partial, 0o755)
        os.replace(partial, deno_copy)
    harness_dir = installed_harness(config).parent
    if not harness_dir.exists():
        partial = Path(str(harness_dir) + f".partial-{os.getpid()}")
        shutil.copytree(RUNTIME_DIR / "harness", partial, dirs_exist_ok=True)
        os.chmod(partial, 0o755)
        for path in partial.iterdir():
            os.chmod(path, 0o644)
        try:
            os.rename(partial, harness_dir)
        except OSError:  # another pool installed it first
            shutil.rmtree(partial, ignore_errors=True)


def prepare_directories(config):
    """The work dir, the shared module cache, and a location_data nobody can write."""
    make_owned_dir(config.work_dir, 0o711)
    if is_root():
        install_runnables(config)
    make_owned_dir(os.path.join(config.work_dir, "processes"), 0o711)
    make_owned_dir(os.path.join(config.work_dir, "uids"), 0o700)
    deno_dir = config.deno_dir_path
    os.makedirs(deno_dir, exist_ok=True)
    if is_root():
        _share_with_sandbox_group(deno_dir, config.sandbox_gid)
    # localStorage and the Cache API live in DENO_DIR/location_data, keyed by the main
    # module (the harness), so they would leak between evaluations and users, and the
    # Cache API has no quota. A directory the sandbox can't write turns both off.
    location_data = os.path.join(deno_dir, "location_data")
    os.makedirs(location_data, exist_ok=True)
    os.chmod(location_data, 0o555)


def _share_with_sandbox_group(deno_dir, gid):
    """Lets every sandbox uid write the module cache: one group, group-writable."""
    os.chown(deno_dir, 0, gid)
    os.chmod(deno_dir, 0o2775)  # setgid: new entries get the sandbox group
    for name in DENO_CACHE_DATABASES:
        open(os.path.join(deno_dir, name), "a").close()
    for entry in os.scandir(deno_dir):
        if entry.name == "location_data" or entry.is_symlink():
            continue
        os.chown(entry.path, -1, gid)
        os.chmod(entry.path, entry.stat().st_mode | (0o2070 if entry.is_dir() else 0o060))


# --- Sandbox uids -----------------------------------------------------------------


class UidLease:
    """An unprivileged uid held by one pool slot, so RLIMIT_NPROC counts only its threads.

    A lock file per uid keeps two pools (or two server processes) from sharing one.
    """

    def __init__(self, config):
        self.uid = None
        self._file = None
        if not is_root():
            return
        first, last = config.sandbox_uid_range
        lock_dir = os.path.join(config.work_dir, "uids")
        for uid in range(first, last + 1):
            lock = open(os.path.join(lock_dir, str(uid)), "w")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            self.uid, self._file = uid, lock
            return
        raise RuntimeError(f"no free sandbox uid in {first}-{last}")

    def release(self):
        if self._file:
            self._file.close()
            self._file = None


def describe_protections(config):
    """A short account of which OS protections this host can apply, for the log."""
    notes = []
    if is_root():
        notes.append("a uid of its own per process, with RLIMIT_NPROC capping threads")
    else:
        notes.append("NOT root: processes share the host's uid and there is no thread cap")
    if not jail.can_filter():
        notes.append("NO seccomp filter for this machine type: IPv6 NOT blocked, kill reasons forgeable")
    elif config.block_ipv6:
        notes.append("IPv6 sockets refused by seccomp")
    return "; ".join(notes)
