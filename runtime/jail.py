"""Drops into the sandbox, then exec's the command after `--`.

The pool runs every Deno process through this script (python -I -S jail.py ... -- deno
run ...). It uses only the standard library and runs before Deno, so everything here
holds for the whole life of the process, whatever the val does:

- resource limits (setrlimit): data segment, threads, file size, CPU time, no core dumps;
- an unprivileged uid and gid, no supplementary groups (only when started as root);
- no_new_privs, and a seccomp filter (seccomp_filter()): no other syscall ABI, no
  SIGTRAP or SIGXCPU sent by the process itself, no IPv6 sockets (--block-ipv6);
- death with the host: the process gets SIGKILL if its parent dies.

It is a separate program, not a preexec_fn, because the host is multi-threaded and
Python does not promise that code run between fork and exec is safe there.
"""

import ctypes
import os
import resource
import signal
import struct
import sys

PR_SET_PDEATHSIG = 1
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
AF_INET6 = 10
EPERM = 1
EAFNOSUPPORT = 97
# On x86_64, a syscall number with this bit set is the x32 ABI's: a second table of
# syscalls a filter that only knows the x86_64 numbers would let through.
X32_SYSCALL_BIT = 0x40000000

# The signals the host reads as the kernel's verdict: SIGTRAP is V8's fatal-error trap
# (out of memory), SIGXCPU is RLIMIT_CPU. Deno.kill(Deno.pid, ...) needs no permission,
# so without this a val could send either to itself and forge its kill reason.
KERNEL_ONLY_SIGNALS = (signal.SIGTRAP, signal.SIGXCPU)


class Machine:
    """What the filter needs to know about one machine type: its audit arch and syscall numbers."""

    def __init__(self, arch, *, socket, kill, tkill, tgkill, rt_sigqueueinfo, rt_tgsigqueueinfo,
                 pidfd_send_signal, x32_bit=False):
        self.arch = arch
        self.socket = socket
        # Each way to send a signal, with the index of the argument holding the signal.
        self.signal_syscalls = [(kill, 1), (tkill, 1), (rt_sigqueueinfo, 1), (pidfd_send_signal, 1),
                                (tgkill, 2), (rt_tgsigqueueinfo, 2)]
        self.x32_bit = x32_bit


MACHINES = {
    "x86_64": Machine(0xC000003E, socket=41, kill=62, tkill=200, tgkill=234, rt_sigqueueinfo=129,
                      rt_tgsigqueueinfo=297, pidfd_send_signal=424, x32_bit=True),
    "aarch64": Machine(0xC00000B7, socket=198, kill=129, tkill=130, tgkill=131, rt_sigqueueinfo=138,
                       rt_tgsigqueueinfo=240, pidfd_send_signal=424),
}

# Classic BPF opcodes.
LOAD_WORD = 0x20  # BPF_LD | BPF_W | BPF_ABS
JUMP = 0x05  # BPF_JMP | BPF_JA
JUMP_IF_EQUAL = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
JUMP_IF_AT_LEAST = 0x35  # BPF_JMP | BPF_JGE | BPF_K (unsigned)
RETURN = 0x06  # BPF_RET | BPF_K

# Offsets into struct seccomp_data.
SYSCALL_NUMBER = 0
ARCH = 4


def argument(index):
    """The offset of a syscall argument's low 32 bits (little-endian machines)."""
    return 16 + 8 * index


LIMITS = {
    "DATA": resource.RLIMIT_DATA,
    "NPROC": resource.RLIMIT_NPROC,
    "FSIZE": resource.RLIMIT_FSIZE,
    "CPU": resource.RLIMIT_CPU,
    "CORE": resource.RLIMIT_CORE,
    "NOFILE": resource.RLIMIT_NOFILE,
}


def can_filter():
    """Whether jail.py knows this machine's syscalls, so installs its seccomp filter."""
    return os.uname().machine in MACHINES


