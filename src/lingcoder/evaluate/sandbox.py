"""The sandbox: run one untrusted command, confined, and report what happened.

Each program runs in its own subprocess and session (process group), in a fresh working directory,
with a scrubbed environment and resource limits (CPU seconds, writable memory, file size, process
count, open files, no core files). The confinement is a chain of util-linux tools:
[`nsenter` (shared mount namespace)] -> `unshare` (namespaces) -> a root `sh` guard (changes into
the working directory, forks the rest, waits) -> `prlimit` (limits) -> `setpriv` (drop root) ->
the program. We chain these small binaries rather than a Python launcher because each starts in
about a millisecond, and `subprocess`'s preexec_fn is documented as unsafe in a multi-threaded
harness like ours.

Where the kernel allows, each program gets new network and PID namespaces (no network; when the
program ends every process it started dies with the namespace) and the world-writable directories
(/tmp, /var/tmp, /dev/shm, /run/lock) are hidden under tmpfs: as root, by entering one long-lived
mount namespace whose masks are empty and read-only (creating and tearing down a mount namespace
per program costs more than running a small Python program); otherwise, by a fresh mount namespace
per program with private writable masks and a private /proc. When the harness runs as root, each
concurrent program runs as its own unprivileged uid (`UID_BASE + slot`), so it can neither change
the host's files nor signal the harness, and the process limit counts only its own processes. A
wall-clock timeout kills the whole group; output is kept up to a cap (head and tail). The harness
never runs the program in its own process.

`Sandbox.isolation()` says which of these were in force; summary.json records it.
"""

from __future__ import annotations

import atexit
import dataclasses
import fcntl
import functools
import os
import queue
import secrets
import selectors
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from lingcoder.errors import LingcoderError

# The first process in the namespaces is an sh (root when the harness is): it mounts the tmpfs
# masks when it has its own mount namespace, changes into the working directory ($0), then forks
# the confinement chain (prlimit -> setpriv -> program) and waits, so the program is never PID 1 of
# its namespace (where abort() and other self-signals are ignored) and cannot signal its parent. A
# program killed by signal N is reported as status 128+N.
_GUARD = 'cd -- "$0" || exit 125; umask 022; "$@"; exit $?'
# World-writable directories a program could leave files in; each is hidden under a tmpfs (all
# mounted by one `mount -a -T FSTAB`, the fastest way found).
TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
UID_BASE = 61000
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_MARKER_VAR = "LINGCODER_SANDBOX_ID"


@dataclass(frozen=True)
class Limits:
    """Resource limits for one program (per process; `processes` per sandbox uid)."""

    cpu_seconds: int = 20
    memory_mb: int = 2048  # RLIMIT_DATA: writable private memory, so reserved-only VM (JVM, V8) is fine
    address_space_mb: int | None = None  # RLIMIT_AS, off by default for the same reason
    file_size_mb: int = 64
    processes: int = 128
    open_files: int = 256
    output_bytes: int = 32_768  # kept per stream: half from the head, half from the tail


@dataclass
class Execution:
    """What one confined command did. `returncode` < 0 means killed by that signal.

    Statuses 129..(128+NSIG) are read as deaths by signal (the shell convention), so
    a program that itself exits with such a status is reported as killed by that signal.
    (sh reports a death by signal that way, and it is how we learn of it through the namespace.)
    """

    returncode: int
    seconds: float
    timed_out: bool
    stdout: str
    stderr: str

    @property
    def signal_name(self) -> str | None:
        if self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"


@dataclass(frozen=True)
class Isolation:
    """Which confinement is in force; `describe()` is what summary.json records."""

    namespace_prefix: tuple[str, ...] = ()
    mask_command: tuple[str, ...] = ()  # run as root in each program's own mount namespace to mask TMP_DIRS
    holder_command: tuple[str, ...] = ()  # starts the long-lived holder of a shared, masked mount namespace
    nsenter: str = "nsenter"
    workdir_base: str | None = None  # programs' working directories go here (outside TMP_DIRS)
    drop_to_uid: bool = False
    prlimit: str = "prlimit"
    setpriv: str = "setpriv"
    shell: str = "/bin/sh"
    notes: tuple[str, ...] = field(default=())

    def describe(self) -> dict:
        return {
            "network": "new network namespace (no network)"
            if self.namespace_prefix
            else "none: programs can reach the network",
            "processes": "new PID namespace, all its processes killed at the end"
            if self.namespace_prefix
            else "own process group, killed at the end (plus a sweep for escaped descendants)",
            "user": f"unprivileged uid {UID_BASE}+slot (harness runs as root)"
            if self.drop_to_uid
            else f"the invoking user (uid {os.geteuid()})",
            "filesystem": (
                f"own mount namespace: private /proc, fresh tmpfs over {', '.join(TMP_DIRS)}; "
                if self.mask_command
                else f"mount namespace with empty read-only tmpfs over {', '.join(TMP_DIRS)}, host /proc; "
                if self.holder_command
                else "shared with the host; "
            )
            + (
                "host files writable only where that uid may write"
                if self.drop_to_uid
                else "host files writable wherever the invoking user may write"
            ),
            "limits": "rlimits: cpu, data, fsize, nproc, nofile, core=0; wall-clock timeout; output cap",
            "notes": list(self.notes),
        }


