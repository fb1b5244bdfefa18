"""Adversarial programs: each must end failed / timeout / error, with the harness and host intact.

Every attack is written so that, were it not stopped, the program would pass its tests. The host
is checked afterwards: a canary file in an ordinary 0755 directory, a listening socket that must
see no connection, no process left behind, and a normal program that still passes.
"""

import os
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lingcoder.evaluate.execution import default_sandbox, run_program
from lingcoder.evaluate.languages import get_language, toolchain
from lingcoder.evaluate.sandbox import UID_BASE, Limits, Sandbox

NOT_PASSED = {"failed", "timeout", "error"}
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(
    not ROOT, reason="only as root do programs run as another uid, unable to touch the invoking user's files"
)


class Host:
    """What the attacks aim at, and the checks that they missed."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="lingcoder-canary-", dir="/tmp"))
        self.dir.chmod(0o755)
        self.canary = self.dir / "canary.txt"
        self.canary.write_text("intact")
        self.canary.chmod(0o644)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]

    def connections(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.listener.accept()
            except (TimeoutError, OSError):
                return count
            conn.close()
            count += 1

    def assert_untouched(self) -> None:
        assert self.canary.read_text() == "intact"
        assert sorted(p.name for p in self.dir.iterdir()) == ["canary.txt"]
        assert self.connections() == 0


@pytest.fixture()
def host():
    h = Host()
    yield h
    h.listener.close()
    for p in h.dir.iterdir():
        p.unlink()
    h.dir.rmdir()


def python_attacks(host: Host) -> dict[str, tuple[str, str]]:
    good = "def f(x):\n    return x * 2\n"
    bad = "def f(x):\n    return 100\n"
    tests = "assert f(2) == 4\n"
    abs_tests = "assert abs(f(2) - 4) < 1e-9\n"
    check_tests = "def check(candidate):\n    assert candidate(2) == 4\n\ncheck(f)\n"
    return {
        "infinite loop": ("while True:\n    pass\n" + good, tests),
        "fork bomb": ("import os\nwhile True:\n    os.fork()\n" + good, tests),
        "memory bomb": ("x = bytearray(64 * 2**30)\n" + good, tests),
        "memory bomb, growing": ("chunks = []\nwhile True:\n    chunks.append(b'x' * 2**26)\n" + good, tests),
        "write outside the working directory": (
            f"open({str(host.dir / 'evil.txt')!r}, 'w').write('x')\n" + good,
            tests,
        ),
        "overwrite a file": (f"open({str(host.canary)!r}, 'w').write('pwned')\n" + good, tests),
        "delete files": (f"import os\nos.remove({str(host.canary)!r})\n" + good, tests),
        "delete a tree": (f"import shutil\nshutil.rmtree({str(host.dir)!r})\n" + good, tests),
        "open a socket": (
            "import socket\nsocket.create_connection(('127.0.0.1', "
            f"{host.port}), timeout=1).sendall(b'pwned')\n" + good,
            tests,
        ),
        # Kill the parent (and all we can), then exit 0 hoping a broken harness records a pass.
        "kill the parent": (
            "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
            "os.kill(-1, signal.SIGKILL)\nos._exit(0)\n" + bad,
            tests,
        ),
        "kill the harness": (f"import os, signal\nos.kill({os.getpid()}, signal.SIGKILL)\n" + good, tests),
        "sys.exit(0) before the tests": ("import sys\nsys.exit(0)\n" + bad, tests),
        "os._exit(0) before the tests": ("import os\nos._exit(0)\n" + bad, tests),
        "os._exit(0) inside the function": ("def f(x):\n    import os\n    os._exit(0)\n", tests),
        "exit() inside the function": ("def f(x):\n    exit(0)\n", tests),
        "override builtins module": ("import builtins\nbuiltins.abs = lambda x: 0\n" + bad, abs_tests),
        "shadow a builtin": ("def abs(x):\n    return 0\n" + bad, abs_tests),
        "override __builtins__": ("__builtins__['abs'] = lambda x: 0\n" + bad, abs_tests),
        "override the test function": ("def check(candidate):\n    pass\n" + bad, check_tests),
        "huge output": ("while True:\n    print('x' * 100000)\n" + good, tests),
        "huge file": (
            "with open('big', 'wb') as fh:\n    while True:\n        fh.write(b'x' * 2**20)\n" + good,
            tests,
        ),
    }


def cpp_attacks(host: Host) -> dict[str, tuple[str, str]]:
    head = (
        "#include <cassert>\n#include <cstdio>\n#include <cstdlib>\n#include <cstring>\n#include <csignal>\n"
        "#include <unistd.h>\n#include <sys/socket.h>\n#include <netinet/in.h>\n#include <arpa/inet.h>\n"
        "#include <vector>\n"
    )
    tests = "int main() {\n    auto candidate = f;\n    assert(candidate(2) == 4);\n}\n"

    def f(body: str) -> str:
        return head + "long f(long x) {\n" + body + "\n    return x * 2;\n}\n"

    return {
        "infinite loop": (f("    volatile int spin = 1;\n    while (spin) {}"), tests),
        "fork bomb": (f("    while (true) fork();"), tests),
        "memory bomb": (
            f(
                "    std::vector<char*> v;\n    while (true) {\n        char* p = (char*)malloc(1 << 26);\n"
                "        if (!p) abort();\n        memset(p, 1, 1 << 26);\n        v.push_back(p);\n    }"
            ),
            tests,
        ),
        "write outside the working directory": (
            f(f'    FILE* fh = fopen("{host.dir / "evil.txt"}", "w");\n    fputs("x", fh);\n    fclose(fh);'),
            tests,
        ),
        "overwrite a file": (
            f(f'    FILE* fh = fopen("{host.canary}", "w");\n    fputs("pwned", fh);\n    fclose(fh);'),
            tests,
        ),
        "delete files": (f(f'    if (remove("{host.canary}") != 0) abort();'), tests),
        "open a socket": (
            f(
                "    int s = socket(AF_INET, SOCK_STREAM, 0);\n    sockaddr_in a{};\n"
                f"    a.sin_family = AF_INET;\n    a.sin_port = htons({host.port});\n"
                '    a.sin_addr.s_addr = inet_addr("127.0.0.1");\n'
                "    if (connect(s, (sockaddr*)&a, sizeof a) != 0) abort();\n"
                '    if (write(s, "pwned", 5) != 5) abort();'
            ),
            tests,
        ),
        "kill the parent": (f("    kill(getppid(), SIGKILL);\n    kill(-1, SIGKILL);\n    exit(0);"), tests),
        "kill the harness": (f(f"    if (kill({os.getpid()}, SIGKILL) != 0) abort();"), tests),
        "exit(0) before the tests": (f("    exit(0);"), tests),
        "_exit(0) before the tests": (f("    _exit(0);"), tests),
        "override the test's assert": (
            "#include <cassert>\n#undef assert\n#define assert(x) ((void)0)\n"
            "long f(long x) { return 100; }\n",
            tests,
        ),
        "huge output": (
            f('    while (true) puts("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");'),
            tests,
        ),
        "huge file": (
            f('    FILE* fh = fopen("big", "w");\n    while (true) fputs("xxxxxxxxxxxxxxxx", fh);'),
            tests,
        ),
    }


def run_battery(language: str, attacks: dict, sandbox: Sandbox) -> dict[str, object]:
    def one(item):
        name, (source, tests) = item
        return name, run_program(language, source, tests=tests, timeout=2.0, sandbox=sandbox)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(pool.map(one, attacks.items()))


def assert_battery_contained(verdicts: dict, host: Host, language: str, sandbox: Sandbox) -> None:
    passed = {name: v.error for name, v in verdicts.items() if v.status not in NOT_PASSED}
    assert passed == {}, f"attacks that were not stopped: {passed}"
    for name, verdict in verdicts.items():
        assert len(verdict.stdout) < 40_000 and len(verdict.stderr) < 40_000, name
    host.assert_untouched()
    # The harness is intact: a normal program still passes in the same sandbox.
    sane = {
        "python": ("def f(x):\n    return x * 2\n", "assert f(2) == 4\n"),
        "cpp": (
            "long f(long x) { return x * 2; }\n",
            "#include <cassert>\nint main() {\n    assert(f(2) == 4);\n}\n",
        ),
    }[language]
    assert run_program(language, sane[0], tests=sane[1], sandbox=sandbox).status == "passed"


def require_namespaces(sandbox: Sandbox) -> None:
    if not sandbox.isolation().namespace_prefix:
        pytest.skip("no network/PID namespace on this machine: " + "; ".join(sandbox.isolation().notes))


@needs_root
def test_python_battery(host):
    sandbox = default_sandbox()
    require_namespaces(sandbox)
    verdicts = run_battery("python", python_attacks(host), sandbox)
    assert_battery_contained(verdicts, host, "python", sandbox)
    assert verdicts["infinite loop"].status == "timeout"
    assert verdicts["huge output"].status == "timeout"
    assert "File too large" in verdicts["huge file"].error  # Python ignores SIGXFSZ and raises EFBIG
    assert "MemoryError" in verdicts["memory bomb"].error
    assert verdicts["sys.exit(0) before the tests"].error == "exited with status 0 before the tests completed"


@needs_root
def test_cpp_battery(host):
    sandbox = default_sandbox()
    require_namespaces(sandbox)
    chain = toolchain(get_language("cpp"), sandbox)
    if chain.missing:
        pytest.skip(chain.missing)
    verdicts = run_battery("cpp", cpp_attacks(host), sandbox)
    assert_battery_contained(verdicts, host, "cpp", sandbox)
    assert verdicts["infinite loop"].status == "timeout"
    assert verdicts["exit(0) before the tests"].error == "exited with status 0 before the tests completed"
    assert verdicts["huge file"].error == "file size limit exceeded"


@needs_root
def test_python_battery_without_namespaces(host):
    """Without namespaces (a kernel that refuses them) everything but the network is still stopped."""
    sandbox = Sandbox(use_namespaces=False)
    attacks = python_attacks(host)
    del attacks["open a socket"]  # no network namespace: stated in the summary's isolation
    verdicts = run_battery("python", attacks, sandbox)
    assert_battery_contained(verdicts, host, "python", sandbox)
    assert sandbox.isolation().describe()["network"].startswith("none")


@pytest.mark.parametrize("use_namespaces", [True, False])
def test_escaped_background_process_is_killed(use_namespaces):
    sandbox = Sandbox(use_namespaces=use_namespaces)
    source = (
        "import os, sys, time\nr, w = os.pipe()\nif os.fork() == 0:\n    os.setsid()\n"
        "    os.write(w, str(os.getpid()).encode())\n    time.sleep(600)\n"
        "print('child', os.read(r, 64).decode(), flush=True)\nsys.exit(0)\n"
    )
    verdict = run_program("python", source, tests="assert False\n", timeout=10, sandbox=sandbox)
    assert verdict.status == "failed" and "child" in verdict.stdout
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _leftovers(sandbox, verdict.stdout):
        time.sleep(0.05)
    assert not _leftovers(sandbox, verdict.stdout)


def _leftovers(sandbox: Sandbox, stdout: str) -> list[int]:
    """Live processes the program left: by sandbox uid when there is one, else by the printed pid."""
    if sandbox.isolation().drop_to_uid:
        return [pid for pid, uid in _processes() if UID_BASE <= uid < UID_BASE + 1000]
    pid = int(stdout.split("child")[1].split()[0])
    return [p for p, _ in _processes() if p == pid]


def _processes():
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "status").read_text().splitlines()
        except OSError:
            continue
        info = dict(line.split(":", 1) for line in fields if ":" in line)
        if info.get("State", "").split()[:1] not in (["Z"], ["X"]):
            yield int(entry.name), int(info["Uid"].split()[1])


def test_writes_to_tmp_do_not_reach_the_host():
    sandbox = default_sandbox()
    isolation = sandbox.isolation()
    if not (isolation.mask_command or isolation.holder_command):
        pytest.skip("no mount namespace here: /tmp is shared with the host")
    name = f"/tmp/lingcoder-escape-{os.getpid()}"
    verdict = run_program("python", f"open({name!r}, 'w').write('x')\n", sandbox=sandbox)
    # A private writable tmpfs lets the write succeed (and vanish); a shared read-only one refuses it.
    expected = ("passed", "") if isolation.mask_command else ("failed", "Read-only file system")
    assert verdict.status == expected[0] and expected[1] in verdict.error
    assert not Path(name).exists()


def test_limits_apply(tmp_path):
    sandbox = default_sandbox()
    tight = Limits(cpu_seconds=1, memory_mb=256)
    spin = run_program("python", "while True:\n    pass\n", timeout=30, limits=tight, sandbox=sandbox)
    assert spin.status == "timeout" and spin.error == "CPU time limit exceeded"
    big = run_program("python", "x = bytearray(512 * 2**20)\n", limits=tight, sandbox=sandbox)
    assert big.status == "failed" and "MemoryError" in big.error
    env = run_program("python", "import os\nprint(sorted(os.environ))\n", sandbox=sandbox)
    names = eval(env.stdout)  # noqa: S307 - our own program's output
    assert "HOME" in names and not any(n.startswith(("SSH", "AWS", "PYTEST")) for n in names)


def test_sandbox_mode_is_reported():
    description = default_sandbox().isolation().describe()
    assert set(description) == {"network", "processes", "user", "filesystem", "limits", "notes"}
    if ROOT:
        assert "unprivileged uid" in description["user"]


NOBODY_SCRIPT = """
import json
from lingcoder.evaluate.execution import default_sandbox, run_program
iso = default_sandbox().isolation()
programs = {
    "right": "def f(x):\\n    return x * 2\\n",
    "early exit": "import os\\nos._exit(0)\\n",
    "kill the parent": "import os, signal\\nos.kill(os.getppid(), signal.SIGKILL)\\nos._exit(0)\\n",
    "fork bomb": "import os\\nwhile True:\\n    os.fork()\\n",
}
tests = {"right": "assert f(2) == 4\\n"}
checks = {name: run_program("python", source, tests=tests.get(name, "assert False\\n"), timeout=3).status
          for name, source in programs.items()}
print(json.dumps({"isolation": iso.describe(), "checks": checks}))
"""


@needs_root
def test_as_an_unprivileged_user(tmp_path):
    """The harness run by an ordinary user (here: nobody, through setpriv) still confines programs."""
    import json
    import shutil
    import subprocess

    from lingcoder.evaluate.sandbox import SAFE_PATH

    python = shutil.which("python3", path=SAFE_PATH)
    setpriv = shutil.which("setpriv")
    if not python or not setpriv:
        pytest.skip("needs a system python3 and setpriv")
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version_info >= (3, 11))"], capture_output=True, text=True
    ).stdout.strip()
    if version != "True":
        pytest.skip(f"{python} is older than 3.11")
    home = Path(tempfile.mkdtemp(prefix="lingcoder-nobody-", dir="/run"))
    try:
        os.chown(home, 65534, 65534)
        src = str(Path(__file__).resolve().parents[1] / "src")
        env = {"HOME": str(home), "PATH": SAFE_PATH, "PYTHONPATH": src}
        done = subprocess.run(
            [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c", NOBODY_SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["isolation"]["user"] == "the invoking user (uid 65534)"
    checks = report["checks"]
    assert checks.pop("right") == "passed"
    assert set(checks.values()) <= NOT_PASSED, checks
