"""Host side of the code sandbox: choose the isolation backend, keep a pool of zygotes, run jobs.

`SSP_SANDBOX=bwrap|process` forces a backend (an unusable forced backend is an error); the default (`auto`) picks
the strongest one that passes a probe. The process-wide sandbox prints one line to stderr at its start-up, once per
process, saying which backend runs and what isolation this machine gave it (`backends.isolation_line`).
Both backends add: a separate unprivileged uid when started as root, rlimits, a seccomp filter (libseccomp), a clean
environment, per-run process groups and a sweep of every leftover process, and output caps.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from ssp.sandbox import backends
from ssp.sandbox.pool import TaskFailure, WorkerPool, WorkerStartError, workers_per_process

BACKENDS = backends.BACKENDS
# What runs inside the sandbox, loaded in this order; the last one is the zygote's main program.
ZYGOTE_MODULES = ("_sandbox_guard", "_sandbox_child", "_sandbox_isolation", "_sandbox_zygote")
ZYGOTE_SOURCES = tuple(Path(__file__).with_name(f"{name}.py").read_text() for name in ZYGOTE_MODULES)
# The sandbox sees none of ssp's files: the sources travel on the command line, and this loads them.
BOOTSTRAP = (
    "import sys, types\n"
    "names = sys.argv[1].split()\n"
    "for index, name in enumerate(names[:-1], 2):\n"
    "    module = sys.modules[name] = types.ModuleType(name)\n"
    "    exec(compile(sys.argv[index], name + '.py', 'exec'), module.__dict__)\n"
    "exec(compile(sys.argv[len(names) + 1], names[-1] + '.py', 'exec'), {'__name__': '__main__'})\n"
)
# Numeric settings that only tell OpenBLAS how to run on this CPU (older builds crash without them); no secrets.
PASSED_THROUGH_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of every program run (the time limit is per call: `timeout`)."""

    memory_mb: int = 2048
    """Address space (RLIMIT_AS) of a run."""
    file_size_mb: int = 16
    """Largest file a run may write (RLIMIT_FSIZE); stdout counts as a file."""
    tmp_size_mb: int = 256
    """Size of the sandbox's private /tmp (and /dev/shm); runs write there and in their own folder inside it."""
    open_files: int = 256
    processes: int = 32
    """Processes and threads a run may have at once (RLIMIT_NPROC, in the run's own user or namespace)."""


def sandbox_env() -> dict[str, str]:
    """The whole environment of a sandboxed program: nothing of the host's is inherited."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",  # set iteration order, and so some tests' outcomes, must not vary between runs
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    env.update({key: os.environ[key] for key in PASSED_THROUGH_ENV if key in os.environ})
    return env


class Sandbox:
    """A pool of zygotes behind one backend; `run(jobs, deadlines)` returns each job's reply or TaskFailure."""

    def __init__(self, backend: str, workers: int, limits: SandboxLimits):
        if backend not in BACKENDS:
            raise ValueError(f"unknown sandbox backend {backend!r}; known: {', '.join(BACKENDS)}")
        self.backend = backend
        self.limits = limits
        self.as_root = os.geteuid() == 0
        self._scratch: list[str] = []
        bwrap = shutil.which("bwrap")
        if backend == "bwrap" and bwrap is None:
            raise WorkerStartError("bubblewrap is not installed (apt-get install bubblewrap)")
        self._bwrap = bwrap
        self.pool = WorkerPool(self._argv, workers, name=f"code sandbox ({backend})", env=sandbox_env(), cwd="/")
        try:
            self.pool.start()  # start-up failures surface here, with the zygote's reason
        except BaseException:
            self.close()
            raise
        self.features = (self.pool.hello or {}).get("features", {})
        if backend == "bwrap":  # made by bwrap before the zygote started, so it cannot see them itself
            self.features["namespaces"] = ["mount", "pid", "net", "ipc", "uts"] + ([] if self.as_root else ["user"])

    def _argv(self) -> list[str]:
        config = {
            "unshare": self.backend == "process",
            "own_pid_namespace": self.backend == "bwrap",
            # Each zygote its own uid: rlimits on processes then cannot be exhausted by a neighbour's fork bomb.
            "uid": random.randrange(1_000_000, 2_000_000_000) if self.as_root else None,
            "tmp_bytes": self.limits.tmp_size_mb << 20,
            "processes": self.limits.processes,
            "python_roots": backends.python_roots(),
        }
        if self.backend == "bwrap":
            config["workroot"] = "/tmp/ssp-sandbox"
            prefix = backends.bwrap_argv(self._bwrap, self.limits.tmp_size_mb, self.as_root)
        else:
            # Normally inside the zygote's own tmpfs; if it cannot mount one, this host folder is used and removed.
            config["workroot"] = tempfile.mkdtemp(prefix="ssp-sandbox-")
            if config["uid"] is not None:
                os.chown(config["workroot"], config["uid"], config["uid"])
            self._scratch.append(config["workroot"])
            prefix = []
        return [
            *prefix,
            sys.executable,
            "-s",
            "-P",
            "-c",
            BOOTSTRAP,
            " ".join(ZYGOTE_MODULES),
            *ZYGOTE_SOURCES,
            json.dumps(config),
        ]

    def run(self, jobs: list[dict], deadlines: list[float]) -> list[dict | TaskFailure]:
        return self.pool.run(jobs, deadlines)

    def close(self) -> None:
        self.pool.close()
        for path in self._scratch:
            shutil.rmtree(path, ignore_errors=True)

    def isolation_line(self, why_not_bwrap: str | None = None) -> str:
        return backends.isolation_line(self.backend, self.features, why_not_bwrap)


