"""Drops into the sandbox, then exec's the command after `--`.

The pool runs every Deno process through this script (python -I -S jail.py ... -- deno
run ...). It uses only the standard library and runs before Deno, so everything here
holds for the whole life of the process, whatever the val does:

- resource limits (setrlimit): data segment, threads, file size, CPU time, no core dumps;
- an unprivileged uid and gid, no supplementary groups (only when started as root);
- no_new_privs, and a seccomp filter that refuses IPv6 sockets (--block-ipv6);
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
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
AF_INET6 = 10
EAFNOSUPPORT = 97

# (audit arch, number of the socket syscall) per machine.
SOCKET_SYSCALL = {
    "x86_64": (0xC000003E, 41),
    "aarch64": (0xC00000B7, 198),
}

# Classic BPF opcodes.
LOAD_WORD = 0x20  # BPF_LD | BPF_W | BPF_ABS
JUMP_IF_EQUAL = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
RETURN = 0x06  # BPF_RET | BPF_K

# Offsets into struct seccomp_data.
SYSCALL_NUMBER = 0
ARCH = 4
FIRST_ARGUMENT = 16  # low 32 bits on little-endian machines

LIMITS = {
    "DATA": resource.RLIMIT_DATA,
    "NPROC": resource.RLIMIT_NPROC,
    "FSIZE": resource.RLIMIT_FSIZE,
    "CPU": resource.RLIMIT_CPU,
    "CORE": resource.RLIMIT_CORE,
    "NOFILE": resource.RLIMIT_NOFILE,
}


def can_block_ipv6():
    return os.uname().machine in SOCKET_SYSCALL


def _instruction(code, k, jump_true=0, jump_false=0):
    return struct.pack("HBBI", code, jump_true, jump_false, k)


def ipv6_filter():
    """A seccomp program: socket(AF_INET6, ...) fails with EAFNOSUPPORT, all else is allowed."""
    arch, socket_number = SOCKET_SYSCALL[os.uname().machine]
    return b"".join(
        [
            _instruction(LOAD_WORD, ARCH),
            _instruction(JUMP_IF_EQUAL, arch, 0, 5),  # another ABI: allow
            _instruction(LOAD_WORD, SYSCALL_NUMBER),
            _instruction(JUMP_IF_EQUAL, socket_number, 0, 3),  # not socket(): allow
            _instruction(LOAD_WORD, FIRST_ARGUMENT),
            _instruction(JUMP_IF_EQUAL, AF_INET6, 0, 1),  # not AF_INET6: allow
            _instruction(RETURN, SECCOMP_RET_ERRNO | EAFNOSUPPORT),
            _instruction(RETURN, SECCOMP_RET_ALLOW),
        ]
    )


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
    if options["block_ipv6"]:
        program = ipv6_filter()
        buffer = ctypes.create_string_buffer(program)
        fprog = _SockFprog(len(program) // 8, ctypes.addressof(buffer))
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog))

    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
