"""Launcher that confines one sandboxed program, then becomes it (exec).

Run as `python -I -S confine.py --cpu S --data B ... -- PROGRAM ARGS...` by `sandbox.py`, inside
`unshare` when namespaces are available. It deliberately imports nothing from lingcoder (it must
start in milliseconds with `-S`) and does, in order: set the resource limits (CPU seconds,
writable memory, address space, file size, processes, open files, no core files); drop root to
the given uid/gid; fork, staying behind as the program's parent (so that a program that kills its
parent kills this launcher, not the harness, and so that inside a PID namespace the program is not
PID 1, which would change how signals such as abort() behave); exec the program in the child.

It is our own code because the stdlib has no portable "spawn with rlimits and uid" call that is
safe from a multi-threaded harness (`subprocess`'s preexec_fn is documented as unsafe with threads).
"""

import os
import resource
import signal
import sys

_LIMITS = {
    "--cpu": resource.RLIMIT_CPU,
    "--data": resource.RLIMIT_DATA,
    "--as": resource.RLIMIT_AS,
    "--fsize": resource.RLIMIT_FSIZE,
    "--nproc": resource.RLIMIT_NPROC,
    "--nofile": resource.RLIMIT_NOFILE,
}


def main(argv):
    sep = argv.index("--")
    options = dict(zip(argv[:sep:2], argv[1:sep:2], strict=True))
    command = argv[sep + 1 :]
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for flag, which in _LIMITS.items():
        if flag in options:
            soft = int(options[flag])
            # CPU: SIGXCPU at the soft limit, SIGKILL one second later if it is ignored.
            hard = soft + 1 if which == resource.RLIMIT_CPU else soft
            resource.setrlimit(which, (soft, hard))
    if "--uid" in options:
        gid = int(options["--gid"])
        os.setgroups([])
        os.setgid(gid)
        os.setuid(int(options["--uid"]))
    os.umask(0o022)
    child = os.fork()
    if child == 0:
        os.execv(command[0], command)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _, status = os.waitpid(child, 0)
    if os.WIFSIGNALED(status):
        # As PID 1 of a namespace we cannot re-raise the signal on ourselves: use the shell's 128+N.
        os._exit(128 + os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status))


if __name__ == "__main__":
    main(sys.argv[1:])
