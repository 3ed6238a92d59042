"""The pool's configuration, and the per-evaluation limits.

Plain dataclasses with safe defaults. load_config() reads the RUNTIME_* Django settings
when Django is configured, so the engine itself never needs Django.
"""

import os
import tempfile
from dataclasses import dataclass, field, fields, replace

# Hosts vals may import modules from, besides the platform's own module host.
DEFAULT_IMPORT_HOSTS = (
    "esm.sh",
    "cdn.jsdelivr.net",
    "jsr.io",
    "deno.land",
    "raw.githubusercontent.com",
    "gist.githubusercontent.com",
)


def _default_work_dir():
    return os.path.join(tempfile.gettempdir(), "valtown-runtime")


@dataclass(frozen=True)
class Limits:
    """Limits for one evaluation or HTTP request. Memory limits are the pool's, as
    processes are pre-started (and an HTTP val's process serves many requests)."""

    timeout_seconds: float = 10.0
    max_log_bytes: int = 1_000_000
    max_result_bytes: int = 1_000_000
    # Host calls (on_call): how many one evaluation or request may make, and the
    # largest payload or reply, in bytes of JSON.
    max_host_calls: int = 100
    max_host_call_bytes: int = 1_000_000


@dataclass(frozen=True)
class Tenant:
    """Whom an evaluation counts against (see PoolConfig.max_processes_per_tenant). A
    tenant in a group also shares one tenant's cap with the group's other members: the
    platform puts each anonymous caller's address in one tenant and all of them in the
    group "anonymous", so no number of addresses holds more than one caller's share."""

    name: str
    group: str | None = None


