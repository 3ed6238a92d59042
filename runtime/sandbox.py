"""How a sandboxed Deno process is started: its command line, environment and OS limits.

Layers, outermost first (see runtime/README.md for the whole security model):
1. jail.py: rlimits, an unprivileged uid per process when root, no_new_privs, and a
   seccomp filter (one ABI only, no self-sent SIGTRAP/SIGXCPU, no IPv6 sockets).
2. Deno's permissions: no read/write/run/ffi/sys; network allowed except the host's
   own addresses and private ranges; imports only from the module host and the CDNs.
3. The harness: revokes its socket access and replaces the environment before it loads
   user code, which it only ever loads through a non-literal import().
Around them all, when root: the sandbox uids' nftables firewall (firewall.py), which
refuses them this machine and its networks whatever Deno lets through.
"""

import fcntl
import functools
import hashlib
import ipaddress
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
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

# --- The module cache ----------------------------------------------------------------
#
# Deno keeps, under DENO_DIR (measured on Deno 2.9.8):
#   remote/<scheme>/<host>/<hash of the URL>   every remote module's source, by its URL
#   gen/<scheme>/<host>/..., gen/data/...      the JavaScript it compiled TypeScript to
#                                              (gen/data: inline code, the val's own)
#   gen/file/...                               the same for local files: only the harness
#   npm/                                       npm packages
#   dep_analysis_cache_v2                      each module's imports, by URL and source hash
#   node_analysis_cache_v2                     the exports of CommonJS files (npm packages)
#   v8_code_cache_v2                           V8's compiled code, string constants and all
# A cache shared by every process would hand one tenant's modules to another: anything
# fetched from the module host (with the process's import token, so private vals) or
# compiled from a val's own code. So each process gets a DENO_DIR of its own, inside its
# process directory and removed with it. Only what no tenant's identity went into is
# shared, through symlinks into the pool's DENO_DIR: npm packages and their CommonJS
# analysis, the public CDNs' modules and their compiled forms (no token goes there), and
# the harness's. V8's code cache is off (--no-code-cache): it can't be split by module,
# and a process's own one cost more to write than it saved (see bench/README.md). A
# process's dep_analysis_cache_v2 starts as a copy of one holding only the harness's
# modules (harness_module_info), so that Deno needn't parse the harness at every start.
SHARED_CACHE_DATABASES = ("node_analysis_cache_v2",)
SHARED_CACHE_DIRECTORIES = ("npm", os.path.join("gen", "file"))
SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}

# The variables Deno (and its node:http) would take a proxy from, read when a client is
# made, so a val setting one at run time could route its connections through a proxy
# on this machine (Deno checks a SOCKS proxy's host as spelled). Denied to vals; no
# evaluation may have one in its environment.
DENIED_ENV = (
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy",
    "NO_PROXY", "no_proxy", "NODE_USE_ENV_PROXY",
)


