"""jail.py's seccomp filter: one syscall ABI only, no SIGTRAP or SIGXCPU sent by the
process itself, and (with --block-ipv6) no IPv6 sockets. Checked by running the BPF
program on made-up syscalls, and on real processes."""

import platform
import signal
import struct
import subprocess
import sys

import pytest

from runtime import jail
from tests.runtime.helpers import assert_still_works, start_engine
from tests.runtime.visitor import Visitor

X86_64 = jail.MACHINES["x86_64"]
AUDIT_ARCH_I386 = 0x40000003
KILL = jail.SECCOMP_RET_KILL_PROCESS
ALLOW = jail.SECCOMP_RET_ALLOW
EPERM = jail.SECCOMP_RET_ERRNO | jail.EPERM
EAFNOSUPPORT = jail.SECCOMP_RET_ERRNO | jail.EAFNOSUPPORT
GETPID = 39
AF_INET = 2


def run_filter(program, number, arch=X86_64.arch, arguments=()):
    """What the kernel would do with this syscall: a classic BPF interpreter for the
    few instructions jail.py uses."""
    data = struct.pack("<IIQ6Q", number, arch, 0, *arguments, *[0] * (6 - len(arguments)))
    counter, accumulator = 0, 0
    while True:
        code, jump_true, jump_false, k = struct.unpack_from("HBBI", program, counter * 8)
        counter += 1
        if code == jail.LOAD_WORD:
            accumulator = struct.unpack_from("<I", data, k)[0]
        elif code == jail.JUMP:
            counter += k
        elif code == jail.JUMP_IF_EQUAL:
            counter += jump_true if accumulator == k else jump_false
        elif code == jail.JUMP_IF_AT_LEAST:
            counter += jump_true if accumulator >= k else jump_false
        elif code == jail.RETURN:
            return k
        else:
            raise AssertionError(f"an instruction the interpreter doesn't know: {code:#x}")


@pytest.fixture(params=[True, False], ids=["ipv6 blocked", "ipv6 allowed"])
def program(request):
    return jail.seccomp_filter(block_ipv6=request.param, machine=X86_64)


def test_ordinary_syscalls_are_allowed(program):
    assert run_filter(program, GETPID) == ALLOW
    assert run_filter(program, X86_64.socket, arguments=(AF_INET, 1, 0)) == ALLOW


def test_a_syscall_of_another_abi_kills_the_process(program):
    # i386's int 0x80 reaches the kernel from 64-bit code, with i386's numbers:
    # 359 is its socket(), 102 its socketcall(), which the x86_64 numbers don't name.
    assert run_filter(program, 359, arch=AUDIT_ARCH_I386, arguments=(jail.AF_INET6, 1, 0)) == KILL
    assert run_filter(program, 102, arch=AUDIT_ARCH_I386) == KILL
    assert run_filter(program, GETPID, arch=AUDIT_ARCH_I386) == KILL


def test_an_x32_syscall_number_kills_the_process(program):
    assert run_filter(program, X86_64.socket | jail.X32_SYSCALL_BIT, arguments=(jail.AF_INET6, 1, 0)) == KILL
    assert run_filter(program, GETPID | jail.X32_SYSCALL_BIT) == KILL


def test_the_process_cannot_send_itself_sigtrap_or_sigxcpu_in_any_way(program):
    pid = 1234
    for trusted in (signal.SIGTRAP, signal.SIGXCPU):
        assert run_filter(program, 62, arguments=(pid, trusted)) == EPERM  # kill
        assert run_filter(program, 200, arguments=(pid, trusted)) == EPERM  # tkill
        assert run_filter(program, 234, arguments=(pid, pid, trusted)) == EPERM  # tgkill
        assert run_filter(program, 129, arguments=(pid, trusted, 0)) == EPERM  # rt_sigqueueinfo
        assert run_filter(program, 297, arguments=(pid, pid, trusted, 0)) == EPERM  # rt_tgsigqueueinfo
        assert run_filter(program, 424, arguments=(3, trusted, 0, 0)) == EPERM  # pidfd_send_signal
    assert run_filter(program, 62, arguments=(pid, signal.SIGTERM)) == ALLOW
    assert run_filter(program, 234, arguments=(pid, pid, signal.SIGABRT)) == ALLOW


def test_ipv6_sockets_are_refused_only_when_asked():
    blocking = jail.seccomp_filter(block_ipv6=True, machine=X86_64)
    open_ = jail.seccomp_filter(block_ipv6=False, machine=X86_64)

    assert run_filter(blocking, X86_64.socket, arguments=(jail.AF_INET6, 1, 0)) == EAFNOSUPPORT
    assert run_filter(open_, X86_64.socket, arguments=(jail.AF_INET6, 1, 0)) == ALLOW


def test_on_aarch64_the_filter_checks_the_arch_too():
    aarch64 = jail.MACHINES["aarch64"]
    program = jail.seccomp_filter(block_ipv6=True, machine=aarch64)

    assert run_filter(program, GETPID, arch=aarch64.arch) == ALLOW
    assert run_filter(program, aarch64.socket, arch=0x40000028) == KILL  # 32-bit ARM
    assert run_filter(program, aarch64.socket, arch=aarch64.arch, arguments=(jail.AF_INET6,)) == EAFNOSUPPORT


# --- Real processes ---------------------------------------------------------------

# socket(AF_INET6, SOCK_STREAM, 0) through i386's int 0x80, run from 64-bit Python:
# push rbx; mov eax, 359; mov ebx, 10; mov ecx, 1; xor edx, edx; int 0x80; pop rbx; ret
I386_IPV6_SOCKET = """
import ctypes, mmap
memory = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
memory.write(bytes.fromhex("53b867010000bb0a000000b90100000031d2cd805bc3"))
print(ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(memory)))())
"""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86_64 machine code")
def test_an_i386_syscall_cannot_get_round_the_ipv6_block():
    command = [sys.executable, "-I", "-S", str(jail.__file__), "--block-ipv6", "--", sys.executable, "-c",
               I386_IPV6_SOCKET]

    finished = subprocess.run(command, capture_output=True, text=True, timeout=30)

    # Before the arch check, this printed a file descriptor: an IPv6 socket.
    assert finished.returncode == -signal.SIGSYS, finished


@pytest.mark.skipif(not jail.can_filter(), reason="no seccomp filter for this machine type")
async def test_deno_runs_normally_under_the_filter_and_every_process_has_it():
    engine = start_engine(pool_size=1, block_ipv6=False)
    try:
        result = await engine.evaluate(
            """export default async () => {
                const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode("x"));
                const fromWorker = await new Promise((resolve) => {
                    const worker = new Worker("data:application/javascript,postMessage(6 * 7)", { type: "module" });
                    worker.onmessage = (event) => { worker.terminate(); resolve(event.data) };
                });
                await new Promise((resolve) => setTimeout(resolve, 10));
                return [new Uint8Array(digest).length, fromWorker];
            }"""
        )
        visitor = Visitor()
        outcome = await engine.serve_http(
            ("val", "seccomp", 1, "alice"), code="export default () => new Response('up')",
            scope=visitor.scope, receive=visitor.receive, send=visitor.send,
        )
        with open(f"/proc/{outcome.pid}/status") as status:
            seccomp_mode = next(line.split()[1] for line in status if line.startswith("Seccomp:"))
        await assert_still_works(engine)
    finally:
        engine.shutdown()

    assert result.value == [32, 42]
    assert visitor.body == b"up"
    assert seccomp_mode == "2"  # SECCOMP_MODE_FILTER, even with IPv6 allowed