@dataclass(frozen=True)
class PoolConfig:
    # How many processes are kept started, ready or running. This is also how many
    # evaluations run at once.
    pool_size: int = 3
    # Callers waiting for a free process. More are refused at once with RuntimeBusy.
    # (Counted per tenant: see max_processes_per_tenant.)
    max_waiting: int = 32
    # Evaluation processes one tenant (the principal a val runs for) may hold at once;
    # None: pool_size - 1 (at least 1), so one user never holds them all. Waiting
    # callers are served round-robin across tenants.
    max_processes_per_tenant: int | None = None
    # How long a caller waits for a free process before RuntimeBusy.
    wait_timeout_seconds: float = 10.0
    # How long a new process may take to connect and report ready.
    startup_timeout_seconds: float = 20.0
    default_limits: Limits = field(default_factory=Limits)
    # The longest timeout a caller may ask for; also sets the CPU-time backstop.
    max_timeout_seconds: float = 300.0

    # V8's JavaScript heap cap (--max-old-space-size).
    heap_mb: int = 256
    # The host kills a process whose resident memory passes this. It covers what the
    # heap cap does not: ArrayBuffers, WebAssembly memory, Workers.
    max_rss_mb: int = 512
    # RLIMIT_DATA: the kernel refuses allocations past this. An idle Deno already maps
    # about 560 MB (mostly never touched) and each Worker reserves about 512 MB more,
    # so 4096 allows about 4 Workers. Real memory use is capped by max_rss_mb.
    max_data_mb: int = 4096
    # RLIMIT_NPROC for the process's own uid: caps threads, so Workers. Deno itself uses
    # about 7 threads and each Worker adds one. Only enforced when the host runs as root.
    max_threads: int = 32
    # RLIMIT_FSIZE: the largest file Deno may write (its module cache).
    max_file_mb: int = 256
    max_open_files: int = 1024
    rss_poll_seconds: float = 0.05

    deno_path: str | None = None  # None: the binary of the `deno` PyPI package
    # The module cache every process shares: npm packages and the CDNs' modules only.
    # Each process has one of its own for the rest, removed with it (sandbox.py). Vals
    # have no read permission, so they can't see either.
    deno_dir: str | None = None  # None: <work_dir>/deno-dir
    work_dir: str = field(default_factory=_default_work_dir)

    # Where this process's sandboxes import vals from, e.g. "127.0.0.1:8000": the
    # platform's module host as this web process itself serves it. Each sandboxed
    # process sends its own token there (DENO_AUTH_TOKENS), which the platform looks up
    # with runtime.import_grant(token) to learn whom the evaluation runs for. What a
    # process fetches from it stays in that process's own module cache.
    module_host: str | None = None
    # The same module host by another name, e.g. "localhost:8000", where no token is
    # sent: Restricted Library Mode's Worker imports other users' vals from here, so
    # it only ever sees public code. The main isolate may not import from it.
    library_host: str | None = None
    module_scheme: str = "http"
    library_scheme: str = "http"
    import_hosts: tuple[str, ...] = DEFAULT_IMPORT_HOSTS

    # Host variables passed to Deno itself (never to vals: the harness deletes them
    # first) so that it trusts the same TLS roots as the host, e.g. behind a proxy
    # with its own CA.
    deno_env_passthrough: tuple[str, ...] = ("DENO_CERT", "DENO_TLS_CA_STORE", "NODE_EXTRA_CA_CERTS")

    # Refuse IPv6 sockets in the sandbox (seccomp). Deno can't deny IPv6 ranges, so
    # this is what keeps vals off fc00::/7, fe80::/10 and the host's own v6 addresses.
    # Turn it off only where a firewall blocks those (see runtime/README.md).
    block_ipv6: bool = True
    # When root: run each process as its own unprivileged uid from this range, with
    # sandbox_gid as its only group.
    sandbox_uid_range: tuple[int, int] = (64200, 64999)
    sandbox_gid: int = 64200
    # Extra addresses or IPv4 ranges to deny, besides the built-in private ranges and
    # this machine's own addresses.
    extra_denied_hosts: tuple[str, ...] = ()
    # Test hook: a command the sandboxed command line is wrapped in (it must end by
    # exec'ing its arguments), e.g. an `unshare -m` that bind-mounts a hosts file.
    command_prefix: tuple[str, ...] = ()

    # --- HTTP vals: warm processes, one val version and owner (one key) each -----------
    # A warm process is retired after this long without a request.
    http_idle_seconds: float = 5.0
    # ... after this many requests (a fresh one then takes over the key) ...
    # (10,000: at 1,000, a busy val's restarts cost about a fifth of its throughput.)
    http_max_requests_per_process: int = 10_000
    # ... or once its resident memory passes this after a request (max_rss_mb still
    # kills it at once, whatever it is doing).
    http_recycle_rss_mb: int = 256
    # Warm processes in all, for every key. When a new key needs one, the least
    # recently used idle process is retired; if none is idle the request waits.
    http_max_processes: int = 8
    # Requests one key's process handles at once. More wait, then get 503.
    http_max_concurrent_per_key: int = 8
    # How long a request waits for a place (the key's cap, or http_max_processes)
    # before 503 with Retry-After.
    http_wait_seconds: float = 2.0
    # Blank processes kept started for HTTP vals, so a key's first request need not
    # wait for Deno to start. They count apart from pool_size and http_max_processes.
    http_spare_processes: int = 1
    # Response bytes a val may stream ahead of what the visitor has taken (of what the
    # ASGI server's send() has returned for: a send() must wait while the visitor's
    # connection is full for this to bound memory; see runtime/README.md, Backpressure).
    http_response_window_bytes: int = 256 * 1024

    def with_changes(self, **changes):
        return replace(self, **changes)

    @property
    def processes_per_tenant(self):
        """How many evaluation processes one tenant (or one group of tenants) may hold."""
        cap = self.max_processes_per_tenant
        return cap if cap is not None else max(1, self.pool_size - 1)

    @property
    def deno_dir_path(self):
        return self.deno_dir or os.path.join(self.work_dir, "deno-dir")


# Django setting name -> PoolConfig field, and -> default Limits field (RUNTIME_TIMEOUT_SECONDS...).
SETTINGS = {f"RUNTIME_{f.name.upper()}": f.name for f in fields(PoolConfig) if f.name != "default_limits"}
LIMIT_SETTINGS = {f"RUNTIME_{f.name.upper()}": f.name for f in fields(Limits)}


def load_config():
    """The pool configuration from Django settings if Django is set up, else the defaults."""
    try:
        from django.conf import settings

        configured = settings.configured
    except ImportError:
        configured = False
    if not configured:
        return PoolConfig()
    changes = {name: getattr(settings, key) for key, name in SETTINGS.items() if hasattr(settings, key)}
    for key in ("import_hosts", "extra_denied_hosts", "command_prefix", "sandbox_uid_range", "deno_env_passthrough"):
        if key in changes:
            changes[key] = tuple(changes[key])
    limits = {name: getattr(settings, key) for key, name in LIMIT_SETTINGS.items() if hasattr(settings, key)}
    return PoolConfig(default_limits=Limits(**limits), **changes)