def sandbox_environment(config, import_token=None, deno_dir=None):
    """Deno's environment: a few variables it needs at start-up and nothing else of the
    host's. The harness deletes all of them but DENO_WEBGPU_BACKEND before user code runs
    (Deno has read them by then), and closes the environment to the val. `import_token` is sent with every import from the module host; `deno_dir`
    is the process's own module cache (process_deno_dir)."""
    environment = {
        "DENO_DIR": deno_dir or config.deno_dir_path,
        "NO_COLOR": "1",
        "DENO_NO_UPDATE_CHECK": "1",
        "DENO_NO_PROMPT": "1",
        # Trust what the host trusts (e.g. a TLS-inspecting proxy's CA), and Mozilla's list.
        "DENO_TLS_CA_STORE": "system,mozilla",
        # No WebGPU backend, so no GPU driver (native code that reads its own variables,
        # library paths among them) is ever loaded. Read whenever an adapter is asked
        # for, so the harness keeps it, and the val can't change it (harness/environment.ts).
        "DENO_WEBGPU_BACKEND": "none",
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


def _ipv6_interfaces(if_inet6):
    """(address, prefix length) of each line of /proc/net/if_inet6: 32 hex digits of
    address, then the interface index, then the prefix length in hex."""
    try:
        lines = Path(if_inet6).read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 3 and len(fields[0]) == 32:
            found.append((ipaddress.IPv6Address(bytes.fromhex(fields[0])), int(fields[2], 16)))
    return found


def local_ipv6_addresses(if_inet6="/proc/net/if_inet6"):
    """This machine's IPv6 addresses."""
    return {str(address) for address, _ in _ipv6_interfaces(if_inet6)}


def local_ipv6_networks(if_inet6="/proc/net/if_inet6"):
    """The IPv6 subnets this machine's interfaces are on."""
    return {ipaddress.IPv6Network(f"{address}/{prefix}", strict=False) for address, prefix in _ipv6_interfaces(if_inet6)}


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


def shared_cache_hosts(config):
    """The import hosts whose modules every process may share in the module cache: the
    public CDNs, never the module host or the library host, whatever the lists say."""
    ours = {(config.module_host or "").lower(), (config.library_host or "").lower()}
    return [host for host in config.import_hosts if host.lower() not in ours]


def cache_host_directory(scheme, host):
    """The directory Deno keeps a host's modules in, under remote/<scheme>/ and
    gen/<scheme>/: the host name, and a port other than the scheme's own as "_port_N"."""
    name, _, port = host.lower().rpartition(":") if ":" in host else (host.lower(), "", "")
    if not port or int(port) == DEFAULT_PORTS[scheme]:
        return name
    return f"{name}_port_{int(port)}"


def shared_cache_entries(config):
    """What each process's DENO_DIR links to in the shared one: (relative path, is a
    directory)."""
    entries = [(name, False) for name in SHARED_CACHE_DATABASES]
    entries += [(name, True) for name in SHARED_CACHE_DIRECTORIES]
    for host in shared_cache_hosts(config):
        for scheme in SCHEMES:
            for kind in ("remote", "gen"):
                entries.append((os.path.join(kind, scheme, cache_host_directory(scheme, host)), True))
    return entries


def deno_command(config, socket_path, denied):
    deno_path, harness = installed_deno(config), installed_harness(config)
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
        # V8's code cache would keep the compiled code of every module, private ones too,
        # in one database (see the module cache above).
        "--no-code-cache",
        # Lets the harness start Restricted Library Mode's Worker with fewer permissions.
        "--unstable-worker-options",
        # The harness sets the evaluation's secrets, and must delete everything else.
        "--allow-env",
        "--deny-env=" + ",".join(DENIED_ENV),
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
    """The work dir, the shared module cache's parts, and a location_data nobody can write."""
    make_owned_dir(config.work_dir, 0o711)
    if is_root():
        install_runnables(config)
    make_owned_dir(os.path.join(config.work_dir, "processes"), 0o711)
    make_owned_dir(os.path.join(config.work_dir, "uids"), 0o700)
    remove_orphaned_process_dirs(config)
    prepare_harness_module_info(config)
    deno_dir = config.deno_dir_path
    os.makedirs(deno_dir, exist_ok=True)
    if is_root():
        # Directories Deno made as a sandbox uid are the server's again (see
        # remove_process_dir: no CAP_DAC_OVERRIDE), so it can add and remove entries.
        for path in _shared_directories(deno_dir, [path for path, _ in shared_cache_entries(config)]):
            if os.path.isdir(path) and not os.path.islink(path):
                os.chown(path, 0, -1, follow_symlinks=False)
    remove_private_leftovers(config)
    # Created ahead, so that the processes' links never dangle.
    for path, is_directory in shared_cache_entries(config):
        target = os.path.join(deno_dir, path)
        if is_directory:
            os.makedirs(target, exist_ok=True)
        else:
            open(target, "a").close()
    if is_root():
        _share_with_sandbox_group(deno_dir, config.sandbox_gid, [path for path, _ in shared_cache_entries(config)])
    # localStorage and the Cache API live in DENO_DIR/location_data, keyed by the main
    # module (the harness), so they would leak between evaluations and users, and the
    # Cache API has no quota. A directory the sandbox can't write turns both off.
    location_data = os.path.join(deno_dir, "location_data")
    os.makedirs(location_data, exist_ok=True)
    os.chmod(location_data, 0o555)


# --- Process directories -------------------------------------------------------------
#
# Each process's directory (its socket, working directory and module cache) holds a
# lock file, locked by the server that made it for as long as it lives. A server killed
# outright (SIGKILL, the OOM killer) can't remove its processes' directories; the next
# pool to start on the same work dir finds their locks free and removes them, so that
# no val's code stays on disk after all.
PROCESS_LOCK = "lock"


def lock_process_dir(process_dir):
    """Creates process_dir's lock, already locked (it is locked before it has its name,
    so no one can find it free), and returns its descriptor: keep it open."""
    partial = os.path.join(process_dir, PROCESS_LOCK + ".partial")
    descriptor = os.open(partial, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    os.rename(partial, os.path.join(process_dir, PROCESS_LOCK))
    return descriptor


def remove_process_dir(path):
    """Removes a process directory and everything in it. Its module cache belongs to
    the process's uid, and a deployment's root has no CAP_DAC_OVERRIDE (docs/deploy.md),
    so each directory is first made ours again, from the top down: chown needs only
    CAP_CHOWN and a lookup in the parent, which is already ours. Links are never
    followed."""
    if is_root():
        _make_ours(path)
    shutil.rmtree(path, ignore_errors=True)


def _make_ours(directory):
    try:
        os.chown(directory, os.geteuid(), -1, follow_symlinks=False)
        os.chmod(directory, 0o700)  # a directory: scandir said so, and its process is dead
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _make_ours(entry.path)


def remove_orphaned_process_dirs(config):
    """Removes the process directories whose lock nobody holds: their server died."""
    processes = os.path.join(config.work_dir, "processes")
    for entry in os.scandir(processes):
        if not entry.is_dir(follow_symlinks=False):
            continue
        try:
            descriptor = os.open(os.path.join(entry.path, PROCESS_LOCK), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue  # not made yet, or not one of ours
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # alive
        finally:
            os.close(descriptor)
        remove_process_dir(entry.path)


# What a DENO_DIR shared by every process kept before each had its own: every val's
# compiled code, modules the module host served (private ones too), and the databases
# holding both. No process uses these in the shared DENO_DIR any more.
PRIVATE_LEFTOVERS = (
    os.path.join("gen", "data"),
    *(f"{name}{suffix}" for name in ("dep_analysis_cache_v2", "v8_code_cache_v2") for suffix in ("", "-wal", "-shm")),
)


def remove_private_leftovers(config):
    """Removes from the shared DENO_DIR what only a process's own may hold: the
    PRIVATE_LEFTOVERS, and the remote/ and gen/ entries of any host but the shared CDNs
    (the module host's and the library host's, under whatever name or port)."""
    deno_dir = config.deno_dir_path
    shared = {path for path, _ in shared_cache_entries(config)}
    doomed = [os.path.join(deno_dir, path) for path in PRIVATE_LEFTOVERS]
    for kind in ("remote", "gen"):
        for scheme in SCHEMES:
            directory = os.path.join(kind, scheme)
            try:
                names = os.listdir(os.path.join(deno_dir, directory))
            except FileNotFoundError:
                continue
            doomed += [os.path.join(deno_dir, directory, name) for name in names if os.path.join(directory, name) not in shared]
    for path in doomed:
        if os.path.isdir(path) and not os.path.islink(path):
            remove_process_dir(path)
        elif os.path.lexists(path):
            os.unlink(path)


def _shared_directories(deno_dir, paths):
    """deno_dir, each of paths under it, and each directory between, top down."""
    directories = {deno_dir}
    for path in paths:
        while path:
            directories.add(os.path.join(deno_dir, path))
            path = os.path.dirname(path)
    return sorted(directories)


def _share_with_sandbox_group(deno_dir, gid, paths):
    """Lets every sandbox uid write the shared module cache's parts: one group,
    group-writable (SQLite gives its -wal and -shm files the database's mode)."""
    for path in _shared_directories(deno_dir, paths):
        if os.path.islink(path):
            continue
        info = os.lstat(path)
        os.chown(path, -1 if path != deno_dir else 0, gid)
        is_directory = os.path.isdir(path)
        # setgid on directories: new entries get the sandbox group.
        os.chmod(path, info.st_mode & 0o7777 | (0o2070 if is_directory else 0o060))
    os.chmod(deno_dir, 0o2775)


def _harness_module_info_path(config):
    info = os.stat(find_deno(config))
    return os.path.join(config.work_dir, f"harness-module-info-{_harness_digest()}-{info.st_size}-{info.st_mtime_ns}")


def prepare_harness_module_info(config):
    """What Deno's dep_analysis_cache_v2 keeps about the harness's own modules (their
    imports), made once per harness and Deno by `deno cache`, which runs no code:
    every process's cache starts as a copy. Without it (deno cache failed) processes
    start with an empty one, a few milliseconds slower."""
    path = _harness_module_info_path(config)
    if os.path.exists(path):
        return
    scratch = tempfile.mkdtemp(prefix="module-info-", dir=config.work_dir)
    try:
        environment = {"DENO_DIR": scratch, "NO_COLOR": "1", "DENO_NO_UPDATE_CHECK": "1", "DENO_NO_PROMPT": "1"}
        command = [find_deno(config), "cache", "--quiet", "--no-config", "--no-lock", str(installed_harness(config))]
        try:
            finished = subprocess.run(command, env=environment, capture_output=True, timeout=config.startup_timeout_seconds)
        except (OSError, subprocess.TimeoutExpired) as error:
            logger.warning("Could not record the harness's module info: %s", error)
            return
        database = os.path.join(scratch, "dep_analysis_cache_v2")
        if finished.returncode != 0 or not os.path.exists(database):
            logger.warning("Could not record the harness's module info: %s", finished.stderr.decode(errors="replace")[-500:])
            return
        with sqlite3.connect(database) as connection:
            connection.execute("PRAGMA journal_mode=DELETE")  # all of it in the one file
        connection.close()
        os.chmod(database, 0o644)
        os.replace(database, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def process_deno_dir(config, process_dir, uid):
    """A process's own DENO_DIR, in its process directory (which is removed with it):
    what it fetches from the module host and compiles from the val stays here, readable
    by its uid alone. The shared parts (shared_cache_entries) are links into the pool's
    DENO_DIR, and so is location_data, which nobody can write."""
    deno_dir = os.path.join(process_dir, "deno-dir")
    shared = os.path.abspath(config.deno_dir_path)  # links are read from deno_dir
    os.mkdir(deno_dir, 0o700)
    made = [deno_dir]
    for kind in ("remote", "gen"):
        for scheme in SCHEMES:
            path = os.path.join(deno_dir, kind, scheme)
            os.makedirs(path, 0o700)
            made += [os.path.dirname(path), path]
    for path, _ in [*shared_cache_entries(config), ("location_data", True)]:
        os.symlink(os.path.join(shared, path), os.path.join(deno_dir, path))
    try:
        module_info = os.path.join(deno_dir, "dep_analysis_cache_v2")
        shutil.copyfile(_harness_module_info_path(config), module_info)
        made.append(module_info)
    except FileNotFoundError:
        pass
    if uid is not None:
        for path in dict.fromkeys(made):
            os.chown(path, uid, -1)  # never through a link
    return deno_dir


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


def describe_protections(config, firewall=None):
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
    if firewall is not None:
        notes.append(firewall.describe())
    return "; ".join(notes)