def detect_isolation(use_namespaces: bool = True) -> Isolation:
    """Probe what this machine allows (cached): `unshare` namespaces, dropping root."""
    return _detect(use_namespaces, os.geteuid())


@functools.cache
def _detect(use_namespaces: bool, euid: int) -> Isolation:
    notes = []
    unshare, true = shutil.which("unshare"), shutil.which("true")
    prlimit, setpriv, shell = shutil.which("prlimit"), shutil.which("setpriv"), shutil.which("sh")
    if not prlimit or not shell or (euid == 0 and not setpriv):
        raise LingcoderError(
            "the sandbox needs util-linux's `prlimit` (and `setpriv` when run as root) "
            "and `sh` on PATH: install util-linux"
        )
    if not use_namespaces:
        notes.append("namespaces disabled by the caller")
    elif not unshare or not true:
        notes.append("no `unshare` binary: no network or PID namespace")
    else:
        user = ["--user", "--map-root-user"] if euid != 0 else []
        base = [*user, "--net", "--pid", "--fork", "--kill-child"]
        mount, nsenter, sleep = shutil.which("mount"), shutil.which("nsenter"), shutil.which("sleep")
        workdir, problem = _workdir_base(euid) if mount else (None, "no `mount` binary")
        if problem:
            notes.append(f"no private /tmp: {problem}")
        attempts: list[dict] = []
        if workdir and euid == 0 and nsenter and sleep:
            # One long-lived mount namespace for every program: entering it is far cheaper than
            # creating and tearing down one per program (teardown waits for an RCU grace period).
            # Its tmpfs masks are read-only, so programs cannot leave anything there for each other.
            fstab = _write_fstab(Path(workdir) / "shared-tmpfs.fstab", "ro,mode=755,size=1m,nosuid,nodev")
            holder = (
                setpriv,
                "--pdeathsig",
                "KILL",
                unshare,
                "--mount",
                "--propagation",
                "private",
                shell,
                "-c",
                f"{mount} -a -T {fstab} || exit 125; echo ready; exec {sleep} infinity",
            )
            attempts.append({"flags": base, "holder": holder, "workdir": workdir, "nsenter": nsenter})
        if workdir:
            fstab = _write_fstab(Path(workdir) / "tmpfs.fstab", "mode=1777,size=256m,nosuid,nodev")
            flags = [*base, "--mount", "--propagation", "private", "--mount-proc"]
            attempts.append({"flags": flags, "mask": (mount, "-a", "-T", str(fstab)), "workdir": workdir})
        attempts.append({"flags": base})
        for attempt in attempts:
            candidate = Isolation(
                namespace_prefix=(unshare, *attempt["flags"]),
                mask_command=attempt.get("mask", ()),
                holder_command=attempt.get("holder", ()),
                nsenter=attempt.get("nsenter", ""),
                workdir_base=attempt.get("workdir"),
                drop_to_uid=euid == 0,
                prlimit=prlimit,
                setpriv=setpriv or "",
                shell=shell,
            )
            try:
                probe = subprocess.run(
                    _prefix(candidate) + [shell, "-c", _guard(candidate), "/", true],
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
                error = (
                    (probe.stderr.strip()[:200] or f"status {probe.returncode}") if probe.returncode else ""
                )
            except (LingcoderError, OSError) as exc:
                error = str(exc)
            if not error:
                return dataclasses.replace(candidate, notes=tuple(notes))
            notes.append(f"`unshare {' '.join(attempt['flags'])}` refused: {error}")
    return Isolation(
        drop_to_uid=euid == 0,
        prlimit=prlimit,
        setpriv=setpriv or "",
        shell=shell,
        notes=tuple(notes),
    )


class _UidSlots:
    """Hands out sandbox uid slots, distinct between concurrent programs and between processes.

    A process claims a slot for its lifetime by holding an exclusive flock on
    /run/lingcoder-sandbox/uid-<slot>.lock (released by the kernel when the process ends), so two
    harnesses on one machine never run programs under the same uid.
    """

    MAX_SLOTS = 4096

    def __init__(self) -> None:
        self._free: list[int] = []
        self._held: dict[int, int] = {}  # slot -> fd of its lock file
        self._lock = threading.Lock()

    def acquire(self) -> int:
        with self._lock:
            if self._free:
                return self._free.pop()
            directory = Path("/run/lingcoder-sandbox")
            directory.mkdir(mode=0o711, parents=True, exist_ok=True)
            for slot in range(self.MAX_SLOTS):
                if slot in self._held:
                    continue
                fd = os.open(directory / f"uid-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                self._held[slot] = fd
                return slot
            raise LingcoderError(f"all {self.MAX_SLOTS} sandbox uid slots are taken by other processes")

    def release(self, slot: int) -> None:
        with self._lock:
            self._free.append(slot)


_SLOTS = _UidSlots()


class Sandbox:
    """Runs commands confined; thread-safe, one instance can serve many workers."""

    def __init__(self, use_namespaces: bool = True, isolation: Isolation | None = None) -> None:
        self._isolation = isolation or detect_isolation(use_namespaces)

    def isolation(self) -> Isolation:
        return self._isolation

    def workdir_base(self) -> str | None:
        """Where programs' working directories go (None: the system's temporary directory)."""
        return self._isolation.workdir_base

    def execute(
        self,
        argv: list[str],
        workdir: Path,
        *,
        timeout: float,
        limits: Limits = Limits(),
        stdin: bytes = b"",
        env: dict[str, str] | None = None,
    ) -> Execution:
        """Run `argv` in `workdir` (which the program may own and change) and wait for it."""
        iso = self._isolation
        slot = _SLOTS.acquire() if iso.drop_to_uid else None
        try:
            # The guard's $0 is the working directory: it changes into it inside the namespaces.
            command = [*_prefix(iso), iso.shell, "-c", _guard(iso), str(workdir)]
            command += [iso.prlimit, *_limit_options(limits, iso), "--"]
            if slot is not None:
                uid = UID_BASE + slot
                _chown_tree(workdir, uid)
                command += [iso.setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
            command += argv
            marker = secrets.token_hex(8)
            full_env = {
                "PATH": SAFE_PATH,
                "HOME": str(workdir),
                "TMPDIR": str(workdir),
                "LANG": "C.UTF-8",
                "LC_ALL": "C.UTF-8",
                _MARKER_VAR: marker,
                **(env or {}),
            }
            sweep = marker if not iso.namespace_prefix else None
            return _run(command, workdir, full_env, stdin, timeout, limits.output_bytes, sweep)
        finally:
            if slot is not None:
                _SLOTS.release(slot)


def _write_fstab(path: Path, options: str) -> Path:
    path.write_text("".join(f"tmpfs {d} tmpfs {options} 0 0\n" for d in TMP_DIRS if Path(d).is_dir()))
    return path


class _MountHolder:
    """The long-lived process whose mount namespace programs enter: started on first use, restarted
    if it died, killed with this process (PR_SET_PDEATHSIG, and at exit).

    It is spawned from a dedicated thread that lives exactly as long as it does, because the
    parent-death signal fires when the spawning *thread* ends, and worker threads come and go.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def namespace(self, command: tuple[str, ...]) -> str:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start(command)
            return f"/proc/{self._proc.pid}/ns/mnt"

    @staticmethod
    def _start(command: tuple[str, ...]) -> subprocess.Popen:
        started: queue.Queue = queue.Queue()

        def spawn() -> None:
            try:
                proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                )
            except OSError as exc:
                started.put(exc)
                return
            started.put(proc)
            proc.wait()

        threading.Thread(target=spawn, name="lingcoder-mount-holder", daemon=True).start()
        proc = started.get()
        if isinstance(proc, OSError) or proc.stdout.readline() != b"ready\n":
            detail = str(proc) if isinstance(proc, OSError) else proc.stderr.read1().decode(errors="replace")
            if not isinstance(proc, OSError):
                proc.kill()
            raise LingcoderError(f"cannot set up the sandbox mount namespace: {detail[:200]}")
        atexit.register(proc.kill)
        return proc


_HOLDER = _MountHolder()


def _prefix(iso: Isolation) -> list[str]:
    """The namespace part of a command line (empty without namespaces)."""
    if iso.holder_command:
        where = _HOLDER.namespace(iso.holder_command)
        return [iso.nsenter, f"--mount={where}", *iso.namespace_prefix]
    return list(iso.namespace_prefix)


def _guard(iso: Isolation) -> str:
    return " ".join([*iso.mask_command, "|| exit 125;"]) + _GUARD if iso.mask_command else _GUARD


def _workdir_base(euid: int) -> tuple[str | None, str]:
    """(a directory outside TMP_DIRS for working directories, or None, and why not).

    $LINGCODER_SANDBOX_DIR if set, else /run/lingcoder-sandbox for root, ~/.cache/lingcoder/sandbox
    for other users.
    """
    default = Path("/run/lingcoder-sandbox") if euid == 0 else Path.home() / ".cache/lingcoder/sandbox"
    base = Path(os.environ.get("LINGCODER_SANDBOX_DIR") or default).resolve()
    if any(base == Path(d) or Path(d) in base.parents for d in TMP_DIRS):
        return None, f"{base} lies in a directory the mount namespace masks; set LINGCODER_SANDBOX_DIR"
    try:
        base.mkdir(parents=True, exist_ok=True)
        if euid == 0:
            base.chmod(0o711)
    except OSError as exc:
        return None, f"cannot create {base} ({exc}); set LINGCODER_SANDBOX_DIR"
    return str(base), ""


def _limit_options(limits: Limits, iso: Isolation) -> list[str]:
    mb = 1 << 20
    cpu = int(limits.cpu_seconds)
    # CPU: SIGXCPU at the soft limit, SIGKILL a second later if the program ignores it.
    options = [
        f"--cpu={cpu}:{cpu + 1}",
        f"--data={limits.memory_mb * mb}",
        f"--fsize={limits.file_size_mb * mb}",
        f"--nofile={limits.open_files}",
        "--core=0",
    ]
    if limits.address_space_mb:
        options.append(f"--as={limits.address_space_mb * mb}")
    # RLIMIT_NPROC counts every process of the uid: exact with a per-slot uid, else on top of ours.
    already = 0 if iso.drop_to_uid else _count_processes_of(os.getuid())
    options.append(f"--nproc={limits.processes + already}")
    return options


def _run(command, workdir, env, stdin, timeout, cap, sweep_marker) -> Execution:
    start = time.monotonic()
    proc = subprocess.Popen(
        command,
        cwd=workdir,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        close_fds=True,
    )
    try:
        proc.stdin.write(stdin)
    except BrokenPipeError:
        pass
    finally:
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
    out, err = _CappedBuffer(cap), _CappedBuffer(cap)
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ, out)
    selector.register(proc.stderr, selectors.EVENT_READ, err)
    deadline = start + timeout
    timed_out = False
    while selector.get_map():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        for key, _ in selector.select(min(remaining, 0.5)):
            chunk = os.read(key.fd, 65536)
            if chunk:
                key.data.add(chunk)
            else:
                selector.unregister(key.fileobj)
        if proc.poll() is not None and selector.get_map():
            # The program is gone; drain what is buffered but never wait on escaped holders of the pipe.
            deadline = min(deadline, time.monotonic() + 0.2)
    if timed_out and proc.poll() is not None:
        timed_out = False  # it finished; only an escaped descendant held the pipes open
    _kill_group(proc.pid)
    returncode = proc.wait()
    if 128 < returncode < 128 + signal.NSIG:  # sh reports a child killed by signal N as 128+N
        returncode = 128 - returncode
    seconds = time.monotonic() - start
    if sweep_marker:
        _kill_marked(sweep_marker)
    selector.close()
    proc.stdout.close()
    proc.stderr.close()
    return Execution(
        returncode=returncode,
        seconds=seconds,
        timed_out=timed_out,
        stdout=out.text(),
        stderr=err.text(),
    )


class _CappedBuffer:
    """Keeps the first and last `cap/2` bytes of a stream and counts the rest."""

    def __init__(self, cap: int) -> None:
        self.half = max(cap // 2, 1)
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        room = self.half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        self.tail += chunk
        if len(self.tail) > self.half:
            self.dropped += len(self.tail) - self.half
            del self.tail[: len(self.tail) - self.half]

    def text(self) -> str:
        middle = f"\n[... {self.dropped} bytes dropped ...]\n".encode() if self.dropped else b""
        return bytes(self.head + middle + self.tail).decode("utf-8", errors="replace")


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_marked(marker: str) -> None:
    """Kill processes that escaped the group (setsid) but still carry this run's env marker.

    Only needed without a PID namespace; with one, the namespace's end already killed them.
    """
    needle = f"{_MARKER_VAR}={marker}".encode()
    for _ in range(3):
        found = False
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if needle in (entry / "environ").read_bytes():
                    os.kill(int(entry.name), signal.SIGKILL)
                    found = True
            except (OSError, ValueError):
                continue
        if not found:
            return


def _count_processes_of(uid: int) -> int:
    count = 0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                count += 1
        except OSError:
            continue
    return count


def _chown_tree(root: Path, uid: int) -> None:
    os.chown(root, uid, uid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)