_sandbox: Sandbox | None = None
_sandbox_lock = threading.Lock()
_announced_in: int | None = None  # the process that printed the isolation line


def default_workers() -> int:
    """`SSP_CODE_WORKERS`, else the CPUs this process may use shared among the node's training processes (max 16)."""
    return workers_per_process("SSP_CODE_WORKERS", 16)


def _probe(sandbox: Sandbox) -> None:
    """Run a real program through the whole path; raises unless it works."""
    job = {
        "kind": "stdio",
        "program": "print(input()[::-1])",
        "prelude": "",
        "runs": [{"stdin": "ko\n", "output_limit": 100}],
        "limits": job_limits(sandbox.limits, 10.0),
    }
    reply = sandbox.run([job], [30.0])[0]
    if isinstance(reply, TaskFailure) or reply.get("runs", [{}])[0].get("stdout") != "ok\n":
        raise WorkerStartError(f"probe program failed: {reply}")


def job_limits(limits: SandboxLimits, timeout: float) -> dict:
    return {
        "timeout": float(timeout),
        "memory_bytes": limits.memory_mb << 20,
        "file_bytes": limits.file_size_mb << 20,
        "open_files": limits.open_files,
    }


def start_sandbox(backend: str, limits: SandboxLimits | None = None, workers: int | None = None) -> Sandbox:
    """A new sandbox with this backend, probed with a real program; the caller closes it."""
    sandbox = Sandbox(backend, workers or default_workers(), limits or SandboxLimits())
    try:
        _probe(sandbox)
    except BaseException:
        sandbox.close()
        raise
    return sandbox


def get_sandbox() -> Sandbox:
    """The process-wide sandbox, started at first use with the strongest backend that works here; its start-up
    prints one line to stderr, once per process, saying which isolation runs the code."""
    global _sandbox, _announced_in
    with _sandbox_lock:
        if _sandbox is not None and _sandbox.pool.owner_pid == os.getpid():
            return _sandbox
        _sandbox = None
        if not sys.platform.startswith("linux"):
            raise RuntimeError(f"the code sandbox needs Linux (namespaces, seccomp, rlimits); this is {sys.platform}")
        limits = SandboxLimits()
        forced = os.environ.get("SSP_SANDBOX", "auto")
        if forced not in ("auto", *BACKENDS):
            raise ValueError(f"SSP_SANDBOX={forced!r}; use one of auto, {', '.join(BACKENDS)}")
        why_not_bwrap = None
        if forced != "auto":
            why_not_bwrap = f"SSP_SANDBOX={forced}"
            _sandbox = start_sandbox(forced, limits)
        elif shutil.which("bwrap") is None:
            why_not_bwrap = "bubblewrap not installed"
            _sandbox = start_sandbox("process", limits)
        else:
            try:
                _sandbox = start_sandbox("bwrap", limits)
            except (WorkerStartError, OSError) as error:  # installed, but this machine refuses it (user namespaces)
                why_not_bwrap = f"bubblewrap failed: {(str(error).strip() or type(error).__name__).splitlines()[0]}"
                _sandbox = start_sandbox("process", limits)
        if _announced_in != os.getpid():
            print(_sandbox.isolation_line(why_not_bwrap), file=sys.stderr, flush=True)
            _announced_in = os.getpid()
        return _sandbox


def shutdown_sandbox() -> None:
    global _sandbox
    with _sandbox_lock:
        if _sandbox is not None and _sandbox.pool.owner_pid == os.getpid():
            _sandbox.close()
        _sandbox = None


atexit.register(shutdown_sandbox)