def seccomp_filter(block_ipv6, machine=None):
    """The seccomp program jail.py installs:

    - a syscall of another ABI (i386's int 0x80, x32's numbers) kills the process: the
      rest of the filter only knows this ABI's numbers;
    - sending SIGTRAP or SIGXCPU fails with EPERM (see KERNEL_ONLY_SIGNALS);
    - with block_ipv6, socket(AF_INET6, ...) fails with EAFNOSUPPORT;
    - everything else is allowed.
    """
    machine = machine or MACHINES[os.uname().machine]
    program = [
        ("load", ARCH),
        ("if", machine.arch, None, "kill"),
        ("load", SYSCALL_NUMBER),
    ]
    if machine.x32_bit:
        program.append(("if at least", X32_SYSCALL_BIT, "kill", None))
    if block_ipv6:
        program.append(("if", machine.socket, "socket", None))
    for number, index in machine.signal_syscalls:
        program.append(("if", number, f"signal in argument {index}", None))
    program += [
        ("return", SECCOMP_RET_ALLOW),
        "signal in argument 1",
        ("load", argument(1)),
        ("jump", "signal"),
        "signal in argument 2",
        ("load", argument(2)),
        "signal",
        *[("if", int(number), "refuse", None) for number in KERNEL_ONLY_SIGNALS],
        ("return", SECCOMP_RET_ALLOW),
        "refuse",
        ("return", SECCOMP_RET_ERRNO | EPERM),
        "socket",
        ("load", argument(0)),
        ("if", AF_INET6, None, "allow"),
        ("return", SECCOMP_RET_ERRNO | EAFNOSUPPORT),
        "allow",
        ("return", SECCOMP_RET_ALLOW),
        "kill",
        ("return", SECCOMP_RET_KILL_PROCESS),
    ]
    return assemble(program)


def assemble(program):
    """Classic BPF from steps and labels (strings). A jump target of None is the next step."""
    steps = [step for step in program if not isinstance(step, str)]
    labels, index = {}, 0
    for step in program:
        if isinstance(step, str):
            labels[step] = index
        else:
            index += 1

    def offset(here, label):
        return 0 if label is None else labels[label] - here - 1

    code = []
    for here, (kind, value, *targets) in enumerate(steps):
        if kind == "load":
            code.append(_instruction(LOAD_WORD, value))
        elif kind == "return":
            code.append(_instruction(RETURN, value))
        elif kind == "jump":
            code.append(_instruction(JUMP, offset(here, value)))
        else:
            opcode = JUMP_IF_EQUAL if kind == "if" else JUMP_IF_AT_LEAST
            code.append(_instruction(opcode, value, offset(here, targets[0]), offset(here, targets[1])))
    return b"".join(code)


def _instruction(code, k, jump_true=0, jump_false=0):
    return struct.pack("HBBI", code, jump_true, jump_false, k)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _prctl():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    libc.prctl.restype = ctypes.c_int

    def prctl(option, arg2=0, arg3=0):
        if libc.prctl(option, arg2, arg3, 0, 0) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"prctl({option}) failed: {os.strerror(error)}")

    return prctl


def _set_limit(name, value):
    limit = LIMITS[name]
    _, hard = resource.getrlimit(limit)
    if os.geteuid() != 0 and hard != resource.RLIM_INFINITY:
        value = min(value, hard)  # only root may raise a hard limit
    resource.setrlimit(limit, (value, value))


def parse_arguments(argv):
    """Options, then `--`, then the command. (Not argparse: it would double our start-up.)"""
    options = {"limits": [], "uid": None, "gid": None, "umask": None, "block_ipv6": False}
    for index, argument in enumerate(argv):
        if argument == "--":
            command = argv[index + 1 :]
            if not command:
                break
            return options, command
        name, _, value = argument.partition("=")
        if name == "--limit":
            limit, _, number = value.partition("=")
            options["limits"].append((limit, int(number)))
        elif name in ("--uid", "--gid"):
            options[name[2:]] = int(value)
        elif name == "--umask":
            options["umask"] = int(value, 8)
        elif name == "--block-ipv6":
            options["block_ipv6"] = True
        else:
            sys.exit(f"jail.py: unknown option {argument}")
    sys.exit("usage: jail.py [--limit=NAME=VALUE] [--uid=N --gid=N] [--umask=OOO] [--block-ipv6] -- command ...")


def main(argv):
    options, command = parse_arguments(argv)
    for name, value in options["limits"]:
        _set_limit(name, value)
    if options["umask"] is not None:
        os.umask(options["umask"])
    if options["uid"] is not None:
        os.setgroups([])
        os.setgid(options["gid"] if options["gid"] is not None else options["uid"])
        os.setuid(options["uid"])

    prctl = _prctl()
    # After setuid: changing credentials clears the parent-death signal.
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    if can_filter():
        program = seccomp_filter(options["block_ipv6"])
        buffer = ctypes.create_string_buffer(program)
        fprog = _SockFprog(len(program) // 8, ctypes.addressof(buffer))
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog))

    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
